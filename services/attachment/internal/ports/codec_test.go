package ports

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
)

func TestChunkCodecUnmarshalMatchesProto(t *testing.T) {
	t.Parallel()
	codec := NewChunkCodec()
	tests := []struct {
		name string
		msg  *attachmentv1.UploadAttachmentRequest
	}{
		{name: "empty", msg: &attachmentv1.UploadAttachmentRequest{}},
		{name: "metadata", msg: &attachmentv1.UploadAttachmentRequest{Payload: &attachmentv1.UploadAttachmentRequest_Metadata{Metadata: &attachmentv1.UploadMetadata{
			FileName: "a.pdf", DeclaredMediaType: "application/pdf", DeclaredSizeBytes: 12, ThreadId: "t", ClientRequestId: "c"}}}},
		{name: "chunk", msg: &attachmentv1.UploadAttachmentRequest{Payload: &attachmentv1.UploadAttachmentRequest_Chunk{Chunk: bytes.Repeat([]byte{7}, 1<<20)}}},
		{name: "empty chunk", msg: &attachmentv1.UploadAttachmentRequest{Payload: &attachmentv1.UploadAttachmentRequest_Chunk{Chunk: []byte{}}}},
		{name: "oversized chunk", msg: &attachmentv1.UploadAttachmentRequest{Payload: &attachmentv1.UploadAttachmentRequest_Chunk{Chunk: make([]byte, 1<<20+1)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := proto.Marshal(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			// As one buffer, and split the way HTTP/2 frames split a message (16 KiB, and
			// a split inside the tag and length).
			for _, data := range []mem.BufferSlice{{mem.SliceBuffer(b)}, splitAt(b, 1, 2, 16<<10, 32<<10)} {
				got := &attachmentv1.UploadAttachmentRequest{}
				if err := codec.Unmarshal(data, got); err != nil {
					t.Fatalf("Unmarshal(%s in %d buffers) = %v", tt.name, len(data), err)
				}
				// proto.Equal rather than cmp.Diff: a diff of 1 MiB of bytes takes seconds.
				if !proto.Equal(tt.msg, got) {
					t.Errorf("Unmarshal(%s in %d buffers) differs from what proto decodes", tt.name, len(data))
				}
				releaseChunk(got.GetChunk())
			}
		})
	}
	// Other messages go through the standard codec.
	resp := &attachmentv1.GetAttachmentRequest{AttachmentId: "x"}
	out, err := codec.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	back := &attachmentv1.GetAttachmentRequest{}
	if err := codec.Unmarshal(out, back); err != nil || back.GetAttachmentId() != "x" {
		t.Errorf("round trip of another message = %v, %v", back, err)
	}
}

// splitAt cuts b into buffers at the given offsets (those within b).
func splitAt(b []byte, offsets ...int) mem.BufferSlice {
	var out mem.BufferSlice
	last := 0
	for _, o := range offsets {
		if o > last && o < len(b) {
			out = append(out, mem.SliceBuffer(b[last:o]))
			last = o
		}
	}
	return append(out, mem.SliceBuffer(b[last:]))
}

func TestChunkCodecMarshalMatchesProto(t *testing.T) {
	t.Parallel()
	codec := NewChunkCodec()
	pooled := func(n int, fill byte) []byte {
		b := downloadBuffer()[:n]
		for i := range b {
			b[i] = fill
		}
		return b
	}
	tests := []struct {
		name     string
		msg      *attachmentv1.DownloadAttachmentResponse
		zeroCopy bool
	}{
		{name: "metadata", msg: &attachmentv1.DownloadAttachmentResponse{Attachment: &attachmentv1.Attachment{AttachmentId: "a"}, Offset: 5}},
		{name: "pooled chunk", msg: &attachmentv1.DownloadAttachmentResponse{Chunk: pooled(downloadChunk, 3), Offset: 1 << 40}, zeroCopy: true},
		{name: "pooled short chunk at 0", msg: &attachmentv1.DownloadAttachmentResponse{Chunk: pooled(100, 4)}, zeroCopy: true},
		{name: "other chunk", msg: &attachmentv1.DownloadAttachmentResponse{Chunk: bytes.Repeat([]byte{5}, 1000), Offset: 7}},
		{name: "empty pooled chunk", msg: &attachmentv1.DownloadAttachmentResponse{Chunk: pooled(0, 0), Offset: 9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := proto.MarshalOptions{Deterministic: true}.Marshal(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			out, err := codec.Marshal(tt.msg)
			if err != nil {
				t.Fatalf("Marshal(%s) = %v", tt.name, err)
			}
			if got := out.Materialize(); !bytes.Equal(got, want) {
				t.Errorf("Marshal(%s) = %d bytes, differs from proto's %d", tt.name, len(got), len(want))
			}
			shared := false
			for _, b := range out {
				if d := b.ReadOnlyData(); len(d) > 0 && len(tt.msg.GetChunk()) > 0 && &d[0] == &tt.msg.GetChunk()[0] {
					shared = true
				}
			}
			if shared != tt.zeroCopy {
				t.Errorf("Marshal(%s) shares the chunk's memory = %v, want %v", tt.name, shared, tt.zeroCopy)
			}
			out.Free()
		})
	}
}

func FuzzDecodeUploadRequest(f *testing.F) {
	for _, m := range []*attachmentv1.UploadAttachmentRequest{
		{Payload: &attachmentv1.UploadAttachmentRequest_Chunk{Chunk: []byte("abc")}},
		{Payload: &attachmentv1.UploadAttachmentRequest_Metadata{Metadata: &attachmentv1.UploadMetadata{FileName: "x"}}},
	} {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want := &attachmentv1.UploadAttachmentRequest{}
		wantErr := proto.Unmarshal(b, want)
		got := &attachmentv1.UploadAttachmentRequest{}
		gotErr := decodeUploadRequest(b, got)
		fast := &attachmentv1.UploadAttachmentRequest{}
		if decodeChunkOnly(splitAt(b, 1, 3), fast) {
			if wantErr != nil || !proto.Equal(want, fast) {
				t.Fatalf("decodeChunkOnly(%x) = %v, proto decodes %v, %v", b, fast, want, wantErr)
			}
			releaseChunk(fast.GetChunk())
		}
		if wantErr != nil {
			return // the codec may be stricter or laxer on malformed input, but must not panic
		}
		if gotErr != nil {
			t.Fatalf("decodeUploadRequest(%x) = %v, proto accepts it", b, gotErr)
		}
		if !proto.Equal(want.GetMetadata(), got.GetMetadata()) || !bytes.Equal(want.GetChunk(), got.GetChunk()) {
			t.Fatalf("decodeUploadRequest(%x) = %v, want %v", b, got, want)
		}
	})
}
