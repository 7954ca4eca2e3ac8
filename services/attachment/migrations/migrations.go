// Package migrations holds the attachment schema's goose SQL migrations, embedded so the binary
// carries them.
package migrations

import "embed"

// FS holds the migrations, applied by the daemon at start.
//
//go:embed *.sql
var FS embed.FS
