// The reference portal's stories, end to end in a real browser (Debian's chromium, driven by
// playwright-core) against the dev stack's real services: `make test` runs them through
// scripts/portal-test.sh. Each story ends by checking that none of the PHI it wrote reached the
// browser's storage, cookies, URL history or console, and every page it shows is checked with
// axe-core (no serious or critical violation) and photographed under .tmp/portal/screens.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID, X509Certificate, createHash } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import { AxeBuilder } from "@axe-core/playwright";

const root = path.resolve(import.meta.dirname, "../../..");
const portal = process.env.SECUREMSG_PORTAL_URL ?? "http://127.0.0.1:8080";
const mailpit = process.env.SECUREMSG_MAILPIT_URL ?? "http://127.0.0.1:8025";
const certs = process.env.SECUREMSG_CERTS_DIR ?? path.join(root, ".tmp/stack/certs");
const screens = process.env.SECUREMSG_SCREENSHOT_DIR ?? path.join(root, ".tmp/portal/screens");
const executablePath = process.env.SECUREMSG_CHROMIUM ?? "/usr/bin/chromium";
const run = randomUUID().slice(0, 8);
const started = new Date();

let browser;
let shot = 0;

// The services' edges present certificates of the dev CA. Rather than turn certificate checks
// off, the browser is told to accept exactly the dev stack's keys.
function devKeyPins() {
  return readdirSync(certs)
    .filter((f) => f.endsWith(".pem") && !f.includes("-key"))
    .flatMap((f) => {
      try {
        const der = new X509Certificate(readFileSync(path.join(certs, f))).publicKey.export({ type: "spki", format: "der" });
        return [createHash("sha256").update(der).digest("base64")];
      } catch {
        return [];
      }
    });
}

before(async () => {
  mkdirSync(screens, { recursive: true });
  browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", `--ignore-certificate-errors-spki-list=${devKeyPins().join(",")}`,
    ],
  });
});

after(async () => {
  await browser?.close();
});

const open = new Set();

/** story is a test that, when it fails, photographs every page still open. */
function story(name, timeout, fn) {
  test(name, { timeout }, async () => {
    try {
      await fn();
    } catch (err) {
      for (const p of open) {
        await p.page.screenshot({ path: path.join(screens, `FAILED-${String(++shot).padStart(2, "0")}.png`), fullPage: true }).catch(() => {});
        console.error(`page ${p.page.url()} console:\n${p.console.join("\n")}`);
      }
      throw err;
    } finally {
      for (const p of open) await p.context.close().catch(() => {});
      open.clear();
    }
  });
}

/** person opens a browser context of its own, watching what PHI could leak into. */
async function person(options = {}) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 }, acceptDownloads: true, ...options });
  const page = await context.newPage();
  const console = [];
  const urls = [];
  page.on("console", (m) => console.push(m.text()));
  page.on("pageerror", (e) => console.push(String(e)));
  page.on("framenavigated", (f) => f === page.mainFrame() && urls.push(f.url()));
  const p = { context, page, console, urls };
  open.add(p);
  return p;
}

async function signIn(p, user) {
  await p.page.goto(portal);
  await p.page.getByRole("button", { name: "Sign in" }).click();
  await p.page.waitForURL(/\/authorize/);
  await look(p.page, `issuer-picker-${user}`, { axe: false }); // the dev issuer's page, not the portal's
  await p.page.locator(`button[data-user="${user}"]`).click();
  await p.page.getByText(/^Signed in as /).waitFor();
}

/** look checks a page with axe-core and takes its picture. */
async function look(page, name, { axe = true } = {}) {
  await page.screenshot({ path: path.join(screens, `${String(++shot).padStart(2, "0")}-${name}.png`), fullPage: true });
  if (!axe) return;
  const results = await new AxeBuilder({ page }).analyze();
  const bad = results.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(bad.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join("; ")})`), [], `axe on ${name}`);
}

/** noPHI fails when a marker is in storage, cookies, the URL history or the console. */
async function noPHI(p, markers) {
  const storage = await p.page.evaluate(() => JSON.stringify({ local: { ...localStorage }, session: { ...sessionStorage } }));
  const cookies = JSON.stringify(await p.context.cookies());
  const places = { storage, cookies, urls: p.urls.join("\n"), console: p.console.join("\n") };
  for (const [where, text] of Object.entries(places)) {
    for (const m of markers) assert.ok(!text.includes(m), `PHI marker ${m} found in the browser's ${where}`);
    assert.ok(!/eyJ[A-Za-z0-9_-]{10,}\./.test(text), `a token found in the browser's ${where}`);
  }
  assert.equal(await p.page.evaluate(() => localStorage.length), 0, "localStorage is used");
  // The app runs under the portal server's strict CSP; a violation is a bug in the app.
  assert.ok(!p.console.some((l) => /Content Security Policy/i.test(l)), `CSP violation: ${p.console.join("\n")}`);
}

