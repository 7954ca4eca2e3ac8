// Sign-in by OpenID Connect: the authorization code flow with PKCE (oauth4webapi), as a
// public client. The tokens live in this module's memory only — never in localStorage,
// sessionStorage or a cookie — so a reload or a closed tab ends the session. Only the
// one-time values of a sign-in in progress (PKCE verifier, state, nonce) cross the redirect in
// sessionStorage, and they are removed the moment the identity provider's answer arrives.
import * as oauth from "oauth4webapi";
import type { PortalConfig } from "./config.js";

/** Session is the signed-in person as the portal needs them, from the access token's claims. */
export interface Session {
  accessToken: string;
  expiresAt: number; // epoch milliseconds
  subject: string;
  name: string;
  roles: string[];
  patientId: string;
}

const pendingKey = "securemsg.signin";
let current: Session | undefined;
let expiryTimer: number | undefined;
let onEnd: (reason: "expired" | "signed-out") => void = () => {};

/** session is the signed-in person, or undefined. */
export function session(): Session | undefined {
  return current;
}

/** onSessionEnd sets what happens when the session ends by itself (expiry) or on sign-out. */
export function onSessionEnd(fn: (reason: "expired" | "signed-out") => void): void {
  onEnd = fn;
}

// The dev issuer speaks plain HTTP on loopback; a real one is HTTPS and needs no exception.
function requestOptions(cfg: PortalConfig) {
  const url = new URL(cfg.issuer);
  const loopback = url.hostname === "127.0.0.1" || url.hostname === "localhost" || url.hostname === "[::1]";
  return loopback && url.protocol === "http:" ? { [oauth.allowInsecureRequests]: true } : {};
}

async function discover(cfg: PortalConfig): Promise<oauth.AuthorizationServer> {
  const issuer = new URL(cfg.issuer);
  const resp = await oauth.discoveryRequest(issuer, { algorithm: "oidc", ...requestOptions(cfg) });
  return oauth.processDiscoveryResponse(issuer, resp);
}

const scopes = [
  "openid",
  "messages.read",
  "messages.write",
  "attachments.read",
  "attachments.write",
  "notifications.manage",
  "audit.read",
];

/** signIn sends the browser to the identity provider. */
export async function signIn(cfg: PortalConfig): Promise<never> {
  const as = await discover(cfg);
  if (!as.authorization_endpoint) throw new Error("the identity provider has no authorization endpoint");
  const verifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const nonce = oauth.generateRandomNonce();
  sessionStorage.setItem(pendingKey, JSON.stringify({ verifier, state, nonce }));
  const url = new URL(as.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: cfg.clientId,
    redirect_uri: cfg.redirectUri,
    scope: scopes.join(" "),
    state,
    nonce,
    code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
    code_challenge_method: "S256",
  }).toString();
  location.assign(url.toString());
  return new Promise<never>(() => {});
}

/** completeSignIn exchanges the code the identity provider sent back for tokens. */
export async function completeSignIn(cfg: PortalConfig, callback: URL): Promise<Session> {
  const raw = sessionStorage.getItem(pendingKey);
  sessionStorage.removeItem(pendingKey);
  if (!raw) throw new Error("This sign-in was not started here, or it was already used. Sign in again.");
  const pending = JSON.parse(raw) as { verifier: string; state: string; nonce: string };
  const as = await discover(cfg);
  const client: oauth.Client = { client_id: cfg.clientId };
  const params = oauth.validateAuthResponse(as, client, callback, pending.state);
  const resp = await oauth.authorizationCodeGrantRequest(
    as, client, oauth.None(), params, cfg.redirectUri, pending.verifier, requestOptions(cfg),
  );
  const result = await oauth.processAuthorizationCodeResponse(as, client, resp, {
    expectedNonce: pending.nonce,
    requireIdToken: true,
  });
  const claims = tokenClaims(result.access_token);
  const expiresIn = (result.expires_in ?? 0) * 1000;
  const expiresAt = expiresIn > 0 ? Date.now() + expiresIn : Number(claims.exp ?? 0) * 1000;
  current = {
    accessToken: result.access_token,
    expiresAt,
    subject: String(claims.sub ?? ""),
    name: String(claims.name ?? claims.sub ?? ""),
    roles: Array.isArray(claims.roles) ? claims.roles.map(String) : [],
    patientId: String(claims.patient_id ?? ""),
  };
  window.clearTimeout(expiryTimer);
  expiryTimer = window.setTimeout(() => endSession("expired"), Math.max(0, expiresAt - Date.now()));
  return current;
}

/** endSession forgets everything the session held. */
export function endSession(reason: "expired" | "signed-out"): void {
  const had = current !== undefined;
  current = undefined;
  window.clearTimeout(expiryTimer);
  sessionStorage.clear();
  if (had) onEnd(reason);
}

// The portal reads the access token's claims only to choose what to show; the services verify
// the token on every call.
function tokenClaims(jwt: string): Record<string, any> {
  const part = jwt.split(".")[1] ?? "";
  const json = atob(part.replaceAll("-", "+").replaceAll("_", "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(json, (c) => c.charCodeAt(0))));
}
