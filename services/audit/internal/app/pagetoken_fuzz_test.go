package app

import (
	"errors"
	"testing"

	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// FuzzParsePageToken feeds arbitrary page tokens (client-supplied) to the QueryAuditEvents /
// ExportAuditEvents cursor decoder: no panic, every rejection is ErrInvalidArgument, a token
// is only accepted for the request it was bound to, and parse(pageToken(x)) == x.
func FuzzParsePageToken(f *testing.F) {
	bind := []byte("query|actor=user-1|from=2026-01-01")
	f.Add(pageToken(bind, 1), bind, uint64(1))
	f.Add(pageToken(bind, 1<<63), bind, uint64(42))
	f.Add(pageToken([]byte("other request"), 7), bind, uint64(7))
	f.Add("", bind, uint64(0))
	f.Add("!!!!", bind, uint64(0))
	f.Add("AAAAAAAAAAAAAAAAAAAAAA==", bind, uint64(0))
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAA", []byte{}, uint64(0))

	f.Fuzz(func(t *testing.T, tok string, bind []byte, last uint64) {
		got, err := parsePageToken(tok, bind)
		if err != nil {
			if !errors.Is(err, usererr.ErrInvalidArgument) {
				t.Fatalf("parsePageToken(%q) error = %v, want ErrInvalidArgument", tok, err)
			}
			if got != 0 {
				t.Fatalf("parsePageToken(%q) = %d with an error, want 0", tok, got)
			}
		} else if tok == "" && got != 0 {
			t.Fatalf("parsePageToken(\"\") = %d, want 0", got)
		}

		issued := pageToken(bind, last)
		if got, err := parsePageToken(issued, bind); err != nil || got != last {
			t.Fatalf("parsePageToken(pageToken(bind, %d)) = %d, %v; want %d, nil", last, got, err, last)
		}
		other := append([]byte("x"), bind...)
		if _, err := parsePageToken(issued, other); err == nil {
			t.Fatal("parsePageToken accepted a token issued for another request")
		}
	})
}
