// The care team's queue: the threads of the caller's pools, unassigned or theirs, with every
// queue's size from one call, kept current by the inbox watch without a reload.
import { newScreen, type App } from "../app.js";
import { enumLabel, focusHeading, formatTime, h, keepFocus, replace } from "../dom.js";
import { Role } from "../gen/securemsg/common/v1/common_pb.js";
import { AssigneeFilter, ThreadStatus, type ThreadSummary } from "../gen/securemsg/messaging/v1/messaging_pb.js";
import { watchInbox } from "../watch.js";
import { alertSettings } from "./alerts.js";
import { showThread } from "./thread.js";

export type Queue = "unassigned" | "mine";

export async function careTeamHome(app: App, queue: Queue = "unassigned"): Promise<void> {
  const signal = newScreen();
  const nav = h("nav", { "aria-label": "Queues" });
  const labels = { unassigned: h("span"), mine: h("span") };
  for (const q of ["unassigned", "mine"] as const) {
    nav.append(h("button", {
      type: "button",
      class: "tab",
      "data-queue": q,
      "aria-current": q === queue ? "page" : undefined,
      onclick: () => void careTeamHome(app, q),
    }, q === "unassigned" ? "Unassigned" : "Mine", " ", labels[q]));
  }
  nav.append(h("button", { type: "button", class: "tab", onclick: () => void careTeamAlerts(app) }, "Alerts"));
  const heading = h("h2", { id: "queue-heading" }, queue === "unassigned" ? "Unassigned conversations" : "My conversations");
  const list = h("ul", { class: "threads", "aria-labelledby": "queue-heading" });
  replace(app.main, nav, heading, list);
  focusHeading(app.main);
  let latest = 0;
  const load = async () => {
    const mine = ++latest;
    try {
      const resp = await app.api.messaging.listThreads({
        statuses: [ThreadStatus.OPEN, ThreadStatus.ASSIGNED],
        assignee: queue === "unassigned" ? AssigneeFilter.UNASSIGNED : AssigneeFilter.ME,
        includeCounts: true,
        pageSize: 50,
      });
      if (mine !== latest || signal.aborted) return;
      labels.unassigned.textContent = `(${resp.counts?.unassigned ?? 0})`;
      labels.mine.textContent = `(${resp.counts?.assignedToMe ?? 0})`;
      keepFocus(list, () => list.replaceChildren(...resp.threads.map((t) => queueRow(app, t, queue))));
      if (resp.threads.length === 0) list.append(h("li", {}, "Nothing waiting."));
    } catch (err) {
      if (!signal.aborted) app.fail(err);
    }
  };
  await load();
  watchInbox(app, signal, () => void load());
}

async function careTeamAlerts(app: App): Promise<void> {
  newScreen();
  const view = h("div");
  replace(app.main, h("nav", { "aria-label": "Queues" },
    h("button", { type: "button", class: "tab", onclick: () => void careTeamHome(app) }, "Back to the queue")), view);
  await alertSettings(app, view);
  focusHeading(view);
}

function queueRow(app: App, t: ThreadSummary, queue: Queue): HTMLElement {
  return h("li", { class: t.unreadCount > 0 ? "unread" : "" },
    h("button", { type: "button", class: "thread-link", "data-key": t.threadId, onclick: () => void showThread(app, t.threadId, () => void careTeamHome(app, queue)) },
      h("span", { class: "subject" }, t.subject || "(no subject)"),
      t.unreadCount > 0 ? h("span", { class: "badge" }, ` ${t.unreadCount} unread`) : null),
    h("span", { class: "meta" },
      ` patient ${t.patientId} · ${t.poolId} · last from ${t.lastSenderRole === Role.UNSPECIFIED ? "automatic reply" : enumLabel(Role, t.lastSenderRole)} · ${formatTime(t.lastMessageTime)}`));
}
