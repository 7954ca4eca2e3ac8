// Package e2e holds the suite's end-to-end tests: they run the real service binaries as
// subprocesses against a private stack (services/internal/testkit/privstack) that the test owns,
// so they may stop, kill and restart dependencies while other test packages use the shared dev
// stack. The package itself has no non-test code.
package e2e
