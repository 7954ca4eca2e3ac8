// Where the portal finds the identity provider and the services. The server that hosts the
// portal answers /config.json (devstack/cmd/portal in the dev stack), so one build runs against
// any deployment and the Content-Security-Policy can name exactly these origins.

export interface PortalConfig {
  issuer: string;
  clientId: string;
  redirectUri: string;
  services: { messaging: string; attachment: string; notification: string; audit: string };
}

export async function loadConfig(): Promise<PortalConfig> {
  const resp = await fetch("/config.json", { cache: "no-store" });
  if (!resp.ok) throw new Error(`the portal's configuration is missing (HTTP ${resp.status})`);
  const cfg = (await resp.json()) as PortalConfig;
  for (const name of ["messaging", "attachment", "notification", "audit"] as const) {
    if (!cfg.services?.[name]) throw new Error(`the portal's configuration names no ${name} service`);
  }
  return cfg;
}
