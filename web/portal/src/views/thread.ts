// One thread: its messages, attachments and read receipts, a reply form, and for the care team
// the queue actions (claim, transfer, close). Re-rendered whenever the inbox watch says the
// thread changed.
import { failSend, newScreen, type App } from "../app.js";
import { attachmentPicker } from "../compose.js";
import { enumLabel, field, formatTime, h, keepFocus, option, replace } from "../dom.js";
import { Role } from "../gen/securemsg/common/v1/common_pb.js";
import type { GetThreadResponse } from "../gen/securemsg/messaging/v1/messaging_service_pb.js";
import { ThreadStatus, type Message, type Participant } from "../gen/securemsg/messaging/v1/messaging_pb.js";
import { watchInbox } from "../watch.js";

const careTeam = (app: App) => app.session.roles.some((r) => r === "clinician" || r === "staff");

export function participantLabel(p?: Participant): string {
  if (!p) return "someone";
  const role = enumLabel(Role, p.role);
  const name = p.displayName || p.subject;
  return p.onBehalfOfPatientId ? `${name} (${role}, on behalf of the patient)` : `${name} (${role})`;
}

export async function showThread(app: App, threadId: string, back: () => void): Promise<void> {
  const signal = newScreen();
  const region = h("section", { "aria-labelledby": "thread-heading" });
  // The reply form lives outside what live updates re-render, so a change arriving while the
  // person types never takes their words away.
  const closedNote = h("p", { hidden: true }, "This conversation is closed. Start a new message to write again.");
  const reply = replyForm(app, threadId, () => render(false));
  replace(app.main, h("p", {}, h("button", { type: "button", class: "link", onclick: back }, "← Back")), region, reply, closedNote);
  let latest = 0;
  const render = async (focus: boolean): Promise<void> => {
    // Live updates may overlap: only the newest read is shown.
    const mine = ++latest;
    let resp: GetThreadResponse;
    let body: Node[];
    try {
      resp = await app.api.messaging.getThread({ threadId, pageSize: 100 });
      body = await threadBody(app, resp, () => render(false));
    } catch (err) {
      app.fail(err);
      return;
    }
    if (mine !== latest || signal.aborted) return;
    keepFocus(region, () => replace(region, ...body));
    const closed = resp.thread?.status === ThreadStatus.CLOSED;
    reply.hidden = closed;
    closedNote.hidden = !closed;
    const last = resp.messages.at(-1);
    if (last && resp.messages.some((m) => !m.read)) {
      try {
        await app.api.messaging.markRead({ threadId, upToMessageId: last.messageId });
      } catch (err) {
        app.fail(err);
      }
    }
    if (focus) region.querySelector<HTMLElement>("h2")?.focus();
  };
  await render(true);
  watchInbox(app, signal, (change) => {
    if (change === "resync" || change.threadId === threadId) void render(false);
  });
}

async function threadBody(app: App, resp: GetThreadResponse, refresh: () => Promise<void>): Promise<Node[]> {
  const t = resp.thread!;
  const nodes: Node[] = [
    h("h2", { id: "thread-heading", tabindex: "-1" }, t.subject || "(no subject)"),
    h("p", { class: "meta" },
      `Status: ${enumLabel(ThreadStatus, t.status)}`,
      t.assigneeSubject ? ` · assigned to ${t.assigneeSubject}` : "",
      ` · care team: ${t.poolId}`),
  ];
  if (resp.emergencyDisclaimer) {
    nodes.push(h("p", { class: "disclaimer", role: "note" }, resp.emergencyDisclaimer));
  }
  const list = h("ol", { class: "messages", "aria-label": "Messages" });
  for (const m of resp.messages) list.append(await messageItem(app, m));
  nodes.push(list);
  if (careTeam(app)) nodes.push(await careTeamActions(app, t.threadId, t.poolId, t.status, t.assigneeSubject, refresh));
  return nodes;
}

async function messageItem(app: App, m: Message): Promise<HTMLElement> {
  const mine = m.sender?.subject === app.session.subject;
  const item = h("li", { class: `message${m.autoReply ? " auto-reply" : ""}${mine ? " mine" : ""}` },
    h("p", { class: "meta" },
      h("strong", {}, m.autoReply ? "Automatic reply" : participantLabel(m.sender)), " · ", formatTime(m.createTime)),
  );
  if (m.retraction) {
    item.append(h("p", { class: "retracted" }, "This message was retracted."));
  } else {
    item.append(h("p", { class: "body" }, m.body));
  }
  if (m.attachmentIds.length > 0) {
    const files = h("ul", { class: "attachments", "aria-label": "Attachments" });
    for (const id of m.attachmentIds) files.append(await attachmentItem(app, id));
    item.append(files);
  }
  if (m.receipts.length > 0) {
    const receipts = h("ul", { class: "receipts", "aria-label": "Read receipts" });
    for (const r of m.receipts) receipts.append(h("li", {}, `Read by ${participantLabel(r.reader)} · ${formatTime(r.readTime)}`));
    item.append(receipts);
  }
  return item;
}

