// Package migrations holds the notification schema's goose migrations, embedded so the binary
// migrates its own schema at start (daemon.Spec.Migrations).
package migrations

import "embed"

// FS holds the SQL migrations.
//
//go:embed *.sql
var FS embed.FS
