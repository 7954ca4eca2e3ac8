package ports

import (
	"encoding/binary"
	"fmt"
	"sync"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
)

// ChunkCodec is the standard protobuf codec, except for the messages that carry file bytes,
// which it moves with as few copies and allocations as it can:
//
//   - An upload chunk is copied once, from the received frames into a pooled buffer, instead of
//     being gathered into one buffer and then copied into a fresh allocation. An upload of 1 GiB
//     in 1 MiB chunks would otherwise allocate 1 GiB of garbage, and the garbage collector's
//     overshoot at that rate is most of the service's memory peak. The chunk reader returns
//     each buffer to the pool once the upload pipeline has consumed it (it is hashed, scanned
//     and encrypted, never retained).
//   - A download chunk held in a buffer from the download pool (see downloadBuffer) is not
//     copied at all: the encoded message is a tag and length, the buffer itself, and the
//     offset, and gRPC hands the buffer back to the pool once it has been written out. The
//     standard codec would take a zeroed buffer from its pool and copy the chunk into it.
//
// Install it with grpc.ForceServerCodecV2 (see wire.ServerOptions). Without it the service
// works the same, with those copies.
type ChunkCodec struct{ std encoding.CodecV2 }

// NewChunkCodec wraps the registered protobuf codec.
func NewChunkCodec() *ChunkCodec {
	return &ChunkCodec{std: encoding.GetCodecV2("proto")}
}

// Name is "proto": on the wire nothing changes.
func (c *ChunkCodec) Name() string { return "proto" }

// Marshal encodes as the standard codec does; a download chunk in a pooled buffer is passed on
// without a copy, and the buffer belongs to gRPC from then on.
func (c *ChunkCodec) Marshal(v any) (mem.BufferSlice, error) {
	if resp, ok := v.(*attachmentv1.DownloadAttachmentResponse); ok {
		if out, ok := marshalDownloadChunk(resp); ok {
			return out, nil
		}
	}
	return c.std.Marshal(v)
}

// Unmarshal decodes an UploadAttachmentRequest itself and anything else as the standard codec.
func (c *ChunkCodec) Unmarshal(data mem.BufferSlice, v any) error {
	req, ok := v.(*attachmentv1.UploadAttachmentRequest)
	if !ok {
		return c.std.Unmarshal(data, v)
	}
	if decodeChunkOnly(data, req) {
		return nil
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return decodeUploadRequest(buf.ReadOnlyData(), req)
}

// decodeChunkOnly decodes the common case, a message that is one chunk field and nothing else,
// straight from the received frames into a pooled buffer. It reports false, having done
// nothing, for anything else.
func decodeChunkOnly(data mem.BufferSlice, req *attachmentv1.UploadAttachmentRequest) bool {
	var head [1 + binary.MaxVarintLen64]byte
	h := head[:data.CopyTo(head[:])]
	num, typ, tn := protowire.ConsumeTag(h)
	if tn < 0 || num != 2 || typ != protowire.BytesType {
		return false
	}
	size, ln := protowire.ConsumeVarint(h[tn:])
	if ln < 0 || size > MaxChunkBytes || uint64(data.Len()) != uint64(tn+ln)+size { //nolint:gosec // G115: lengths, never negative
		return false
	}
	req.Reset()
	bp := chunkPool.Get().(*[]byte)
	chunk := (*bp)[:size]
	skip := tn + ln
	n := 0
	for _, b := range data {
		d := b.ReadOnlyData()
		if skip >= len(d) {
			skip -= len(d)
			continue
		}
		n += copy(chunk[n:], d[skip:])
		skip = 0
	}
	req.Payload = &attachmentv1.UploadAttachmentRequest_Chunk{Chunk: chunk}
	return true
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

// downloadChunkPool holds downloadChunk-sized buffers for download messages; ChunkCodec returns
// them when gRPC is done with them. It implements mem.BufferPool for that.
type downloadChunkPool struct{ p sync.Pool }

var downloadBuffers = &downloadChunkPool{p: sync.Pool{New: func() any { b := make([]byte, downloadChunk); return &b }}}

// downloadBuffer returns a buffer of downloadChunk bytes for one download message. Sent in a
// DownloadAttachmentResponse through ChunkCodec, it goes back to the pool after it is written;
// the sender must not touch it after Send.
func downloadBuffer() []byte { return (*downloadBuffers.p.Get().(*[]byte))[:downloadChunk] }

// Get is mem.BufferPool's: a pooled buffer of length n (at most downloadChunk).
func (d *downloadChunkPool) Get(n int) *[]byte {
	b := d.p.Get().(*[]byte)
	*b = (*b)[:n]
	return b
}

// Put is mem.BufferPool's; only downloadChunk-capacity buffers are taken back.
func (d *downloadChunkPool) Put(b *[]byte) {
	if cap(*b) == downloadChunk {
		d.p.Put(b)
	}
}

// marshalDownloadChunk encodes a chunk-only response whose chunk is a download buffer without
// copying it, exactly as proto.Marshal would (field 2, then field 3). It reports false for any
// other response, which the standard codec then encodes.
func marshalDownloadChunk(resp *attachmentv1.DownloadAttachmentResponse) (mem.BufferSlice, bool) {
	chunk := resp.GetChunk()
	if resp.GetAttachment() != nil || len(chunk) == 0 || cap(chunk) != downloadChunk || len(resp.ProtoReflect().GetUnknown()) != 0 {
		return nil, false
	}
	head := protowire.AppendVarint(protowire.AppendTag(make([]byte, 0, 8), 2, protowire.BytesType), uint64(len(chunk)))
	owned := chunk // the buffer's pointer for the pool: its capacity is the whole buffer
	out := mem.BufferSlice{mem.SliceBuffer(head), mem.NewBuffer(&owned, downloadBuffers)}
	if off := resp.GetOffset(); off != 0 {
		// An int64 field is a varint of its two's-complement bits, as proto.Marshal writes it.
		out = append(out, mem.SliceBuffer(protowire.AppendVarint(protowire.AppendTag(make([]byte, 0, 12), 3, protowire.VarintType), uint64(off)))) //nolint:gosec // G115: intended, see above
	}
	return out, true
}
