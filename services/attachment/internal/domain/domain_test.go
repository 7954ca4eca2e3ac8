package domain_test

import (
	"archive/zip"
	"bytes"
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

func TestNeutraliseFileName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "plain", in: "report.pdf", want: "report.pdf"},
		{name: "unix traversal", in: "../../etc/passwd", want: "passwd"},
		{name: "windows traversal", in: `..\..\windows\system32\cmd.exe`, want: "cmd.exe"},
		{name: "absolute", in: "/var/lib/x.png", want: "x.png"},
		{name: "control characters", in: "a\x00b\nc\r\td.txt", want: "abcd.txt"},
		{name: "bidi override hides extension", in: "invoice\u202Efdp.exe", want: "invoicefdp.exe"},
		{name: "leading dots", in: "...hidden", want: "hidden"},
		{name: "only dots", in: "..", want: "file"},
		{name: "empty", in: "", want: "file"},
		{name: "trailing separator", in: "dir/", want: "file"},
		{name: "reserved characters", in: `a:b*c?"<>|.txt`, want: "a_b_c_____.txt"},
		{name: "spaces trimmed", in: "  scan.jpg  ", want: "scan.jpg"},
		{name: "NFC", in: "cafe\u0301.txt", want: "caf\u00e9.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := domain.NeutraliseFileName(tt.in)
			if err != nil || got != tt.want {
				t.Errorf("NeutraliseFileName(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestNeutraliseFileNameRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
	}{
		{name: "too long", in: strings.Repeat("a", 256)},
		{name: "invalid utf-8", in: "a\xffb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := domain.NeutraliseFileName(tt.in); !errors.Is(err, usererr.ErrInvalidArgument) {
				t.Errorf("NeutraliseFileName(%q) error = %v, want ErrInvalidArgument", tt.in, err)
			}
		})
	}
}

func FuzzNeutraliseFileName(f *testing.F) {
	for _, s := range []string{"a.pdf", "../x", `..\y`, "\u202e", "\x00", ".", strings.Repeat("é", 255)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := domain.NeutraliseFileName(in)
		if err != nil {
			return
		}
		if got == "" || strings.ContainsAny(got, `/\`) || strings.HasPrefix(got, ".") || !utf8.ValidString(got) {
			t.Fatalf("NeutraliseFileName(%q) = %q: unsafe", in, got)
		}
		for _, r := range got {
			if unicode.IsControl(r) || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) {
				t.Fatalf("NeutraliseFileName(%q) = %q: keeps %U", in, got, r)
			}
		}
	})
}

// Samples of each type, as small as the detector accepts.
var (
	pngBytes  = append([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), make([]byte, 64)...)
	pdfBytes  = []byte("%PDF-1.7\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n")
	jpegBytes = append([]byte{0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0}, make([]byte, 64)...)
	elfBytes  = append([]byte("\x7fELF\x02\x01\x01\x00"), make([]byte, 64)...)
	peBytes   = append([]byte("MZ\x90\x00"), make([]byte, 128)...)
	htmlBytes = []byte("<!DOCTYPE html><html><body><script>alert(1)</script></body></html>")
	textBytes = []byte("Dear doctor, the rash is better.\n")
)

// Docx builds a minimal Word document (an OOXML zip) for type detection.
func Docx(t testing.TB) []byte {
	t.Helper()
	var b bytes.Buffer
	z := zip.NewWriter(&b)
	for _, f := range []struct{ name, body string }{
		{"[Content_Types].xml", `<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>`},
		{"_rels/.rels", `<?xml version="1.0"?><Relationships/>`},
		{"word/document.xml", `<?xml version="1.0"?><w:document/>`},
	} {
		w, err := z.Create(f.name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestMediaPolicySniff(t *testing.T) {
	t.Parallel()
	p := domain.NewMediaPolicy(domain.DefaultAllowedMediaTypes)
	docx := "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
	tests := []struct {
		name     string
		head     []byte
		declared string
		wantType string
		wantErr  bool
	}{
		{name: "png", head: pngBytes, declared: "image/png", wantType: "image/png"},
		{name: "pdf", head: pdfBytes, declared: "application/pdf", wantType: "application/pdf"},
		{name: "jpeg", head: jpegBytes, declared: "image/jpeg", wantType: "image/jpeg"},
		{name: "text with charset", head: textBytes, declared: "text/plain; charset=utf-8", wantType: "text/plain"},
		{name: "docx", head: Docx(t), declared: docx, wantType: docx},
		{name: "png declared as pdf", head: pngBytes, declared: "application/pdf", wantType: "image/png", wantErr: true},
		{name: "elf executable", head: elfBytes, declared: "application/pdf", wantErr: true},
		{name: "windows executable", head: peBytes, declared: "image/png", wantErr: true},
		{name: "html as text", head: htmlBytes, declared: "text/plain", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := p.Sniff(tt.head, tt.declared)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Sniff(%s, %q) = %q, %v, want error %v", tt.name, tt.declared, got, err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, usererr.ErrInvalidArgument) {
				t.Errorf("Sniff(%s) error = %v, want ErrInvalidArgument", tt.name, err)
			}
			if tt.wantType != "" && got != tt.wantType {
				t.Errorf("Sniff(%s) type = %q, want %q", tt.name, got, tt.wantType)
			}
		})
	}
}

func TestMediaPolicyCheckDeclared(t *testing.T) {
	t.Parallel()
	p := domain.NewMediaPolicy(domain.DefaultAllowedMediaTypes)
	tests := []struct {
		declared string
		ok       bool
	}{
		{"application/pdf", true}, {"IMAGE/PNG", true}, {"image/heic", true}, {"text/plain; charset=utf-8", true},
		{"", false}, {"application/x-msdownload", false}, {"text/html", false}, {"application/zip", false},
	}
	for _, tt := range tests {
		t.Run(tt.declared, func(t *testing.T) {
			if err := p.CheckDeclared(tt.declared); (err == nil) != tt.ok {
				t.Errorf("CheckDeclared(%q) = %v, want ok %v", tt.declared, err, tt.ok)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	t.Parallel()
	l := domain.DefaultLimits()
	tests := []struct {
		name string
		size int64
		want error
	}{
		{name: "ok", size: 1 << 20},
		{name: "zero", size: 0, want: usererr.ErrInvalidArgument},
		{name: "at limit", size: 25 << 20},
		{name: "over limit", size: 25<<20 + 1, want: usererr.ErrResourceExhausted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := l.CheckDeclaredSize(tt.size)
			if (tt.want == nil) != (err == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("CheckDeclaredSize(%d) = %v, want %v", tt.size, err, tt.want)
			}
		})
	}
	scan := domain.Limits{MaxFileBytes: 1 << 40, ScanMaxBytes: 100 << 20}
	if err := scan.CheckDeclaredSize(100<<20 + 1); !errors.Is(err, usererr.ErrResourceExhausted) {
		t.Errorf("CheckDeclaredSize(above scan limit) = %v, want ErrResourceExhausted", err)
	}
}
