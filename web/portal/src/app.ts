// What every screen shares: the configuration, the service clients, the signed-in person, the
// status line, and the one live inbox watch a screen may hold.
import type { Api } from "./api.js";
import { describe } from "./api.js";
import { h, replace } from "./dom.js";
import type { Session } from "./session.js";

export interface App {
  api: Api;
  session: Session;
  main: HTMLElement;
  /** say puts a message on the status line, which screen readers announce. */
  say(message: string, kind?: "info" | "error"): void;
  /** fail reports a failed call. */
  fail(err: unknown): void;
}

let screen = new AbortController();

/**
 * newScreen ends the previous screen's live work (watches) and returns the signal of the new
 * one, aborted in turn when the next screen starts or the session ends. Every screen calls it
 * first.
 */
export function newScreen(): AbortSignal {
  screen.abort();
  screen = new AbortController();
  return screen.signal;
}

/**
 * failSend reports a failed send: an attachment the upload refused arrives as a plain Error
 * whose message names the file and the reason; a failed call is described as any other.
 */
export function failSend(app: App, err: unknown): void {
  if (err instanceof Error && !("code" in err)) app.say(err.message, "error");
  else app.fail(err);
}

export function statusLine(): { say: App["say"]; fail: App["fail"] } {
  const el = document.getElementById("status")!;
  const say = (message: string, kind: "info" | "error" = "info") => {
    replace(el, message ? h("p", { class: kind }, message) : null);
  };
  return { say, fail: (err: unknown) => say(describe(err), "error") };
}