async function waitFor(what, fn, timeoutMs = 30000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/**
 * compose fills the new-message form; send: true also sends it and waits for the answer.
 * Returns the "sent" region (or nothing when not sent).
 */
async function compose(page, { subject, body, file, privacy, send = true, pool = "pool-cardiology" }) {
  await tab(page, "New message").click();
  await page.getByLabel("Send to").selectOption(pool);
  if (privacy) await page.getByLabel("Privacy").selectOption({ label: privacy });
  await page.getByLabel("Subject").fill(subject);
  await page.getByLabel("Message", { exact: true }).fill(body);
  if (file) await page.getByLabel("Attach files (optional)").setInputFiles(file);
  if (!send) return undefined;
  await page.getByRole("button", { name: "Send message" }).click();
  const sent = page.getByRole("region", { name: "Your message was sent" });
  await sent.waitFor({ timeout: 90000 });
  return sent;
}

/** downloaded clicks an attachment's download button and returns the bytes the browser saved. */
async function downloaded(page, name) {
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: `Download ${name}` }).click()]);
  const chunks = [];
  for await (const c of await download.createReadStream()) chunks.push(c);
  return Buffer.concat(chunks);
}

const tab = (page, name) => page.getByRole("navigation").getByRole("button", { name, exact: true });
const status = (page) => page.getByRole("status");
const attachment = (name, text) => ({ name, mimeType: "text/plain", buffer: Buffer.from(text) });
// The standard anti-malware test file: every scanner reports it, and it harms nothing.
const eicar = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

const subject = `Question about my results ${run} PHI-S-${randomUUID().slice(0, 8)}`;
const markers = { subject, body: `PHI-B-${randomUUID()}`, reply: `PHI-R-${randomUUID()}`, file: `PHI-F-${randomUUID()}`, teen: `PHI-T-${randomUUID()}` };
const patientEmail = `portal-patient-${run}@example.test`;

