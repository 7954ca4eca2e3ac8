package testkit

import (
	"archive/zip"
	"bytes"
	"compress/zlib"
	"fmt"
	"slices"
	"testing"
)

// ZipMember is one file of a Zip archive.
type ZipMember struct {
	Name string
	Body []byte
}

// Zip is a zip archive of deflated members: a container a scanner must unpack to see inside.
func Zip(t testing.TB, members ...ZipMember) []byte {
	t.Helper()
	var b bytes.Buffer
	z := zip.NewWriter(&b)
	for _, m := range members {
		w, err := z.Create(m.Name)
		if err == nil {
			_, err = w.Write(m.Body)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// Docx is a minimal Word document (it sniffs as docx) whose text is text, deflated inside it.
func Docx(t testing.TB, text []byte) []byte {
	t.Helper()
	return Zip(t,
		ZipMember{"[Content_Types].xml", []byte(`<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>`)},
		ZipMember{"_rels/.rels", []byte(`<?xml version="1.0"?><Relationships/>`)},
		ZipMember{"word/document.xml", slices.Concat([]byte(`<?xml version="1.0"?><w:document><w:body><w:p><w:r><w:t>`), text,
			[]byte(`</w:t></w:r></w:p></w:body></w:document>`))})
}

// PDFStream is a one-object PDF whose Flate-compressed content stream shows text: the bytes of
// text appear in the file only compressed.
func PDFStream(t testing.TB, text []byte) []byte {
	t.Helper()
	var z bytes.Buffer
	w := zlib.NewWriter(&z)
	if _, err := w.Write(slices.Concat([]byte("BT /F1 12 Tf ("), text, []byte(") Tj ET"))); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return slices.Concat([]byte(fmt.Sprintf("%%PDF-1.7\n1 0 obj\n<< /Length %d /Filter /FlateDecode >>\nstream\n", z.Len())),
		z.Bytes(), []byte("\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"))
}
