package ports

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	attachmentv1 "github.com/securemsg/securemsg/gen/securemsg/attachment/v1"
)

func TestUploadCodecMatchesProto(t *testing.T) {
	t.Parallel()
	codec := NewUploadCodec()
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
			got := &attachmentv1.UploadAttachmentRequest{}
			if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, got); err != nil {
				t.Fatalf("Unmarshal(%s) = %v", tt.name, err)
			}
			// proto.Equal rather than cmp.Diff: a diff of 1 MiB of bytes takes seconds.
			if !proto.Equal(tt.msg, got) {
				t.Errorf("Unmarshal(%s) differs from what proto decodes", tt.name)
			}
			releaseChunk(got.GetChunk())
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
