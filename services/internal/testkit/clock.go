package testkit

import (
	"sync/atomic"
	"time"
)

// Clock is a settable clock for tests, safe for the background goroutines that read it: pass
// its Now where code takes a `now func() time.Time`, and move it with Advance.
type Clock struct {
	unixNano atomic.Int64
	step     int64
}

// NewClock returns a clock standing at start.
func NewClock(start time.Time) *Clock {
	c := &Clock{}
	c.unixNano.Store(start.UnixNano())
	return c
}

// NewTickingClock returns a clock at start that moves forward by step at every reading, so
// things created one after the other get distinct, increasing times.
func NewTickingClock(start time.Time, step time.Duration) *Clock {
	c := NewClock(start)
	c.step = int64(step)
	return c
}

// Now is the clock's time (after its tick, for a ticking clock).
func (c *Clock) Now() time.Time { return time.Unix(0, c.unixNano.Add(c.step)).UTC() }

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) { c.unixNano.Add(int64(d)) }
