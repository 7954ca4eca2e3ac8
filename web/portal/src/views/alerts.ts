// Alert settings: where the notification service may send "you have a new message, log in"
// alerts. The alerts carry no content; the address itself is sealed at rest by the service.
import { FieldMaskSchema } from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";
import type { App } from "../app.js";
import { field, h, replace } from "../dom.js";

export async function alertSettings(app: App, view: HTMLElement): Promise<void> {
  const enabled = h("input", { type: "checkbox", name: "email_enabled" });
  const address = h("input", { type: "email", name: "email", autocomplete: "email", maxlength: "254" });
  // Disabled until the stored settings are shown, so an early click saves nothing stale.
  const save = h("button", { type: "submit", disabled: true }, "Save alert settings");
  const form = h("form", { class: "alerts" },
    h("div", { class: "field checkbox" }, h("label", {}, enabled, " Email me when there is a new message")),
    field("Email address", address, "Alerts say only that there is something to read; log in to read it."),
    save);
  replace(view, h("h2", {}, "Alerts"), form);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    save.disabled = true;
    try {
      await app.api.notification.updatePreferences({
        preferences: { email: { enabled: enabled.checked, address: address.value.trim() } },
        updateMask: create(FieldMaskSchema, { paths: ["email"] }),
      });
      app.say("Alert settings saved.");
    } catch (err) {
      app.fail(err);
    } finally {
      save.disabled = false;
    }
  });
  try {
    const { preferences } = await app.api.notification.getPreferences({});
    enabled.checked = preferences?.email?.enabled ?? false;
    address.value = preferences?.email?.address ?? "";
  } catch (err) {
    app.fail(err);
  } finally {
    save.disabled = false; // the mask touches email only, so a save after a failed read is safe
  }
}
