// Package privstack starts a private copy of the securemsg stack for one test: Postgres, NATS
// with JetStream, the Vault Transit dev server, MinIO, clamd, mailpit, the dev OIDC issuer, dev
// certificates and the real service binaries, each on a free 127.0.0.1 port with its state in
// the test's temp dir. It is the test-facing side of the one stack supervisor
// (testkit/internal/supervisor), which also runs the dev stack of `make up`: the components,
// the service environment and the clamd setup are the same code.
//
// It exists for fault, load and drill tests: they stop, kill and restart dependencies, which
// they must never do to the shared dev stack (127.0.0.1:5432, 4223, 8200, ...) while other test
// packages run against it. Everything here is a separate process the test owns, so a restart
// looks to the services exactly like a real outage, and PeakRSS, FD and goroutine counts are the
// real process's.
//
// Every process runs in its own process group and is killed with that group when the test ends,
// so a failed test leaves no orphans behind; as a backstop for a test binary killed by -timeout,
// children also get SIGKILL when the test binary dies (Pdeathsig). Binaries are built once per
// test binary. A dependency missing from the machine (clamd, PostgreSQL) ends the test through
// testkit.Unavailable: a skip locally, a failure under CI=true.
//
// Component and Service methods (Stop, Kill, Start, Restart, WaitServing) return errors, so a
// fault test may call them from any goroutine.
//
// Typical use:
//
//	s := privstack.Start(t, privstack.Options{Services: privstack.AllServices})
//	conn := s.Conn(t, "messaging") // portal-style TLS; add s.Token(t, "patient") as bearer
//	if err := s.NATS.Stop(); err != nil { t.Fatal(err) }
//	// ... the fault ...
//	if err := s.NATS.Start(); err != nil { t.Fatal(err) }
//	peak, err := s.PeakRSS("messaging")
package privstack
