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
  const { session } = await api.attachment.createUploadSession({ metadata });
  if (!session) throw new Error("the attachment service started no upload session");
  const uploadId = session.uploadId;
  const chunkSize = Number(session.maxChunkBytes) || 1 << 20;
  let offset = Number(session.nextOffset);
  let attempts = 0;
  onProgress(offset, file.size);
  while (offset < file.size) {
    const data = new Uint8Array(await file.slice(offset, offset + chunkSize).arrayBuffer());
    try {
      const resp = await api.attachment.appendUploadChunk({ uploadId, offset: BigInt(offset), data });
      offset = Number(resp.session?.nextOffset ?? offset + data.length);
      attempts = 0;
    } catch (err) {
      if (!retryable(err) || ++attempts >= maxAttempts) throw err;
      await pause(attempts);
      // Ask where the session stands rather than guess what the failed call did.
      offset = Number((await api.attachment.getUploadSession({ uploadId })).session?.nextOffset ?? offset);
    }
    onProgress(offset, file.size);
  }
  for (;;) {
    try {
      const { attachment } = await api.attachment.finishUploadSession({ uploadId });
      if (!attachment) throw new Error("the attachment service returned no attachment");
      if (attachment.scanState === ScanState.INFECTED) {
        throw new ConnectError("The file was refused: the malware scanner found a threat in it.", Code.InvalidArgument);
      }
      return attachment;
    } catch (err) {
      if (!retryable(err) || ++attempts >= maxAttempts) throw err;
      await pause(attempts);
    }
  }
}

function pause(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.min(4000, 250 * 2 ** attempt)));
}
