// Package e2e holds the suite's end-to-end tests: they run the real service binaries as
// subprocesses against a private stack (services/internal/testkit/privstack) that the test owns,
// so they may stop, kill and restart dependencies while other test packages use the shared dev
// stack. The package itself has no non-test code.
//
// The fault tests (TestFault*: NATS, Vault, MinIO, Postgres and clamd outages, an HTTP/2
// rapid-reset flood) each end with one reconciliation of the stored state against what the
// services acknowledged (reconcile_test.go). TestLoad (`make load`, scripts/load.sh) and
// TestDrill (`make drill`, scripts/drill.sh) run only when their flags are given.
package e2e
