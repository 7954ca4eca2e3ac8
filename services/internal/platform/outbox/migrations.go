package outbox

import (
	"embed"
	"io/fs"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the goose migrations that create the outbox table and its indexes (and
// drop the NOTIFY trigger an earlier version woke the relay with). The migrate package runs them in every service schema before the service's
// own migrations, tracked in a version table of their own.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embedded folder is fixed at build time
	}
	return sub
}
