package domain

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// MaxFileNameRunes is the longest file name accepted (characters).
const MaxFileNameRunes = 255

// NeutraliseFileName turns a client's file name into one that is safe to store and show: only
// the last path element is kept (no "../", no absolute paths, on either separator), control and
// bidirectional-override characters are removed (they hide extensions: "exe.pdf" shown as
// "fdp.exe"), the name is NFC-normalised, leading dots and surrounding spaces are trimmed, and
// an empty result becomes "file". It returns an error only for names longer than
// MaxFileNameRunes or not valid UTF-8; everything else is neutralised, not refused.
func NeutraliseFileName(name string) (string, error) {
	if !utf8.ValidString(name) {
		return "", usererr.New(usererr.InvalidArgument, "INVALID_FILE_NAME", "file_name is not valid UTF-8")
	}
	if utf8.RuneCountInString(name) > MaxFileNameRunes {
		return "", usererr.New(usererr.InvalidArgument, "FILE_NAME_TOO_LONG", "file_name is longer than 255 characters")
	}
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || isBidiControl(r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, norm.NFC.String(name))
	// Leading dots hide files and start "..", trailing dots and spaces are dropped by Windows.
	dotOrSpace := func(r rune) bool { return r == '.' || unicode.IsSpace(r) }
	name = strings.TrimRightFunc(strings.TrimLeftFunc(name, dotOrSpace), dotOrSpace)
	// Windows reserves ':' (alternate data streams) and these in names.
	name = strings.Map(func(r rune) rune {
		if strings.ContainsRune(`:*?"<>|`, r) {
			return '_'
		}
		return r
	}, name)
	if name == "" {
		return "file", nil
	}
	return name, nil
}

// isBidiControl reports the Unicode bidirectional formatting characters (Bidi_Control), which
// reorder what a user sees without being control characters in Go's sense.
func isBidiControl(r rune) bool {
	return r == 0x061C || r == 0x200E || r == 0x200F || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069)
}
