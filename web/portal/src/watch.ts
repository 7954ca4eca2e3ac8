// Live updates: WatchInbox is a server stream (Connect over fetch) of ids-only notices. A
// screen re-reads what changed; the stream reconnects with backoff until the screen goes away.
import type { App } from "./app.js";
import type { InboxChange } from "./gen/securemsg/messaging/v1/messaging_service_pb.js";

export function watchInbox(app: App, signal: AbortSignal, onChange: (change: InboxChange | "resync") => void): void {
  const run = async () => {
    let failures = 0;
    while (!signal.aborted) {
      try {
        for await (const notice of app.api.messaging.watchInbox({}, { signal: signal })) {
          failures = 0;
          if (notice.notice.case === "change") onChange(notice.notice.value);
          else if (notice.notice.case === "resync") onChange("resync");
        }
      } catch {
        if (signal.aborted) return;
        failures++;
      }
      // The stream ended (a replica drained, a proxy timed out): catch up, then listen again.
      onChange("resync");
      await sleep(Math.min(15000, 500 * 2 ** Math.min(failures, 5)), signal);
    }
  };
  void run();
}

/** sleep waits ms, or less when signal aborts first (the screen went away). */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}
