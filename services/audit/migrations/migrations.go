// Package migrations holds the audit schema's goose migrations (run by platform/migrate after
// the outbox's).
package migrations

import "embed"

// FS holds the SQL files.
//
//go:embed *.sql
var FS embed.FS
