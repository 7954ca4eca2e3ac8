package e2e_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/testkit/privstack"
)

// TestPrivateStackSmoke proves the fault-test harness: a private stack with all four services
// comes up healthy, survives a stop and restart of each dependency (every service process stays
// up and reports SERVING again), exposes its memory and descriptor figures, and leaves no
// process behind after cleanup.
func TestPrivateStackSmoke(t *testing.T) {
	var (
		stack *privstack.Stack
		addrs []string
	)
	t.Run("stack", func(t *testing.T) {
		s := privstack.Start(t, privstack.Options{Services: privstack.AllServices})
		stack = s
		ctx := t.Context()
		for _, c := range []*privstack.Component{s.Postgres, s.NATS, s.Vault, s.MinIO, s.Clamd, s.Mail, s.OIDC} {
			addrs = append(addrs, c.Addr())
		}
		for _, svc := range s.Services() {
			addrs = append(addrs, s.ServiceAddr(svc))
		}

		pids := map[string]int{}
		for _, svc := range s.Services() {
			pids[svc] = s.ServicePID(svc)
			// A portal-style connection (TLS, no client certificate) reaches health too.
			resp, err := healthpb.NewHealthClient(s.Conn(t, svc)).Check(ctx, &healthpb.HealthCheckRequest{})
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("Health(%s) over portal TLS = %v, %v; want SERVING", svc, resp.GetStatus(), err)
			}
		}
		if tok := s.Token(t, "patient"); strings.Count(tok, ".") != 2 {
			t.Errorf("Token(patient) has %d dots, want a compact JWT with 2", strings.Count(tok, "."))
		}
		// The identity provider's provisioning client, as the dev stack wires it: the issuer's
		// client-credentials token, for the app devstack/directory-bootstrap.json registers, is
		// admitted to the directory's rpcs and to nothing else.
		scim := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+s.MachineToken(t, "securemsg-scim"))
		api := messagingv1.NewMessagingServiceClient(s.Conn(t, "messaging"))
		if _, err := api.ListPeople(scim, &messagingv1.ListPeopleRequest{}); err != nil {
			t.Errorf("ListPeople with the SCIM client's token: %v", err)
		}
		if _, err := api.ListThreads(scim, &messagingv1.ListThreadsRequest{}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("ListThreads with the SCIM client's token = %v, want PermissionDenied", err)
		}

		// A patient signed in the way the portal does it (code flow with PKCE) is admitted
		// with the token the exchange gave, as the portal-web client.
		portal := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+s.SignIn(t, "patient", "messages.read messages.write"))
		if _, err := api.GetUnreadCount(portal, &messagingv1.GetUnreadCountRequest{}); err != nil {
			t.Errorf("GetUnreadCount with a token from the code flow: %v", err)
		}

		faults := []struct {
			name        string
			stop, start func() error
		}{
			{name: "nats", stop: s.NATS.Stop, start: s.NATS.Start},
			{name: "vault", stop: s.Vault.Stop, start: s.Vault.Start},
			{name: "minio", stop: s.MinIO.Stop, start: s.MinIO.Start},
			{name: "postgres", stop: s.Postgres.Stop, start: s.Postgres.Start},
			{name: "clamd", stop: s.Clamd.Stop, start: s.Clamd.Start},
		}
		for _, f := range faults {
			began := time.Now()
			if err := f.stop(); err != nil {
				t.Fatalf("stop %s: %v", f.name, err)
			}
			// While the dependency is down a service may report NOT_SERVING or fail its
			// requests; it must not exit.
			var states []string
			for _, svc := range s.Services() {
				st, err := s.Service(svc).Health(ctx)
				if err != nil {
					states = append(states, svc+"="+err.Error())
				} else {
					states = append(states, svc+"="+st.String())
				}
			}
			if err := f.start(); err != nil {
				t.Fatalf("start %s again: %v", f.name, err)
			}
			for _, svc := range s.Services() {
				if err := s.Service(svc).WaitServing(ctx, 30*time.Second); err != nil {
					t.Errorf("%s after %s restart: %v", svc, f.name, err)
				} else if pid := s.ServicePID(svc); pid != pids[svc] {
					t.Errorf("ServicePID(%s) after %s restart = %d, want %d", svc, f.name, pid, pids[svc])
				}
			}
			t.Logf("%s stopped (health meanwhile: %s) and restarted; all services SERVING after %s",
				f.name, strings.Join(states, ", "), time.Since(began).Round(time.Millisecond))
		}

		for _, svc := range s.Services() {
			peak, err := s.PeakRSS(svc)
			if err != nil || peak <= 0 {
				t.Errorf("PeakRSS(%s) = %d, %v; want > 0", svc, peak, err)
			}
			rss, err := s.RSS(svc)
			if err != nil || rss <= 0 || rss > peak {
				t.Errorf("RSS(%s) = %d, %v; want in (0, PeakRSS=%d]", svc, rss, err, peak)
			}
			fds, err := s.FDCount(svc)
			if err != nil || fds <= 0 {
				t.Errorf("FDCount(%s) = %d, %v; want > 0", svc, fds, err)
			}
			gr, err := s.Goroutines(ctx, svc)
			if err != nil || gr <= 0 {
				t.Errorf("Goroutines(%s) = %d, %v; want > 0", svc, gr, err)
			}
			t.Logf("%s: peak RSS %.1f MiB, RSS %.1f MiB, %d fds, %d goroutines", svc,
				float64(peak)/(1<<20), float64(rss)/(1<<20), fds, gr)
		}
	})
	if stack == nil {
		return // the stack did not start (skipped or failed above)
	}
	// The subtest's cleanups have run: nothing privstack started may remain.
	if left := stack.Leftovers(); len(left) > 0 {
		t.Errorf("Leftovers() after cleanup = %v, want none", left)
	}
	for _, addr := range addrs {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		cancel()
		if err == nil {
			_ = c.Close()
			t.Errorf("%s accepts connections after cleanup, want refused", addr)
		}
	}
}
