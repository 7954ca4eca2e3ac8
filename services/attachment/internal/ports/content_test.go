package ports

import "testing"

func TestParseRange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		header string
		want   byteRange
		ok     bool
	}{
		{header: "bytes=0-99", want: byteRange{offset: 0, length: 100}, ok: true},
		{header: "bytes=100-", want: byteRange{offset: 100}, ok: true},
		{header: "bytes=-500", want: byteRange{suffix: 500}, ok: true},
		{header: "bytes= 5-5", want: byteRange{offset: 5, length: 1}, ok: true},
		{header: ""},
		{header: "items=0-1"},
		{header: "bytes=0-1,4-5"},
		{header: "bytes=9-3"},
		{header: "bytes=-0"},
		{header: "bytes=-"},
		{header: "bytes=a-b"},
		{header: "bytes=-1-2"},
		{header: "bytes=5"},
	}
	for _, tt := range tests {
		got, ok := parseRange(tt.header)
		if ok != tt.ok || got != tt.want {
			t.Errorf("parseRange(%q) = %+v, %v, want %+v, %v", tt.header, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-99", "bytes=-5", "bytes=7-", "bytes=1-0", "bytes=0-1,2-3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		r, ok := parseRange(h)
		if !ok {
			return
		}
		if r.offset < 0 || r.length < 0 || r.suffix < 0 || (r.suffix > 0 && (r.offset != 0 || r.length != 0)) {
			t.Fatalf("parseRange(%q) = %+v: not a range the rpc accepts", h, r)
		}
	})
}

func TestSafeContentTypeAndDisposition(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"application/pdf": "application/pdf", "text/plain": "text/plain", "text/html": "application/octet-stream",
		"image/svg+xml": "application/octet-stream", "application/javascript": "application/octet-stream", "": "application/octet-stream",
	} {
		if got := safeContentType(in); got != want {
			t.Errorf("safeContentType(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"scan.pdf":    `attachment; filename=scan.pdf`,
		"my scan.pdf": `attachment; filename="my scan.pdf"`,
		"café.txt":    `attachment; filename*=utf-8''caf%C3%A9.txt`,
		`a"b.txt`:     `attachment; filename="a\"b.txt"`,
	} {
		if got := contentDisposition(in); got != want {
			t.Errorf("contentDisposition(%q) = %q, want %q", in, got, want)
		}
	}
}
