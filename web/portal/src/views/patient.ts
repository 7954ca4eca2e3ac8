// The patient's and the proxy's screens: the inbox with unread counts, a new message to a care
// pool, and "who accessed my messages". A proxy switches between the patients they hold grants
// for; what a grant does not cover (an adolescent's confidential threads) the services never
// return, so it never reaches this page.
import { failSend, newScreen, type App } from "../app.js";
import { attachmentPicker } from "../compose.js";
import { enumLabel, field, focusHeading, formatDuration, formatTime, h, keepFocus, option, replace } from "../dom.js";
import { Action } from "../gen/securemsg/events/v1/audit_pb.js";
import { PurposeOfUse, Role, Sensitivity, ThreadCategory } from "../gen/securemsg/common/v1/common_pb.js";
import { Box, ThreadStatus, type ThreadSummary } from "../gen/securemsg/messaging/v1/messaging_pb.js";
import type { CreateThreadResponse } from "../gen/securemsg/messaging/v1/messaging_service_pb.js";
import { watchInbox } from "../watch.js";
import { alertSettings } from "./alerts.js";
import { showThread } from "./thread.js";

interface Subject {
  patientId: string; // "" for a proxy's own view: every patient they act for
  label: string;
}

let actingFor = "";

export async function patientHome(app: App, tab: "inbox" | "compose" | "access" | "alerts" = "inbox"): Promise<void> {
  const signal = newScreen();
  const subjects = await whoCanBeActedFor(app);
  // Signed out, or moved on, while the grants were read: this screen is no longer wanted.
  if (signal.aborted) return;
  if (!subjects.some((s) => s.patientId === actingFor)) actingFor = subjects[0]?.patientId ?? "";
  const nav = h("nav", { "aria-label": "Patient portal" });
  const tabs: [typeof tab, string][] = [
    ["inbox", "Inbox"], ["compose", "New message"], ["access", "Who accessed my messages"], ["alerts", "Alerts"],
  ];
  for (const [id, label] of tabs) {
    nav.append(h("button", {
      type: "button",
      class: "tab",
      "aria-current": id === tab ? "page" : undefined,
      onclick: () => void patientHome(app, id),
    }, label));
  }
  const view = h("div");
  const parts: Node[] = [];
  if (subjects.length > 1) {
    const select = h("select", { name: "acting_for" });
    for (const s of subjects) select.append(option(s.patientId, s.label, s.patientId === actingFor));
    select.addEventListener("change", () => {
      actingFor = select.value;
      void patientHome(app, tab);
    });
    parts.push(h("div", { class: "acting-for" }, field("Acting for", select)));
  }
  replace(app.main, ...parts, nav, view);
  if (tab === "inbox") await inbox(app, view, signal);
  else if (tab === "compose") await compose(app, view);
  else if (tab === "access") await accessReport(app, view);
  else await alertSettings(app, view);
  focusHeading(view);
}

async function whoCanBeActedFor(app: App): Promise<Subject[]> {
  if (app.session.patientId) return [{ patientId: app.session.patientId, label: `Myself (${app.session.name})` }];
  try {
    const { grants } = await app.api.messaging.listProxyGrants({});
    // A patient may have granted the same person access more than once (say, for other scopes).
    // Only standing grants: the list also holds revoked and ended ones, for the record.
    const now = BigInt(Math.floor(Date.now() / 1000));
    const standing = grants.filter((g) => !g.revokeTime && (!g.expireTime || g.expireTime.seconds > now));
    const patients = [...new Set(standing.map((g) => g.patientId))].sort();
    return patients.map((patientId) => ({ patientId, label: `Patient ${patientId}` }));
  } catch (err) {
    app.fail(err);
    return [];
  }
}

async function inbox(app: App, view: HTMLElement, signal: AbortSignal): Promise<void> {
  const heading = h("h2", {}, "Inbox");
  const summary = h("p", { class: "meta", id: "unread-summary" });
  const list = h("ul", { class: "threads", "aria-labelledby": "inbox-heading" });
  heading.id = "inbox-heading";
  replace(view, heading, summary, list);
  let latest = 0;
  const load = async () => {
    const mine = ++latest;
    try {
      const [threads, unread] = await Promise.all([
        app.api.messaging.listThreads({ box: Box.INBOX, patientId: actingFor, pageSize: 50 }),
        app.api.messaging.getUnreadCount({}),
      ]);
      if (mine !== latest || signal.aborted) return;
      summary.textContent = `${unread.unreadThreads} unread conversation${unread.unreadThreads === 1 ? "" : "s"}`;
      keepFocus(list, () => list.replaceChildren(...threads.threads.map((t) => threadRow(app, t))));
      if (threads.threads.length === 0) list.append(h("li", {}, "No messages yet."));
    } catch (err) {
      if (!signal.aborted) app.fail(err);
    }
  };
  await load();
  watchInbox(app, signal, () => void load());
}

