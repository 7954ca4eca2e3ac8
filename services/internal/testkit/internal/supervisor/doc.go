// Package supervisor is the one supervisor of the suite's local processes: Postgres, NATS with
// JetStream, Vault Transit, MinIO, clamd, mailpit, the dev OIDC issuer, the dev certificates,
// the four service binaries and, in the dev stack, the reference portal's server. Every
// component is defined once here (command line, config files, the service environment,
// readiness), and two kinds of stack run them:
//
//   - the dev stack (DevConfig; `make up`, `make down`, `make status` through cmd/stack): fixed
//     ports, state in .tmp/stack, processes detached from the supervisor and found again by
//     their records, so `up` is idempotent (a healthy, current process is left alone; one whose
//     binary or settings changed is restarted; pid reuse is guarded by the start time); the
//     portal's app is built with npm (scripts/lib/portal.sh) before its server starts;
//   - private stacks (PrivateConfig; testkit/privstack, testkit.StartNATS, testkit.StartTransit):
//     free ports, state in the test's temp dir, children of the test binary in their own process
//     groups, killed with the test, so fault tests can stop, kill and restart anything.
//
// It lives in the testkit module (not devstack) because tests in the service modules use it and
// the devstack module carries the Vault SDK, which no service module may pull in.
package supervisor
