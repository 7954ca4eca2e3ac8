// The auditor's console: search the audit log by patient, actor and time, and see whether the
// log verifies against its latest signed checkpoint. The log holds ids and codes, never
// message content, and every search is itself audited.
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { newScreen, type App } from "../app.js";
import { enumLabel, field, focusHeading, formatTime, h, replace } from "../dom.js";
import { Role } from "../gen/securemsg/common/v1/common_pb.js";
import { Action, Outcome, RecordType } from "../gen/securemsg/events/v1/audit_pb.js";
import { VerifyFailure } from "../gen/securemsg/audit/v1/audit_pb.js";

export async function auditorHome(app: App): Promise<void> {
  newScreen();
  const patient = h("input", { type: "text", name: "patient_id", autocomplete: "off", maxlength: "100" });
  const actor = h("input", { type: "text", name: "actor_subject", autocomplete: "off", maxlength: "256" });
  const from = h("input", { type: "datetime-local", name: "from" });
  const to = h("input", { type: "datetime-local", name: "to" });
  const form = h("form", { class: "search", role: "search", "aria-label": "Audit search" },
    field("Patient id", patient), field("Actor (subject)", actor), field("From", from), field("To", to),
    h("button", { type: "submit" }, "Search"));
  const search = form.querySelector("button")!;
  const results = h("div", { "aria-live": "polite" });
  const verification = h("section", { "aria-labelledby": "verify-heading" }, h("h3", { id: "verify-heading" }, "Log verification"));
  replace(app.main, h("h2", {}, "Audit log"), verification, form, results);
  focusHeading(app.main);
  void verify(app, verification);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    // One search at a time: a slow earlier answer must never stand under a newer filter.
    search.disabled = true;
    try {
      const resp = await app.api.audit.queryAuditEvents({
        filter: {
          patientId: patient.value.trim(),
          actorSubject: actor.value.trim(),
          startTime: from.value ? timestampFromDate(new Date(from.value)) : undefined,
          endTime: to.value ? timestampFromDate(new Date(to.value)) : undefined,
        },
        newestFirst: true,
        pageSize: 100,
      });
      const rows = h("tbody");
      for (const e of resp.entries) {
        const r = e.record;
        rows.append(h("tr", {},
          h("td", {}, String(e.sequence)),
          h("td", {}, formatTime(e.appendTime)),
          h("td", {}, r?.actor ? `${r.actor.subject} (${enumLabel(Role, r.actor.role)})` : ""),
          h("td", {}, r ? enumLabel(Action, r.action) : ""),
          h("td", {}, r ? `${enumLabel(RecordType, r.recordType)} ${r.recordId}` : ""),
          h("td", {}, r?.patientId ?? ""),
          h("td", {}, r ? enumLabel(Outcome, r.outcome) : "")));
      }
      if (resp.entries.length === 0) rows.append(h("tr", {}, h("td", { colspan: "7" }, "No records match.")));
      replace(results, h("table", {},
        h("caption", {}, `${resp.entries.length} record${resp.entries.length === 1 ? "" : "s"}, newest first`),
        h("thead", {}, h("tr", {}, ...["Seq", "When", "Actor", "Action", "Record", "Patient", "Outcome"].map((c) => h("th", { scope: "col" }, c)))),
        rows));
    } catch (err) {
      app.fail(err);
    } finally {
      search.disabled = false;
    }
  });
}

async function verify(app: App, box: HTMLElement): Promise<void> {
  const line = h("p", { class: "verify" }, "Checking the log…");
  box.append(line);
  try {
    const { checkpoint } = await app.api.audit.getLatestCheckpoint({});
    const resp = await app.api.audit.verifyRange({ fromSequence: 1n, toSequence: checkpoint?.treeSize ?? 0n });
    if (resp.ok) {
      line.className = "verify ok";
      line.textContent = `Verified: ${resp.verifiedCount} records chain and match the checkpoint of ${checkpoint?.treeSize ?? 0} records signed ${formatTime(checkpoint?.createTime)} (key ${checkpoint?.keyId}).`;
    } else {
      line.className = "verify failed";
      line.textContent = `Verification FAILED at record ${resp.firstFailingSequence}: ${enumLabel(VerifyFailure, resp.failure)}.`;
    }
  } catch (err) {
    line.className = "verify failed";
    line.textContent = "The log could not be verified right now.";
    app.fail(err);
  }
}
