// The reference portal: sign-in, then the screens of the signed-in person's role. No framework:
// each screen is a function that renders into <main> with the helpers of dom.ts.
import "./styles.css";
import { connectApi, describe, type Api } from "./api.js";
import { newScreen, statusLine, type App } from "./app.js";
import { loadConfig, type PortalConfig } from "./config.js";
import { h, replace } from "./dom.js";
import { completeSignIn, endSession, onSessionEnd, signIn, type Session } from "./session.js";
import { auditorHome } from "./views/auditor.js";
import { careTeamHome } from "./views/clinician.js";
import { patientHome } from "./views/patient.js";

const main = document.getElementById("main")!;
const banner = document.getElementById("banner")!;
const { say, fail } = statusLine();

function header(s?: Session): void {
  const title = h("p", { class: "brand" }, "securemsg reference portal");
  if (!s) {
    replace(banner, title);
    return;
  }
  const out = h("button", { type: "button", onclick: () => endSession("signed-out") }, "Sign out");
  replace(banner, title, h("p", { class: "who" }, `Signed in as ${s.name} (${s.roles.join(", ") || "no role"})`), out);
}

function signInScreen(cfg: PortalConfig, message = ""): void {
  newScreen();
  header();
  const button = h("button", { type: "button", class: "primary", onclick: () => void signIn(cfg).catch(fail) }, "Sign in");
  replace(main,
    h("h1", { tabindex: "-1" }, message ? "Sign in again" : "Welcome"),
    message ? h("p", { class: "notice", role: "alert" }, message) : h("p", {}, "Sign in with your organisation's account to read and send secure messages."),
    button);
  main.querySelector<HTMLElement>("h1")?.focus();
}

function home(app: App): void {
  const roles = app.session.roles;
  const go = (): Promise<void> => {
    if (roles.includes("patient") || roles.includes("proxy")) return patientHome(app);
    if (roles.includes("clinician") || roles.includes("staff")) return careTeamHome(app);
    if (roles.includes("auditor")) return auditorHome(app);
    replace(main, h("h1", {}, "Nothing to show here"), h("p", {}, "This account's role has no screens in the portal; operators use securemsgctl."));
    return Promise.resolve();
  };
  void go().catch(fail);
}

async function boot(): Promise<void> {
  let cfg: PortalConfig;
  try {
    cfg = await loadConfig();
  } catch (err) {
    replace(main, h("h1", {}, "The portal is not configured"), h("p", {}, err instanceof Error ? err.message : String(err)));
    return;
  }
  const api: Api = connectApi(cfg);
  onSessionEnd((reason) => {
    say("");
    signInScreen(cfg, reason === "expired" ? "Your session has ended. Sign in again to go on." : "You have signed out.");
  });
  const here = new URL(location.href);
  if (here.pathname === new URL(cfg.redirectUri).pathname && (here.searchParams.has("code") || here.searchParams.has("error"))) {
    // The code is single-use, but it has no business in the history either.
    history.replaceState(null, "", "/");
    try {
      const session = await completeSignIn(cfg, here);
      header(session);
      home({ api, session, main, say, fail });
    } catch (err) {
      signInScreen(cfg, `Signing in did not work: ${err instanceof Error ? err.message : describe(err)}`);
    }
    return;
  }
  if (here.pathname !== "/") history.replaceState(null, "", "/");
  signInScreen(cfg);
}

void boot();
