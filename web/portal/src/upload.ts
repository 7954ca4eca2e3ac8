// Resumable uploads through upload sessions: a browser cannot send a client stream, so the file
// goes up in chunks at explicit offsets. A chunk that fails for a retryable reason is resent
// from the offset the service says it has (GetUploadSession), so a dropped connection costs one
// chunk, not the file.
import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { ScanState, UploadMetadataSchema, type Attachment } from "./gen/securemsg/attachment/v1/attachment_pb.js";
import { retryable, type Api } from "./api.js";

const maxAttempts = 5;

/** upload stores one file for a thread (or as a draft when threadId is empty). */
export async function upload(
  api: Api,
  file: File,
  threadId: string,
  onProgress: (sent: number, total: number) => void,
): Promise<Attachment> {
  const metadata = create(UploadMetadataSchema, {
    fileName: file.name,
    declaredMediaType: file.type || "application/octet-stream",
    declaredSizeBytes: BigInt(file.size),
    threadId,
    clientRequestId: crypto.randomUUID(),
  });
  // A retried create is safe: the service answers the same session for the same request id.
  const { session } = await retrying(() => api.attachment.createUploadSession({ metadata }));
  if (!session) throw new Error("the attachment service started no upload session");
  const uploadId = session.uploadId;
  const chunkSize = Number(session.maxChunkBytes) || 1 << 20;
  let offset = Number(session.nextOffset);
  let failures = 0;
  onProgress(offset, file.size);
  while (offset < file.size) {
    const data = new Uint8Array(await file.slice(offset, offset + chunkSize).arrayBuffer());
    try {
      const resp = await api.attachment.appendUploadChunk({ uploadId, offset: BigInt(offset), data });
      offset = Number(resp.session?.nextOffset ?? offset + data.length);
      failures = 0;
    } catch (err) {
      if (!retryable(err) || ++failures >= maxAttempts) throw err;
      await pause(failures);
      // Ask where the session stands rather than guess what the failed call did: the chunk
      // may have been stored and only its answer lost.
      const { session: now } = await retrying(() => api.attachment.getUploadSession({ uploadId }));
      offset = Number(now?.nextOffset ?? offset);
    }
    onProgress(offset, file.size);
  }
  const { attachment } = await retrying(() => api.attachment.finishUploadSession({ uploadId }));
  if (!attachment) throw new Error("the attachment service returned no attachment");
  switch (attachment.scanState) {
    case ScanState.INFECTED:
      throw new ConnectError("The file was refused: the malware scanner found a threat in it.", Code.InvalidArgument);
    case ScanState.FAILED:
      throw new ConnectError("The file could not be checked for malware, so it cannot be sent.", Code.FailedPrecondition);
  }
  return attachment; // CLEAN, or PENDING: held back from everyone until the scan passes
}

/** retrying calls fn again, with backoff, while it fails for a reason worth retrying. */
async function retrying<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!retryable(err) || attempt >= maxAttempts) throw err;
      await pause(attempt);
    }
  }
}

function pause(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.min(4000, 250 * 2 ** attempt)));
}
