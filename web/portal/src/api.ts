// Clients of the four services' browser edges (Connect protocol over fetch), generated from
// the protos (web/portal/src/gen, `make generate`). Every call carries the session's bearer
// token in the Authorization header, never in a URL.
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { AttachmentService } from "./gen/securemsg/attachment/v1/attachment_pb.js";
import { AuditService } from "./gen/securemsg/audit/v1/audit_pb.js";
import { MessagingService } from "./gen/securemsg/messaging/v1/messaging_service_pb.js";
import { NotificationService } from "./gen/securemsg/notification/v1/notification_pb.js";
import type { PortalConfig } from "./config.js";
import { endSession, session } from "./session.js";

export interface Api {
  messaging: Client<typeof MessagingService>;
  attachment: Client<typeof AttachmentService>;
  audit: Client<typeof AuditService>;
  notification: Client<typeof NotificationService>;
  /** download fetches an attachment's bytes through the edge's ranged-download route. */
  download(attachmentId: string): Promise<Blob>;
}

const bearer: Interceptor = (next) => async (req) => {
  const s = session();
  if (s) req.header.set("Authorization", `Bearer ${s.accessToken}`);
  try {
    return await next(req);
  } catch (err) {
    // A refused token means the session is over, whatever the screen was doing.
    if (ConnectError.from(err).code === Code.Unauthenticated) endSession("expired");
    throw err;
  }
};

export function connectApi(cfg: PortalConfig): Api {
  const transport = (baseUrl: string) => createConnectTransport({ baseUrl, interceptors: [bearer] });
  return {
    messaging: createClient(MessagingService, transport(cfg.services.messaging)),
    attachment: createClient(AttachmentService, transport(cfg.services.attachment)),
    audit: createClient(AuditService, transport(cfg.services.audit)),
    notification: createClient(NotificationService, transport(cfg.services.notification)),
    async download(attachmentId: string): Promise<Blob> {
      const s = session();
      const resp = await fetch(`${cfg.services.attachment}/v1/attachments/${encodeURIComponent(attachmentId)}/content`, {
        headers: s ? { Authorization: `Bearer ${s.accessToken}` } : {},
        cache: "no-store",
        credentials: "omit",
      });
      if (resp.status === 401) {
        endSession("expired");
        throw new ConnectError("sign in again", Code.Unauthenticated);
      }
      if (!resp.ok) {
        let message = `the download failed (HTTP ${resp.status})`;
        try {
          const body = (await resp.json()) as { message?: string };
          if (body.message) message = body.message;
        } catch {
          // not JSON: keep the status text
        }
        throw new ConnectError(message, resp.status === 404 ? Code.NotFound : Code.Unknown);
      }
      return resp.blob();
    },
  };
}

/** describe turns a failed call into a sentence for the person at the screen. */
export function describe(err: unknown): string {
  const e = ConnectError.from(err);
  switch (e.code) {
    case Code.Unauthenticated:
      return "Your session has ended. Sign in again.";
    case Code.PermissionDenied:
      return e.rawMessage ? `Not allowed: ${e.rawMessage}` : "You are not allowed to do that.";
    case Code.InvalidArgument:
    case Code.FailedPrecondition:
    case Code.NotFound:
    case Code.AlreadyExists:
    case Code.ResourceExhausted:
    case Code.OutOfRange:
    case Code.Aborted:
      return e.rawMessage || "The request was refused.";
    case Code.Unavailable:
      return "The service is unavailable right now. Try again in a moment.";
    case Code.DataLoss:
      return "This item is damaged and cannot be shown. The care team has been told.";
    default:
      // A fetch that never reached the service (no network, or a certificate the browser does
      // not trust) arrives here too.
      return e.rawMessage === "Failed to fetch" || e.rawMessage.includes("fetch")
        ? "Cannot reach the service. Check your connection (on the dev stack: that this browser trusts the dev CA)."
        : "Something went wrong. Try again later.";
  }
}

/** retryable says whether trying the same call again may succeed. */
export function retryable(err: unknown): boolean {
  const code = ConnectError.from(err).code;
  return code === Code.Unavailable || code === Code.Unknown || code === Code.DeadlineExceeded || code === Code.Aborted;
}
