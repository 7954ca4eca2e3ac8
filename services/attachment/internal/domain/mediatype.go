package domain

import (
	"mime"
	"strings"

	"github.com/gabriel-vasile/mimetype"

	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// SniffBytes is how many leading bytes of a file are used to detect its type; it is the
// detection library's own read limit, so sniffing a prefix equals sniffing the whole file.
const SniffBytes = 3072

// DefaultAllowedMediaTypes are the types accepted by default: PDF, PNG, JPEG, HEIC, plain text
// and DOCX.
var DefaultAllowedMediaTypes = []string{
	"application/pdf",
	"image/png",
	"image/jpeg",
	"image/heic",
	"text/plain",
	"application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}

// MediaPolicy decides which file types are accepted.
type MediaPolicy struct {
	allowed map[string]bool
}

// NewMediaPolicy returns a policy allowing exactly the given media types (parameters ignored).
func NewMediaPolicy(allowed []string) MediaPolicy {
	m := make(map[string]bool, len(allowed))
	for _, a := range allowed {
		m[baseType(a)] = true
	}
	return MediaPolicy{allowed: m}
}

// CheckDeclared refuses a declared type that is not on the allow-list, before any byte is read.
func (p MediaPolicy) CheckDeclared(declared string) error {
	if declared == "" {
		return usererr.New(usererr.InvalidArgument, "MEDIA_TYPE_REQUIRED", "declared_media_type is required")
	}
	if len(declared) > 255 {
		return usererr.New(usererr.InvalidArgument, "INVALID_MEDIA_TYPE", "declared_media_type is too long")
	}
	if !p.allowed[baseType(declared)] {
		return usererr.New(usererr.InvalidArgument, "MEDIA_TYPE_NOT_ALLOWED", "declared_media_type is not an allowed file type")
	}
	return nil
}

// Sniff detects the media type of a file from its first bytes (at least min(size, SniffBytes)
// of them), with a library made for it, and checks it against the allow-list and the declared
// type. It returns the sniffed type without parameters. Only an exact match counts: a type
// that merely descends from an allowed one (HTML from text/plain, any ZIP from DOCX's parent)
// is refused.
func (p MediaPolicy) Sniff(head []byte, declared string) (string, error) {
	sniffed := baseType(mimetype.Detect(head).String())
	if !p.allowed[sniffed] {
		return sniffed, usererr.New(usererr.InvalidArgument, "CONTENT_TYPE_NOT_ALLOWED", "the file's content is not an allowed file type")
	}
	if sniffed != baseType(declared) {
		return sniffed, usererr.New(usererr.InvalidArgument, "CONTENT_TYPE_MISMATCH", "the file's content does not match declared_media_type")
	}
	return sniffed, nil
}

func baseType(t string) string {
	if mt, _, err := mime.ParseMediaType(t); err == nil {
		return mt
	}
	return strings.ToLower(strings.TrimSpace(t))
}
