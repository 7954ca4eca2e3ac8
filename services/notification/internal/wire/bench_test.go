package wire_test

import (
	"fmt"
	"net/smtp"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	notificationv1 "github.com/securemsg/securemsg/gen/securemsg/notification/v1"
	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/benchkit"
)

// BenchmarkCommitToSMTP measures the latency from a message's commit (the event's occurred_at,
// taken just before it is published, as the outbox relay would) to the SMTP sink accepting the
// alert (the attempt's finish time, recorded after the server's 250), holding a steady rate,
// beside a baseline measured in the same run: the same sink accepting a plain SMTP send made
// directly at the same rate. It then climbs a ladder of rates and reports the highest whose p99
// stays under one second. Bounded: each rate is held for 3 s.
//
//	go test -run '^$' -bench CommitToSMTP ./services/notification/internal/wire/
func BenchmarkCommitToSMTP(b *testing.B) {
	const steady, hold = 100, 3 * time.Second
	e := startEnv(b, envOptions{workers: 16})
	pat := person(b, "patient")
	addr := mailbox(b, "bench")
	e.setPrefs(b, pat, &notificationv1.Preferences{Email: emailOn(addr)}, "email")
	stack := testkit.LoadStack()
	for b.Loop() {
		svc50, svc99 := alertLatency(b, e, pat.Subject, steady, hold)
		base50, base99 := directSMTPLatency(b, stack.SMTPAddr, addr, steady, hold)
		benchkit.Compare(b, ms(svc50), ms(base50), "p50-ms")
		benchkit.Compare(b, ms(svc99), ms(base99), "p99-ms")
		best := 0
		for _, rate := range []int{200, 400, 800} {
			if _, p99 := alertLatency(b, e, pat.Subject, rate, hold); p99 >= time.Second {
				break
			}
			best = rate
		}
		b.ReportMetric(float64(max(best, steady)), "max-rate-p99<1s/s")
	}
	b.ReportMetric(0, "ns/op")
}

// alertLatency publishes message-created events at rate for hold and returns the p50 and p99 of
// commit-to-accept latency for them.
func alertLatency(b *testing.B, e *env, recipient string, rate int, hold time.Duration) (p50, p99 time.Duration) {
	b.Helper()
	batch := uuid.NewString() // the thread id tags this rate's events
	n := int(hold.Seconds() * float64(rate))
	tick := time.NewTicker(time.Second / time.Duration(rate))
	for range n {
		<-tick.C
		e.created(b, batch, recipient)
	}
	tick.Stop()
	var lat []time.Duration
	testkit.WaitFor(b, 2*time.Minute, fmt.Sprintf("all %d alerts at %d/s accepted", n, rate), func() bool {
		rows, err := e.h.Proc.Pool.Query(b.Context(), `SELECT a.finish_time - d.message_time FROM deliveries d
			JOIN delivery_attempts a ON a.delivery_id = d.id AND a.status = 2 WHERE d.thread_id = $1`, batch)
		if err != nil {
			b.Fatal(err)
		}
		defer rows.Close()
		lat = lat[:0]
		for rows.Next() {
			var d time.Duration
			if err := rows.Scan(&d); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, d)
		}
		return len(lat) == n
	})
	return percentiles(lat)
}

// directSMTPLatency sends plain emails to the sink at rate for hold, one connection per mail as
// the service's sender uses, and returns the p50 and p99 of the time to the sink's 250.
func directSMTPLatency(b *testing.B, smtpAddr, to string, rate int, hold time.Duration) (p50, p99 time.Duration) {
	b.Helper()
	n := int(hold.Seconds() * float64(rate))
	msg := []byte("Subject: baseline\r\n\r\nYou have a new secure message. Please log in.\r\n")
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	lat := make([]time.Duration, 0, n)
	for range n {
		<-tick.C
		t0 := time.Now()
		if err := smtp.SendMail(smtpAddr, nil, "bench@securemsg.local", []string{to}, msg); err != nil {
			b.Fatalf("baseline SMTP send: %v", err)
		}
		lat = append(lat, time.Since(t0))
	}
	return percentiles(lat)
}

func percentiles(lat []time.Duration) (p50, p99 time.Duration) {
	slices.Sort(lat)
	return lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
