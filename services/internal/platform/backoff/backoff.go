// Package backoff is the suite's one retry schedule: capped exponential delays with jitter,
// computed from the attempt number alone. Every retry loop uses it — the outbox relay between
// failed batches, the NATS client between reconnects, notification deliveries between attempts
// — because each of them counts attempts somewhere else (the NATS client, a database row), so a
// stateless schedule fits all three where a stateful backoff object would not.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Exponential is Floor·2^(attempt-1), at most Ceiling, plus up to Jitter of it at random so that
// replicas retrying after the same outage spread out.
type Exponential struct {
	Floor   time.Duration
	Ceiling time.Duration
	// Jitter is the largest random addition, as a fraction of the delay (0.2 for up to 20 %).
	Jitter float64
}

// Delay is the wait before the attempt after attempt (1-based; 0 and below count as 1).
func (e Exponential) Delay(attempt int) time.Duration {
	d := e.Floor
	for i := 1; i < attempt && d < e.Ceiling; i++ {
		d *= 2
	}
	d = min(d, e.Ceiling)
	if d <= 0 {
		return 0
	}
	if j := time.Duration(float64(d) * e.Jitter); j > 0 {
		d += rand.N(j + 1) //nolint:gosec // G404: jitter only spreads retries; nothing secret depends on it
	}
	return d
}
