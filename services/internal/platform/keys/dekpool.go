package keys

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DEKPoolOptions configure a DEKPool.
type DEKPoolOptions struct {
	// Size is how many fresh DEKs are kept ready (default 4): enough for a burst of concurrent
	// new objects while Vault calls refill the pool in the background.
	Size int
	// MaxAge bounds how long a DEK may wait in the pool (default 1 min); an older one is zeroed
	// and dropped, never handed out. It bounds how long after a Transit key rotation new
	// objects may still get DEKs wrapped under the previous version (the rewrap job and the
	// coverage check before retiring a version catch those like any other).
	MaxAge time.Duration
	// RetryInterval is the pause after a failed refill (default 1s), so an unreachable Vault
	// is not called in a loop; callers meanwhile get their DEKs from Vault directly, or fail.
	RetryInterval time.Duration
	// Registerer, when set, receives the pool's metrics.
	Registerer prometheus.Registerer
	// now is the clock, for tests.
	now func() time.Time
}

// DEKPoolStats are a pool's counters since it was made.
type DEKPoolStats struct {
	// Hits are DEKs served from the pool; Misses DEKs made on the caller's request path
	// because the pool was empty (or not running).
	Hits, Misses uint64
	// Made are DEKs the pool made in the background; Expired those it dropped unused after
	// MaxAge; Errors its failed refills.
	Made, Expired, Errors uint64
	// Ready is how many DEKs the pool holds now.
	Ready int
}

// DEKPool makes fresh DEKs under one Transit key ahead of need, so that creating an object
// costs no Vault round trip on the request path. Every DEK it returns was made for that call
// alone and is handed out once (one DEK per object, as before); only the time of the Vault
// call moves. The pool never makes up a key: when it is empty, NewDEK calls Vault itself and
// fails closed as Keyring.NewDEK does.
//
// Run fills the pool; it refills after each DEK taken and lets the pool drain when idle (no
// Vault calls while nothing is created). DEKPool also passes OpenDEK through to its Keyring,
// so it can stand where a Keyring is used. It is safe for concurrent use.
type DEKPool struct {
	ring    *Keyring
	keyName string
	opts    DEKPoolOptions
	ready   chan pooledDEK
	wake    chan struct{}

	hits, misses, made, expired, errs atomic.Uint64
}

type pooledDEK struct {
	dek  DEK
	made time.Time
}

// NewDEKPool returns a pool of DEKs under the Transit key keyName, made through ring. It holds
// no keys until Run starts.
func NewDEKPool(ring *Keyring, keyName string, opts DEKPoolOptions) (*DEKPool, error) {
	if ring == nil || keyName == "" {
		return nil, errors.New("keys: a DEK pool needs a keyring and a key name")
	}
	if opts.Size <= 0 {
		opts.Size = 4
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = time.Minute
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = time.Second
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	p := &DEKPool{
		ring: ring, keyName: keyName, opts: opts,
		ready: make(chan pooledDEK, opts.Size),
		wake:  make(chan struct{}, 1),
	}
	if opts.Registerer != nil {
		if err := registerCounters(opts.Registerer, []counter{
			{"securemsg_dek_pool_hits_total", "New DEKs served from the prefetched pool.", &p.hits},
			{"securemsg_dek_pool_misses_total", "New DEKs made on the request path because the pool was empty.", &p.misses},
			{"securemsg_dek_pool_made_total", "DEKs the pool made in the background.", &p.made},
			{"securemsg_dek_pool_expired_total", "Pooled DEKs dropped unused after their maximum age.", &p.expired},
			{"securemsg_dek_pool_errors_total", "Failed background refills of the DEK pool.", &p.errs},
		}); err != nil {
			return nil, err
		}
		if err := opts.Registerer.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "securemsg_dek_pool_ready", Help: "Fresh DEKs waiting in the pool.",
		}, func() float64 { return float64(len(p.ready)) })); err != nil {
			return nil, fmt.Errorf("keys: register metric securemsg_dek_pool_ready: %w", err)
		}
	}
	return p, nil
}