function threadRow(app: App, t: ThreadSummary): HTMLElement {
  const unread = t.unreadCount > 0 ? h("span", { class: "badge" }, `${t.unreadCount} unread`) : null;
  return h("li", { class: t.unreadCount > 0 ? "unread" : "" },
    h("button", { type: "button", class: "thread-link", "data-key": t.threadId, onclick: () => void showThread(app, t.threadId, () => void patientHome(app)) },
      h("span", { class: "subject" }, t.subject || "(no subject)"), " ", unread),
    h("span", { class: "meta" }, ` ${enumLabel(ThreadStatus, t.status)} · ${formatTime(t.lastMessageTime)}`));
}

async function compose(app: App, view: HTMLElement): Promise<void> {
  const pool = h("select", { name: "pool", required: true });
  const category = h("select", { name: "category" });
  for (const c of [ThreadCategory.GENERAL, ThreadCategory.CLINICAL_QUESTION, ThreadCategory.PRESCRIPTION, ThreadCategory.TEST_RESULTS, ThreadCategory.APPOINTMENT, ThreadCategory.BILLING]) {
    category.append(option(String(c), enumLabel(ThreadCategory, c)));
  }
  const sensitivity = h("select", { name: "sensitivity" },
    option(String(Sensitivity.NORMAL), "Normal"),
    option(String(Sensitivity.SENSITIVE), "Sensitive (only the care team sees it)"));
  if (app.session.patientId) {
    // Only the patient may make a conversation confidential from their proxies; the services
    // decide whether the patient's age allows it.
    sensitivity.append(option(String(Sensitivity.ADOLESCENT_CONFIDENTIAL), "Confidential (not shown to parents or guardians)"));
  }
  const subject = h("input", { type: "text", name: "subject", required: true, maxlength: "200", autocomplete: "off" });
  const body = h("textarea", { name: "body", rows: "6", required: true, maxlength: "20000" });
  const picker = attachmentPicker(app);
  // Disabled until the pools are known, so no early submit goes anywhere.
  const send = h("button", { type: "submit", disabled: true }, "Send message");
  const result = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "compose" }, field("Send to", pool), field("Topic", category), field("Privacy", sensitivity), field("Subject", subject),
    field("Message", body, "Do not use messages for emergencies."), picker.element, send);
  replace(view, h("h2", {}, "New message"), form, result);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    send.disabled = true;
    try {
      const attachmentIds = await picker.uploadAll("");
      const resp = await app.api.messaging.createThread({
        poolId: pool.value,
        category: Number(category.value),
        sensitivity: Number(sensitivity.value),
        subject: subject.value,
        body: body.value,
        attachmentIds,
        patientId: app.session.patientId ? "" : actingFor,
        clientRequestId: crypto.randomUUID(),
      });
      form.reset();
      picker.reset();
      replace(result, sentNotice(app, resp));
      app.say("Message sent.");
    } catch (err) {
      failSend(app, err);
    } finally {
      send.disabled = false;
    }
  });
  try {
    const { pools } = await app.api.messaging.listPools({ patientId: actingFor, pageSize: 100 });
    for (const p of pools.filter((p) => p.active)) pool.append(option(p.poolId, p.name || p.poolId));
    send.disabled = false;
  } catch (err) {
    app.fail(err);
  }
}

function sentNotice(app: App, resp: CreateThreadResponse): HTMLElement {
  const box = h("section", { class: "sent", "aria-labelledby": "sent-heading" }, h("h3", { id: "sent-heading" }, "Your message was sent"));
  if (resp.turnaroundTime) box.append(h("p", {}, `The care team usually answers within ${formatDuration(resp.turnaroundTime)}.`));
  if (resp.autoReply) box.append(h("blockquote", { class: "auto-reply" }, resp.autoReply.body));
  if (resp.emergencyDisclaimer) box.append(h("p", { class: "disclaimer", role: "note" }, resp.emergencyDisclaimer));
  const id = resp.thread?.threadId;
  if (id) box.append(h("button", { type: "button", onclick: () => void showThread(app, id, () => void patientHome(app)) }, "Open the conversation"));
  return box;
}

async function accessReport(app: App, view: HTMLElement): Promise<void> {
  const table = h("table", {},
    h("caption", {}, "Every read, download and change of these messages by anyone else, newest first."),
    h("thead", {}, h("tr", {}, ...["When", "Who", "Organisation", "What", "Why"].map((c) => h("th", { scope: "col" }, c)))));
  const rows = h("tbody");
  table.append(rows);
  replace(view, h("h2", {}, "Who accessed my messages"), table);
  const patientId = actingFor || app.session.patientId;
  if (!patientId) return;
  try {
    const { entries } = await app.api.audit.getAccessReport({ patientId, pageSize: 100 });
    for (const e of entries) {
      rows.append(h("tr", {},
        h("td", {}, formatTime(e.accessTime)),
        h("td", {}, e.actorDisplayName || enumLabel(Role, e.actorRole)),
        h("td", {}, e.organisationName || e.organisationId),
        h("td", {}, enumLabel(Action, e.action)),
        h("td", {}, enumLabel(PurposeOfUse, e.purposeOfUse))));
    }
    if (entries.length === 0) rows.append(h("tr", {}, h("td", { colspan: "5" }, "Nobody else has accessed these messages.")));
  } catch (err) {
    app.fail(err);
  }
}
