package privstack

import (
	"fmt"
	"sort"
)

// SetEnv overrides SECUREMSG_* settings (full variable names) of a stopped service for its
// next Start, e.g. to point it at a restored database or bucket in a backup drill. Later
// entries of a process environment win, so the overrides are appended.
func (v *Service) SetEnv(env map[string]string) error {
	v.proc.mu.Lock()
	defer v.proc.mu.Unlock()
	if v.proc.cmd != nil {
		return fmt.Errorf("privstack: %s: SetEnv on a running service (stop it first)", v.name)
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v.proc.env = append(v.proc.env, k+"="+env[k])
	}
	return nil
}

// PostgresDatabaseURL is the private cluster's database name, as PostgresURL is for
// `securemsg`: a drill restores into a second database of the same cluster.
func (s *Stack) PostgresDatabaseURL(name string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", hostPort(s.ports.postgres), name)
}

// PostgresBinDir is the folder of the PostgreSQL binaries privstack runs (pg_dump and
// pg_restore of the same version live there).
func PostgresBinDir() (string, error) { return postgresBinDir() }
