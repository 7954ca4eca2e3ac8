// Package devstack holds the programs the local dev stack runs beside the real dependencies:
// the Transit-compatible dev server (used where no vault binary exists), the dev OIDC issuer,
// the dev certificate authority and a gRPC health probe. It is a module of its own so that no
// service imports the Vault sdk or the dev signing keys.
package devstack
