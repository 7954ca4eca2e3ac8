// Package testkit holds helpers for tests that talk to the real dependencies of the dev stack
// (Postgres, NATS, Vault Transit, MinIO, clamd, the SMTP sink, the dev OIDC issuer) and for tests
// that must own a dependency's life cycle (a nats-server or Transit server they stop and
// restart, run by the same supervisor as the dev stack: internal/supervisor).
//
// It is a module of its own so that heavy test-only dependencies never reach a service binary,
// and it requires no module of ours, so the platform's tests can use it without a module cycle
// (servicetest, which needs the platform, is a module of its own).
//
// Endpoints come from SECUREMSG_TEST_* variables, defaulting to the addresses `make up` uses.
// When a dependency does not answer, a test skips locally but fails when CI=true: in CI a
// missing dependency is a broken machine, never a reason to pass.
package testkit
