// Package migrations holds the messaging schema's goose SQL migrations, embedded so the binary
// migrates its own schema at start (daemon.Spec.Migrations).
package migrations

import "embed"

// FS holds the *.sql migrations at its root.
//
//go:embed *.sql
var FS embed.FS