// NewDEK returns a DEK under keyName that no one else was given: a pooled one made less than
// MaxAge ago when keyName is the pool's, else a new one from Vault (see Keyring.NewDEK). The
// caller owns the plaintext and clears it when done.
func (p *DEKPool) NewDEK(ctx context.Context, keyName string) (DEK, error) {
	if keyName == p.keyName {
		defer p.signal() // one taken or none there: either way the pool wants a refill
		if dek, ok := p.take(); ok {
			p.hits.Add(1)
			return dek, nil
		}
		p.misses.Add(1)
	}
	return p.ring.NewDEK(ctx, keyName)
}

// take returns a fresh pooled DEK, dropping stale ones on the way, or false when there is none.
func (p *DEKPool) take() (DEK, bool) {
	for {
		select {
		case d := <-p.ready:
			if p.fresh(d) {
				return d.dek, true
			}
			p.drop(d)
		default:
			return DEK{}, false
		}
	}
}

// OpenDEK is the keyring's OpenDEK.
func (p *DEKPool) OpenDEK(ctx context.Context, keyName, wrapped string) ([]byte, error) {
	return p.ring.OpenDEK(ctx, keyName, wrapped)
}

// Stats returns the pool's counters.
func (p *DEKPool) Stats() DEKPoolStats {
	return DEKPoolStats{
		Hits: p.hits.Load(), Misses: p.misses.Load(), Made: p.made.Load(),
		Expired: p.expired.Load(), Errors: p.errs.Load(), Ready: len(p.ready),
	}
}

// Run fills the pool now and again after DEKs are taken, drops DEKs older than MaxAge, and
// returns when ctx is done, zeroing the DEKs it still holds. It does not refill while nothing
// is taken, so an idle service makes no Vault calls. A failed refill is counted and not tried
// again before RetryInterval has passed and a DEK has been asked for.
func (p *DEKPool) Run(ctx context.Context) error {
	defer p.drain()
	tick := time.NewTicker(p.opts.MaxAge / 2)
	defer tick.Stop()
	refill := true
	for {
		if refill && p.fill(ctx) {
			pause := time.NewTimer(p.opts.RetryInterval)
			select {
			case <-ctx.Done():
				pause.Stop()
				return nil
			case <-pause.C:
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-p.wake:
			refill = true
		case <-tick.C:
			p.dropExpired()
			refill = false
		}
	}
}

// fill makes DEKs until the pool is full; it reports whether a Vault call failed.
func (p *DEKPool) fill(ctx context.Context) (failed bool) {
	for len(p.ready) < cap(p.ready) && ctx.Err() == nil {
		// Keyring.NewDEK bounds nothing itself; a refill must not hang on a stuck Vault.
		cctx, cancel := context.WithTimeout(ctx, p.ring.callTimeout)
		dek, err := p.ring.NewDEK(cctx, p.keyName)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				p.errs.Add(1)
			}
			return ctx.Err() == nil
		}
		p.made.Add(1)
		select {
		case p.ready <- pooledDEK{dek: dek, made: p.opts.now()}:
		default: // cannot happen while only Run adds keys; never block on it
			clear(dek.Plaintext)
			return false
		}
	}
	return false
}

// dropExpired drops the pooled DEKs older than MaxAge and keeps the others.
func (p *DEKPool) dropExpired() {
	for range len(p.ready) {
		select {
		case d := <-p.ready:
			if !p.fresh(d) {
				p.drop(d)
				continue
			}
			select {
			case p.ready <- d:
			default: // cannot happen while only Run adds keys; never block on it
				p.drop(d)
			}
		default:
			return
		}
	}
}

func (p *DEKPool) fresh(d pooledDEK) bool { return p.opts.now().Sub(d.made) < p.opts.MaxAge }

func (p *DEKPool) drop(d pooledDEK) {
	clear(d.dek.Plaintext)
	p.expired.Add(1)
}

// drain zeroes every pooled DEK.
func (p *DEKPool) drain() {
	for {
		select {
		case d := <-p.ready:
			clear(d.dek.Plaintext)
		default:
			return
		}
	}
}

// signal asks Run to refill, without blocking.
func (p *DEKPool) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}
