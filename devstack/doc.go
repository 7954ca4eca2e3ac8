// Package devstack holds the programs the local dev stack runs beside the real dependencies:
// the Transit-compatible dev server (used where no vault binary exists), the dev OIDC issuer,
// the dev certificate authority, the reference portal's server, the demo walk-through and the
// benchmark report. The stack itself is supervised by services/internal/testkit/cmd/stack. It is
// a module of its own so that no service imports the Vault sdk or the dev signing keys.
package devstack
