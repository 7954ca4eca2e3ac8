package ports

import (
	"fmt"
	"sync"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
)

// UploadCodec is the standard protobuf codec, except that an upload chunk is copied into a
// pooled buffer instead of a fresh allocation. An upload of 1 GiB in 1 MiB chunks would
// otherwise allocate 1 GiB of garbage, and the garbage collector's overshoot at that rate is
// most of the service's memory peak. The chunk reader returns each buffer to the pool once the
// upload pipeline has consumed it (it is hashed, scanned and encrypted, never retained).
// Install it with grpc.ForceServerCodecV2 (see wire.ServerOptions).
type UploadCodec struct{ std encoding.CodecV2 }

// NewUploadCodec wraps the registered protobuf codec.
func NewUploadCodec() *UploadCodec {
	return &UploadCodec{std: encoding.GetCodecV2("proto")}
}

// Name is "proto": on the wire nothing changes.
func (c *UploadCodec) Name() string { return "proto" }

// Marshal encodes as the standard codec does.
func (c *UploadCodec) Marshal(v any) (mem.BufferSlice, error) { return c.std.Marshal(v) }

// Unmarshal decodes an UploadAttachmentRequest itself and anything else as the standard codec.
func (c *UploadCodec) Unmarshal(data mem.BufferSlice, v any) error {
	req, ok := v.(*attachmentv1.UploadAttachmentRequest)
	if !ok {
		return c.std.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return decodeUploadRequest(buf.ReadOnlyData(), req)
}

// decodeUploadRequest parses the two oneof fields of an UploadAttachmentRequest; as protobuf
// does, the last one on the wire wins and unknown fields are skipped.
func decodeUploadRequest(b []byte, req *attachmentv1.UploadAttachmentRequest) error {
	req.Reset()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("upload request: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if (num == 1 || num == 2) && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("upload request: %w", protowire.ParseError(n))
			}
			b = b[n:]
			if num == 1 {
				md := &attachmentv1.UploadMetadata{}
				if old := req.GetMetadata(); old != nil {
					md = old // protobuf merges repeated occurrences of a message field
				}
				if err := (proto.UnmarshalOptions{Merge: true}).Unmarshal(v, md); err != nil {
					return err
				}
				req.Payload = &attachmentv1.UploadAttachmentRequest_Metadata{Metadata: md}
			} else {
				releaseChunk(req.GetChunk())
				req.Payload = &attachmentv1.UploadAttachmentRequest_Chunk{Chunk: pooledCopy(v)}
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return fmt.Errorf("upload request: %w", protowire.ParseError(n))
		}
		b = b[n:]
	}
	return nil
}

// chunkPool holds MaxChunkBytes buffers.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, 0, MaxChunkBytes); return &b }}

// pooledCopy copies v into a pooled buffer; an oversized chunk (refused later) gets its own.
func pooledCopy(v []byte) []byte {
	if len(v) > MaxChunkBytes {
		return append([]byte(nil), v...)
	}
	bp := chunkPool.Get().(*[]byte)
	return append((*bp)[:0], v...)
}

// releaseChunk returns a chunk's buffer to the pool. Only buffers from pooledCopy are taken
// back (by capacity); the caller must not use b afterwards.
func releaseChunk(b []byte) {
	if cap(b) != MaxChunkBytes {
		return
	}
	b = b[:0]
	chunkPool.Put(&b)
}