async function attachmentItem(app: App, attachmentId: string): Promise<HTMLElement> {
  try {
    const { attachment } = await app.api.attachment.getAttachment({ attachmentId });
    const name = attachment?.fileName || "attachment";
    const button = h("button", { type: "button" }, `Download ${name}`);
    button.addEventListener("click", async () => {
      try {
        const blob = await app.api.download(attachmentId);
        const url = URL.createObjectURL(blob);
        const a = h("a", { href: url, download: name });
        document.body.append(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(url), 10000);
        app.say(`Downloaded ${name}.`);
      } catch (err) {
        app.fail(err);
      }
    });
    return h("li", {}, button);
  } catch {
    return h("li", { class: "error" }, "An attachment cannot be shown.");
  }
}

function replyForm(app: App, threadId: string, refresh: () => Promise<void>): HTMLElement {
  const body = h("textarea", { name: "body", rows: "4", required: true, maxlength: "20000" });
  const picker = attachmentPicker(app);
  const send = h("button", { type: "submit" }, "Send reply");
  const form = h("form", { class: "reply", "aria-labelledby": "reply-heading" },
    h("h3", { id: "reply-heading" }, "Reply"), field("Your reply", body), picker.element, send);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    send.disabled = true;
    try {
      const attachmentIds = await picker.uploadAll(threadId);
      await app.api.messaging.sendMessage({ threadId, body: body.value, attachmentIds, clientRequestId: crypto.randomUUID() });
      body.value = "";
      picker.reset();
      app.say("Reply sent.");
      await refresh();
    } catch (err) {
      failSend(app, err);
    } finally {
      send.disabled = false;
    }
  });
  return form;
}

async function careTeamActions(app: App, threadId: string, poolId: string, status: ThreadStatus, assignee: string, refresh: () => Promise<void>): Promise<HTMLElement> {
  const act = (label: string, fn: () => Promise<unknown>, done: string) => {
    const button = h("button", { type: "button", "data-key": `action-${label}` }, label);
    button.addEventListener("click", async () => {
      button.disabled = true; // a double click must not claim or close twice
      try {
        await fn();
        app.say(done);
        await refresh();
      } catch (err) {
        app.fail(err);
      } finally {
        button.disabled = false;
      }
    });
    return button;
  };
  const box = h("section", { class: "actions", "aria-labelledby": "actions-heading" }, h("h3", { id: "actions-heading" }, "Care-team actions"));
  if (status === ThreadStatus.CLOSED) {
    box.append(act("Reopen", () => app.api.messaging.reopenThread({ threadId }), "Conversation reopened."));
    return box;
  }
  if (assignee !== app.session.subject) {
    box.append(act(assignee ? "Take over" : "Claim", () => app.api.messaging.claimThread({ threadId }), "You now own this conversation."));
  }
  box.append(act("Close", () => app.api.messaging.closeThread({ threadId, reasonCode: "resolved" }), "Conversation closed."));
  // Transfer to another care pool the caller can see.
  const pools = h("select", { name: "to_pool", "data-key": "transfer-pool" });
  try {
    const { pools: list } = await app.api.messaging.listPools({ pageSize: 100 });
    for (const p of list.filter((p) => p.poolId !== poolId && p.active)) pools.append(option(p.poolId, p.name || p.poolId));
  } catch (err) {
    app.fail(err);
  }
  const reason = h("select", { name: "reason_code", "data-key": "transfer-reason" }, option("wrong_pool", "Wrong care team"), option("needs_specialist", "Needs a specialist"));
  const form = h("form", { class: "transfer" }, field("Transfer to", pools), field("Reason", reason), h("button", { type: "submit" }, "Transfer"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await app.api.messaging.transferThread({ threadId, toPoolId: pools.value, reasonCode: reason.value });
      app.say("Conversation transferred.");
      await refresh();
    } catch (err) {
      app.fail(err);
    }
  });
  if (pools.options.length > 0) box.append(form);
  return box;
}
