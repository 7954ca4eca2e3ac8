// Package e2e holds the suite's end-to-end tests: they run the real service binaries as
// subprocesses against a private stack (services/internal/testkit/privstack) that the test owns,
// so they may stop, kill and restart dependencies while other test packages use the shared dev
// stack. The package itself has no non-test code.
//
// The fault tests (TestFault*: NATS, Vault, MinIO, Postgres and clamd outages, an HTTP/2
// rapid-reset flood) each end with one reconciliation of the stored state against what the
// services acknowledged (reconcile_test.go). TestLoad (`make load`, scripts/load.sh) runs only
// with its flag; TestDrill, the backup and restore drill of the databases, the bucket and the
// Transit key store, runs in every `go test` with a small data set, and bigger through
// `make drill` (scripts/drill.sh). TestTraceFromSendMessageToSMTPAndAudit follows one request
// through the services in a real trace backend (Jaeger).
package e2e