story("a patient writes with an attachment; a clinician sees it arrive, claims and replies; the patient sees the reply, its receipt and a content-free alert", 240000, async () => {
  const clinician = await person();
  await signIn(clinician, "clinician");
  await clinician.page.getByRole("heading", { name: "Unassigned conversations" }).waitFor();
  await look(clinician.page, "clinician-queue-before");

  const patient = await person();
  await signIn(patient, "patient");
  await patient.page.getByRole("heading", { name: "Inbox" }).waitFor();
  await look(patient.page, "patient-inbox");

  await tab(patient.page, "Alerts").click();
  await patient.page.getByLabel("Email me when there is a new message").check();
  await patient.page.getByLabel("Email address").fill(patientEmail);
  await patient.page.getByRole("button", { name: "Save alert settings" }).click();
  await status(patient.page).getByText("Alert settings saved.").waitFor();
  await look(patient.page, "patient-alerts");

  const fileText = `Lab results\n${markers.file}\n${"value 42\n".repeat(800)}`;
  await compose(patient.page, { subject: markers.subject, body: `My results came back. ${markers.body}`, file: attachment("results.txt", fileText), send: false });
  await look(patient.page, "patient-compose");
  await patient.page.getByRole("button", { name: "Send message" }).click();
  const sent = patient.page.getByRole("region", { name: "Your message was sent" });
  await sent.waitFor({ timeout: 60000 });
  assert.equal(await patient.page.getByRole("progressbar", { name: "Upload of results.txt" }).getAttribute("value"), String(fileText.length));
  await sent.getByText(/usually answers within 2 days/).waitFor();
  await sent.locator("blockquote.auto-reply").getByText(/cardiology team/).waitFor();
  await sent.getByRole("note").getByText(/emergency/i).waitFor();
  await look(patient.page, "patient-sent");

  // Live: the clinician's queue shows the thread without a reload.
  const row = clinician.page.getByRole("button", { name: new RegExp(markers.subject.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")) });
  await row.waitFor({ timeout: 30000 });
  await look(clinician.page, "clinician-queue-arrived");
  await row.click();
  await clinician.page.getByText(markers.body).waitFor();
  await clinician.page.getByRole("button", { name: "Claim" }).click();
  await status(clinician.page).getByText("You now own this conversation.").waitFor();
  await clinician.page.getByLabel("Your reply").fill(`Your results look fine. ${markers.reply}`);
  await clinician.page.getByRole("button", { name: "Send reply" }).click();
  await status(clinician.page).getByText("Reply sent.").waitFor();
  await look(clinician.page, "clinician-thread");

  // The patient's inbox updates by itself too.
  await tab(patient.page, "Inbox").click();
  const unread = patient.page.getByRole("button", { name: new RegExp(`${run}.*unread`) });
  await unread.waitFor({ timeout: 30000 });
  await unread.click();
  await patient.page.getByText(markers.reply).waitFor();
  await patient.page.getByRole("list", { name: "Read receipts" }).first().getByText(/Read by Dr\. Casey Carter \(clinician\)/).waitFor();
  await patient.page.getByText("Automatic reply").first().waitFor();
  await look(patient.page, "patient-thread");
  assert.equal((await downloaded(patient.page, "results.txt")).toString(), fileText, "the downloaded attachment is the uploaded file");

  // The alert reached the patient's address and says only to log in.
  const mail = await waitFor("the email alert in mailpit", async () => {
    const r = await fetch(`${mailpit}/api/v1/search?query=${encodeURIComponent(`to:${patientEmail}`)}`);
    const list = await r.json();
    return list.messages?.[0];
  }, 60000);
  const message = await (await fetch(`${mailpit}/api/v1/message/${mail.ID}`)).json();
  const text = `${message.Subject}\n${message.Text}\n${message.HTML}`;
  assert.match(text, /log in/i, "the alert asks the patient to log in");
  for (const m of Object.values(markers)) assert.ok(!text.includes(m), `the alert carries PHI (${m})`);

  // "Who accessed my messages" names the clinician's read.
  await patient.page.getByRole("button", { name: "← Back" }).click();
  await waitFor("the clinician's read in the access report", async () => {
    await tab(patient.page, "Who accessed my messages").click();
    await patient.page.getByRole("table").waitFor();
    return (await patient.page.getByRole("row", { name: /Dr\. Casey Carter|clinician/ }).count()) > 0;
  });
  await look(patient.page, "patient-access-report");

  await noPHI(patient, Object.values(markers));
  await noPHI(clinician, Object.values(markers));
  await patient.context.close();
  await clinician.context.close();
});

story("a care-team member transfers one conversation to another care team, and a clinician closes another", 120000, async () => {
  const patient = await person();
  await signIn(patient, "patient");
  const moving = `Skin question ${run}`;
  const done = `Thank you ${run}`;
  await compose(patient.page, { subject: moving, body: "A question for the care team." });
  await compose(patient.page, { subject: done, body: "A question for the care team." });

  // The cardiology clinician watches the queue; triage, who works in both pools, moves one
  // thread to dermatology (a transfer needs the caller to work in the destination pool).
  const clinician = await person();
  await signIn(clinician, "clinician");
  await clinician.page.getByRole("button", { name: new RegExp(moving) }).waitFor({ timeout: 30000 });
  const triage = await person();
  await signIn(triage, "triage");
  await triage.page.getByRole("button", { name: new RegExp(moving) }).click();
  await triage.page.getByLabel("Transfer to").selectOption("pool-dermatology");
  await triage.page.getByRole("button", { name: "Transfer" }).click();
  await status(triage.page).getByText("Conversation transferred.").waitFor();
  await triage.page.getByText(/care team: pool-dermatology/).waitFor();
  await look(triage.page, "triage-transferred");
  // Live: the thread leaves the cardiology clinician's queue without a reload.
  await waitFor("the transferred thread to leave cardiology's queue", async () =>
    (await clinician.page.getByRole("button", { name: new RegExp(moving) }).count()) === 0);
  await clinician.page.getByRole("button", { name: new RegExp(done) }).click();
  // A keyboard user on "Close" keeps their place while a live update redraws the thread.
  await clinician.page.getByRole("button", { name: "Close" }).focus();
  await tab(patient.page, "Inbox").click();
  await patient.page.getByRole("button", { name: new RegExp(done) }).click();
  await patient.page.getByLabel("Your reply").fill("One more detail for you.");
  await patient.page.getByRole("button", { name: "Send reply" }).click();
  await status(patient.page).getByText("Reply sent.").waitFor();
  await clinician.page.getByText("One more detail for you.").waitFor({ timeout: 30000 });
  assert.equal(await clinician.page.evaluate(() => document.activeElement?.textContent), "Close",
    "the live update took keyboard focus away from the Close button");
  await patient.page.getByRole("button", { name: "← Back" }).click();
  await clinician.page.getByRole("button", { name: "Close" }).click();
  await status(clinician.page).getByText("Conversation closed.").waitFor();
  await clinician.page.getByText(/^Status: closed/).waitFor();
  await clinician.page.getByText("This conversation is closed.", { exact: false }).waitFor();
  assert.equal(await clinician.page.getByRole("button", { name: "Send reply" }).isVisible(), false, "a closed thread offers a reply");
  await look(clinician.page, "clinician-closed");

  await tab(patient.page, "Inbox").click();
  await patient.page.getByRole("button", { name: new RegExp(done) }).click();
  await patient.page.getByText(/^Status: closed/).waitFor();
  await noPHI(patient, Object.values(markers));
  await noPHI(clinician, Object.values(markers));
  await noPHI(triage, Object.values(markers));
});

story("an upload resumes after a dropped chunk and arrives whole", 180000, async () => {
  const patient = await person();
  await signIn(patient, "patient");
  // Chunks of this upload: the second one is dropped on the wire once, as a flaky network would.
  let appends = 0;
  let dropped = false;
  let resyncs = 0;
  patient.page.on("request", (r) => r.url().endsWith(".AttachmentService/GetUploadSession") && resyncs++);
  await patient.page.route("**/securemsg.attachment.v1.AttachmentService/AppendUploadChunk", async (route) => {
    appends++;
    if (appends === 2 && !dropped) {
      // The chunk reaches the service and is stored; only its answer is lost. The client must
      // learn the advanced offset from the service rather than resend from its own.
      dropped = true;
      await route.fetch();
      await route.abort("connectionreset");
      return;
    }
    await route.continue();
  });
  const big = Buffer.from(`${"measurement 12.5 mmol/L\n".repeat(100000)}`); // about 2.4 MiB: several chunks
  await compose(patient.page, { subject: `Large file ${run}`, body: "The full log is attached.", file: { name: "log.txt", mimeType: "text/plain", buffer: big } });
  assert.ok(dropped, "no chunk was dropped: the file fit in one chunk");
  assert.ok(resyncs >= 1, "the client did not ask the service where the upload stands after the lost answer");
  assert.equal(await patient.page.getByRole("progressbar", { name: "Upload of log.txt" }).getAttribute("value"), String(big.length));
  await patient.page.getByRole("button", { name: "Open the conversation" }).click();
  assert.ok((await downloaded(patient.page, "log.txt")).equals(big), "the resumed upload is not the file");
  await noPHI(patient, Object.values(markers));
});

story("an EICAR attachment is refused with a readable message, and nothing is sent", 120000, async () => {
  const patient = await person();
  await signIn(patient, "patient");
  await compose(patient.page, { subject: `Scan ${run}`, body: "Please see the attached file.", file: attachment("eicar.txt", eicar), send: false });
  await patient.page.getByRole("button", { name: "Send message" }).click();
  await status(patient.page).getByText(/eicar\.txt: .*malware/i).waitFor({ timeout: 60000 });
  await patient.page.locator(".uploads .refused").getByText("refused").waitFor();
  await look(patient.page, "patient-eicar-refused");
  assert.equal(await patient.page.getByRole("region", { name: "Your message was sent" }).count(), 0, "the message was sent anyway");
  await tab(patient.page, "Inbox").click();
  // The list is filled once the unread summary is: only then does an absence mean anything.
  await patient.page.locator("#unread-summary").getByText(/unread conversation/).waitFor();
  await patient.page.getByRole("button", { name: new RegExp(`Question about my results ${run}`) }).waitFor();
  assert.equal(await patient.page.getByText(`Scan ${run}`).count(), 0, "a thread was created despite the refused file");
  await noPHI(patient, Object.values(markers));
  await patient.context.close();
});

story("a proxy sees the patients they act for, never the adolescent's confidential thread", 180000, async () => {
  const teen = await person();
  await signIn(teen, "teen");
  const write = (subject, privacy) => compose(teen.page, { subject, body: `Between me and my doctor. ${markers.teen}`, privacy });
  const confidential = `Private ${run} ${markers.teen}`;
  const ordinary = `Appointment ${run}`;
  await write(confidential, "Confidential (not shown to parents or guardians)");
  await write(ordinary, "Normal");
  await teen.context.close();

  const proxy = await person();
  await signIn(proxy, "proxy");
  const actingFor = proxy.page.getByLabel("Acting for");
  assert.deepEqual((await actingFor.locator("option").allTextContents()).sort(), ["Patient p-1001", "Patient p-2001"]);
  await actingFor.selectOption("p-1001");
  await proxy.page.getByText(subject).waitFor({ timeout: 30000 }); // the first story's thread
  await look(proxy.page, "proxy-inbox-p-1001");
  await proxy.page.getByLabel("Acting for").selectOption("p-2001");
  await proxy.page.getByText(ordinary).waitFor({ timeout: 30000 });
  assert.equal(await proxy.page.getByText(confidential).count(), 0, "the proxy sees the adolescent's confidential thread");
  assert.ok(!(await proxy.page.content()).includes(markers.teen), "the confidential marker reached the proxy's page");
  await look(proxy.page, "proxy-inbox-p-2001");
  await tab(proxy.page, "Who accessed my messages").click();
  await proxy.page.getByRole("table").waitFor();
  await look(proxy.page, "proxy-access-report");
  await noPHI(proxy, Object.values(markers));
  await proxy.context.close();
});

story("an expired session asks to sign in again; signing out forgets everything", 120000, async () => {
  const patient = await person();
  await patient.page.clock.install();
  await signIn(patient, "patient");
  await patient.page.getByRole("heading", { name: "Inbox" }).waitFor();
  await patient.page.clock.fastForward("16:00"); // the dev issuer's tokens last 15 minutes
  await patient.page.getByRole("heading", { name: "Sign in again" }).waitFor();
  await patient.page.getByRole("alert").getByText(/session has ended/).waitFor();
  assert.equal(await patient.page.getByRole("button", { name: "Sign out" }).count(), 0);
  await look(patient.page, "session-expired");
  await noPHI(patient, Object.values(markers));
  await patient.context.close();

  const again = await person();
  await signIn(again, "patient");
  await again.page.getByRole("button", { name: new RegExp(`Question about my results ${run}`) }).waitFor();
  const afterSignOut = [];
  let signedOut = false;
  again.page.on("request", (r) => signedOut && r.headers().authorization && afterSignOut.push(r.url()));
  signedOut = true;
  await again.page.getByRole("button", { name: "Sign out" }).click();
  await again.page.getByRole("alert").getByText("You have signed out.").waitFor();
  assert.deepEqual(await again.page.evaluate(() => [localStorage.length, sessionStorage.length]), [0, 0]);
  assert.ok(!(await again.page.content()).includes(subject), "the inbox is still on the page after sign-out");
  await new Promise((r) => setTimeout(r, 2000)); // long enough for a watch to reconnect, were it still running
  assert.deepEqual(afterSignOut, [], "calls with a token after sign-out");
  await look(again.page, "signed-out");
  await again.context.close();
});

story("an auditor searches the log by patient and sees reads and verification, never content", 120000, async () => {
  const auditor = await person();
  await signIn(auditor, "auditor");
  await auditor.page.getByRole("heading", { name: "Audit log" }).waitFor();
  await auditor.page.getByText(/^Verified: \d+ records/).waitFor({ timeout: 30000 });
  await auditor.page.getByLabel("Patient id").fill("p-1001");
  await auditor.page.getByLabel("Actor (subject)").fill("clinician");
  // From this run's first minute: the reads must be the first story's, not older ones.
  const local = new Date(started.getTime() - started.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  await auditor.page.getByLabel("From").fill(local);
  await auditor.page.getByRole("button", { name: "Search" }).click();
  const table = auditor.page.getByRole("table");
  await table.waitFor();
  await table.getByRole("row", { name: /clinician \(clinician\) read/ }).first().waitFor();
  const html = await auditor.page.content();
  for (const m of Object.values(markers)) assert.ok(!html.includes(m), `the auditor's page shows content (${m})`);
  await look(auditor.page, "auditor-search");
  await noPHI(auditor, Object.values(markers));
  await auditor.context.close();
});
