package app

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// FuzzParseMessageToken feeds arbitrary GetThread page tokens (client-supplied) to their
// decoder: no panic; a rejection is InvalidArgument and yields 0; an accepted token names the
// thread it was asked for and a non-negative sequence; parse(messageToken(x)) == x.
func FuzzParseMessageToken(f *testing.F) {
	thread := "0d9e8f7a-6b5c-4d3e-8f1a-2b3c4d5e6f70"
	f.Add(messageToken(thread, 20), thread, int32(20))
	f.Add(messageToken(thread, math.MaxInt32), thread, int32(7))
	f.Add(messageToken("other-thread", 3), thread, int32(3))
	f.Add(base64.RawURLEncoding.EncodeToString([]byte("m1|"+thread+"|4294967297")), thread, int32(1)) // wrapped to 1 before the fix
	f.Add(base64.RawURLEncoding.EncodeToString([]byte("m1|"+thread+"|-1")), thread, int32(0))
	f.Add(base64.RawURLEncoding.EncodeToString([]byte("m1|"+thread+"|2147483648")), thread, int32(0)) // was -2147483648
	f.Add("!!", thread, int32(0))
	f.Add("", "", int32(0))

	f.Fuzz(func(t *testing.T, tok, threadID string, seq int32) {
		got, err := parseMessageToken(tok, threadID)
		if err != nil {
			if k, _ := usererr.KindOf(err); k != usererr.InvalidArgument || got != 0 {
				t.Fatalf("parseMessageToken(%q) = %d, %v; want 0, InvalidArgument", tok, got, err)
			}
		} else if got < 0 {
			t.Fatalf("parseMessageToken(%q) = %d, want >= 0", tok, got)
		}
		if seq < 0 {
			return
		}
		if got, err := parseMessageToken(messageToken(threadID, seq), threadID); err != nil && !containsBar(threadID) || err == nil && got != seq {
			t.Fatalf("parseMessageToken(messageToken(%q, %d)) = %d, %v; want %d", threadID, seq, got, err, seq)
		}
	})
}

func containsBar(s string) bool {
	for _, r := range s {
		if r == '|' {
			return true
		}
	}
	return false
}

// FuzzParseListToken feeds arbitrary ListThreads page tokens to their decoder: no panic; a
// rejection is InvalidArgument with a zero token; an accepted token is version 1, bound to the
// filters asked for, unexpired, with a canonical UUID; and a token we issue parses back.
func FuzzParseListToken(f *testing.F) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	issue := func(tok listToken) string {
		raw, _ := json.Marshal(tok)
		return base64.RawURLEncoding.EncodeToString(raw)
	}
	good := listToken{V: 1, At: now.UnixNano(), ID: "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", Filters: "0123456789abcdef", Expires: now.Add(listTokenTTL).Unix()}
	f.Add(issue(good), "0123456789abcdef", now.Unix())
	f.Add(issue(good), "fedcba9876543210", now.Unix())
	f.Add(issue(good), "0123456789abcdef", now.Add(48*time.Hour).Unix())
	urn := good
	urn.ID = "urn:uuid:" + good.ID
	f.Add(issue(urn), good.Filters, now.Unix())
	f.Add(base64.RawURLEncoding.EncodeToString([]byte(`{"v":1,"i":"x","f":"","e":99999999999}`)), "", now.Unix())
	f.Add("e30", "", now.Unix())
	f.Add("%%%", "", now.Unix())

	f.Fuzz(func(t *testing.T, s, fh string, nowUnix int64) {
		at := time.Unix(nowUnix, 0)
		tok, err := parseListToken(s, fh, at)
		if err != nil {
			if k, _ := usererr.KindOf(err); k != usererr.InvalidArgument || tok != (listToken{}) {
				t.Fatalf("parseListToken(%q) = %+v, %v; want zero, InvalidArgument", s, tok, err)
			}
			return
		}
		if tok.V != 1 || tok.Filters != fh || at.Unix() > tok.Expires {
			t.Fatalf("parseListToken(%q) accepted %+v for filters %q at %d", s, tok, fh, nowUnix)
		}
		if len(tok.ID) != 36 {
			t.Fatalf("parseListToken(%q) accepted non-canonical id %q", s, tok.ID)
		}
		// What we issue for the same cursor parses back to itself.
		back, err := parseListToken(issue(tok), fh, at)
		if err != nil || back != tok {
			t.Fatalf("parseListToken(issue(%+v)) = %+v, %v", tok, back, err)
		}
	})
}
