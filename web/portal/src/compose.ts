// The attachments part of a compose or reply form: a file picker, one progress bar per file,
// and the ids of the files stored so far.
import type { App } from "./app.js";
import { describe } from "./api.js";
import { field, h } from "./dom.js";
import { ScanState } from "./gen/securemsg/attachment/v1/attachment_pb.js";
import { upload } from "./upload.js";

export interface AttachmentPicker {
  element: HTMLElement;
  /** uploadAll stores every chosen file and returns their attachment ids; throws on refusal. */
  uploadAll(threadId: string): Promise<string[]>;
  reset(): void;
}

export function attachmentPicker(app: App): AttachmentPicker {
  const input = h("input", { type: "file", multiple: true, name: "attachments" });
  const progress = h("ul", { class: "uploads", "aria-label": "Attachment uploads" });
  const element = h("div", {}, field("Attach files (optional)", input, "Images, PDF or text, up to 25 MiB each."), progress);
  return {
    element,
    // The finished bars stay until the next upload starts, so the person sees what was sent.
    reset() {
      input.value = "";
    },
    async uploadAll(threadId: string): Promise<string[]> {
      const ids: string[] = [];
      progress.replaceChildren();
      for (const file of Array.from(input.files ?? [])) {
        const bar = h("progress", { max: String(file.size || 1), value: "0" });
        const label = h("span", { class: "upload-state" }, "starting");
        const row = h("li", {}, h("span", { class: "file-name" }, file.name), " ", bar, " ", label);
        bar.setAttribute("aria-label", `Upload of ${file.name}`);
        progress.append(row);
        try {
          const attachment = await upload(app.api, file, threadId, (sent, total) => {
            bar.value = sent;
            label.textContent = total ? `${Math.floor((sent / total) * 100)}%` : "";
          });
          label.textContent = attachment.scanState === ScanState.CLEAN
            ? "uploaded and scanned"
            : "uploaded; the malware scan is still running (nobody can open it until it passes)";
          ids.push(attachment.attachmentId);
        } catch (err) {
          label.textContent = "refused";
          row.classList.add("refused");
          throw new Error(`${file.name}: ${describe(err)}`);
        }
      }
      return ids;
    },
  };
}
