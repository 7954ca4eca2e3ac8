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
	"github.com/securemsg/securemsg/services/attachment/internal/domain"
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

// Unmarshal decodes an UploadAttachmentRequest and an AppendUploadChunkRequest itself and
// anything else as the standard codec.
func (c *ChunkCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if req, ok := v.(*attachmentv1.AppendUploadChunkRequest); ok {
		// gRPC's default pool keeps no buffers above 1 MiB: a chunk's message is gathered into
		// one of appendMessages' instead, then its data copied into a session chunk buffer.
		buf := data.MaterializeToBuffer(appendMessages)
		defer buf.Free()
		return decodeAppendRequest(buf.ReadOnlyData(), req)
	}
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

// decodeAppendRequest parses an AppendUploadChunkRequest with its data in a pooled buffer
// (sessionChunkPool), released by the handler once the chunk is stored: a session upload of
// 1 GiB would otherwise allocate 1 GiB of garbage, as the stream would (see ChunkCodec). As
// protobuf does, the last occurrence of a field wins and unknown fields are skipped.
func decodeAppendRequest(b []byte, req *attachmentv1.AppendUploadChunkRequest) error {
	req.Reset()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("append request: %w", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("append request: %w", protowire.ParseError(n))
			}
			req.UploadId, b = string(v), b[n:]
		case num == 2 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return fmt.Errorf("append request: %w", protowire.ParseError(n))
			}
			req.Offset, b = int64(v), b[n:] //nolint:gosec // G115: an int64 field is its two's-complement bits, as protobuf decodes it
		case num == 3 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("append request: %w", protowire.ParseError(n))
			}
			releaseSessionChunk(req.GetData())
			req.Data, b = sessionChunkCopy(v), b[n:]
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("append request: %w", protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return nil
}

// appendMessages pools buffers for whole AppendUploadChunkRequest messages: the largest chunk
// and room for the id and offset. Larger messages get a buffer of their own (and are refused).
var appendMessages = &sizedPool{size: domain.MaxSessionChunkBytes + 4<<10}

// sizedPool is a mem.BufferPool of buffers of one capacity.
type sizedPool struct {
	size int
	p    sync.Pool
}

// Get returns a buffer of length n.
func (s *sizedPool) Get(n int) *[]byte {
	if n > s.size {
		b := make([]byte, n)
		return &b
	}
	if b, ok := s.p.Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, s.size)
	return &b
}

// Put takes back buffers of the pool's capacity.
func (s *sizedPool) Put(b *[]byte) {
	if cap(*b) == s.size {
		s.p.Put(b)
	}
}

// sessionChunkPool holds buffers of an upload session's largest chunk.
var sessionChunkPool = sync.Pool{New: func() any { b := make([]byte, 0, domain.MaxSessionChunkBytes); return &b }}

// sessionChunkCopy copies v into a pooled buffer; an oversized chunk (refused later) gets its own.
func sessionChunkCopy(v []byte) []byte {
	if len(v) > domain.MaxSessionChunkBytes {
		return append([]byte(nil), v...)
	}
	bp := sessionChunkPool.Get().(*[]byte)
	return append((*bp)[:0], v...)
}

// releaseSessionChunk returns a session chunk's buffer to the pool (only buffers from
// sessionChunkCopy, by capacity); the caller must not use b afterwards.
func releaseSessionChunk(b []byte) {
	if cap(b) != domain.MaxSessionChunkBytes {
		return
	}
	b = b[:0]
	sessionChunkPool.Put(&b)
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
