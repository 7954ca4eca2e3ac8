package keys

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
)

// KeyService is what a Keyring needs from Vault; *Transit implements it.
type KeyService interface {
	GenerateDataKey(ctx context.Context, keyName string) (plaintext []byte, wrapped string, err error)
	Decrypt(ctx context.Context, keyName, wrapped string) ([]byte, error)
}

// DEK is a data-encryption key: Plaintext for sealing now, Wrapped for storing beside the data.
type DEK struct {
	Plaintext []byte // 32 bytes; the caller's own copy, clear it when done
	Wrapped   string // vault:vN:...
}

// KeyringOptions bound the DEK cache.
type KeyringOptions struct {
	// MaxEntries bounds how many unwrapped DEKs are held (default 10,000: ~1 MiB).
	MaxEntries int
	// MaxAge bounds how long an unwrapped DEK is held after it was fetched (default 10 min);
	// after it, the next use costs a Vault call, so revocation in Vault takes effect.
	MaxAge time.Duration
	// CallTimeout bounds a Vault call made for a cache miss (default 10s). It is separate from
	// the callers' contexts because one call serves every caller waiting on the same DEK.
	CallTimeout time.Duration
	// Registerer, when set, receives the keyring's metrics.
	Registerer prometheus.Registerer
	// now is the clock, for tests.
	now func() time.Time
}

// KeyringStats are the keyring's counters since it was made.
type KeyringStats struct {
	Hits, Misses, VaultCalls, Errors uint64
}

// Keyring creates and unwraps DEKs through a KeyService with a bounded cache. It is safe for
// concurrent use. Plaintext DEKs it returns are copies: the cache zeroes its own copy when the
// entry is evicted, expires or is flushed, which cannot disturb a caller.
type Keyring struct {
	svc         KeyService
	cache       *dekCache
	flights     singleflight.Group
	callTimeout time.Duration
	// transitSeconds times the Vault Transit calls the keyring makes, by operation and outcome;
	// nil without a Registerer.
	transitSeconds *prometheus.HistogramVec

	hits, misses, vaultCalls, errs atomic.Uint64
}

// NewKeyring returns a Keyring over svc.
func NewKeyring(svc KeyService, opts KeyringOptions) (*Keyring, error) {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 10_000
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = 10 * time.Minute
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 10 * time.Second
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	k := &Keyring{svc: svc, cache: newDEKCache(opts.MaxEntries, opts.MaxAge, opts.now), callTimeout: opts.CallTimeout}
	if opts.Registerer != nil {
		if err := registerCounters(opts.Registerer, []counter{
			{"securemsg_dek_cache_hits_total", "DEK unwraps served from the cache.", &k.hits},
			{"securemsg_dek_cache_misses_total", "DEK unwraps not in the cache.", &k.misses},
			{"securemsg_dek_vault_calls_total", "Vault Transit calls made by the keyring (datakey and decrypt).", &k.vaultCalls},
			{"securemsg_dek_errors_total", "Keyring operations that failed.", &k.errs},
		}); err != nil {
			return nil, err
		}
		k.transitSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "securemsg_transit_request_duration_seconds",
			Help: "Vault Transit calls made by the keyring, by operation (datakey, decrypt) and outcome (ok, error).",
			// Transit answers in milliseconds on a healthy cluster; the top buckets catch a
			// Vault that is failing over or a client timing out (CallTimeout, default 10s).
			Buckets: []float64{.002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"operation", "outcome"})
		if err := opts.Registerer.Register(k.transitSeconds); err != nil {
			return nil, fmt.Errorf("keys: register metric securemsg_transit_request_duration_seconds: %w", err)
		}
		// Every series exists from the start, so rates and alerts see zeros, not gaps.
		for _, op := range []string{"datakey", "decrypt"} {
			for _, outcome := range []string{"ok", "error"} {
				k.transitSeconds.WithLabelValues(op, outcome)
			}
		}
	}
	return k, nil
}

// observeTransit records one Transit call's duration; operation is a constant, never a key name.
func (k *Keyring) observeTransit(operation string, start time.Time, err error) {
	if k.transitSeconds == nil {
		return
	}
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	k.transitSeconds.WithLabelValues(operation, outcome).Observe(time.Since(start).Seconds())
}

// NewDEK creates a DEK under the Transit key keyName. It always calls Vault (fail closed: no
// DEK is made up when Vault is down) and caches the plaintext so that sealing under the new
// DEK right away costs no further call.
func (k *Keyring) NewDEK(ctx context.Context, keyName string) (DEK, error) {
	k.vaultCalls.Add(1)
	start := time.Now()
	pt, wrapped, err := k.svc.GenerateDataKey(ctx, keyName)
	k.observeTransit("datakey", start, err)
	if err != nil {
		k.errs.Add(1)
		return DEK{}, fmt.Errorf("new dek: %w", err)
	}
	k.cache.add(cacheKey(keyName, wrapped), pt)
	return DEK{Plaintext: pt, Wrapped: wrapped}, nil
}

// OpenDEK returns the plaintext of a wrapped DEK, from the cache or with one Vault call; callers
// that miss on the same DEK together share that call. The result is the caller's own copy.
func (k *Keyring) OpenDEK(ctx context.Context, keyName, wrapped string) ([]byte, error) {
	ck := cacheKey(keyName, wrapped)
	if pt, ok := k.cache.get(ck); ok {
		k.hits.Add(1)
		return pt, nil
	}
	k.misses.Add(1)
	ch := k.flights.DoChan(ck, func() (any, error) {
		// Another flight may have filled the cache between our miss and this call.
		if pt, ok := k.cache.get(ck); ok {
			return pt, nil
		}
		// Detached from the first caller's context: its cancellation must not fail the others.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.callTimeout)
		defer cancel()
		k.vaultCalls.Add(1)
		start := time.Now()
		pt, err := k.svc.Decrypt(cctx, keyName, wrapped)
		k.observeTransit("decrypt", start, err)
		if err != nil {
			return nil, err
		}
		k.cache.add(ck, pt)
		return pt, nil
	})
	select {
	case <-ctx.Done():
		k.errs.Add(1)
		return nil, ctx.Err()
	case res := <-ch:
		if res.Err != nil {
			k.errs.Add(1)
			return nil, fmt.Errorf("open dek: %w", res.Err)
		}
		// Every waiter gets the same slice from the flight: hand out copies.
		return append([]byte(nil), res.Val.([]byte)...), nil
	}
}

// Forget drops one DEK from the cache (e.g. when its thread is crypto-shredded).
func (k *Keyring) Forget(keyName, wrapped string) { k.cache.remove(cacheKey(keyName, wrapped)) }

// Flush empties the cache, zeroing every cached plaintext.
func (k *Keyring) Flush() { k.cache.purge() }

// Stats returns the keyring's counters.
func (k *Keyring) Stats() KeyringStats {
	return KeyringStats{Hits: k.hits.Load(), Misses: k.misses.Load(), VaultCalls: k.vaultCalls.Load(), Errors: k.errs.Load()}
}

// IsUnavailable reports whether err means Vault could not be reached (codes.Unavailable).
func IsUnavailable(err error) bool { return errors.Is(err, ErrKeyServiceUnavailable) }

func cacheKey(keyName, wrapped string) string { return keyName + "\x00" + wrapped }

// dekCache is a small LRU bounded by entries and age. It is ours rather than golang-lru's
// expirable LRU because (1) values must be copied out under the same lock that zeroes them on
// eviction, or a reader could copy a key being cleared and seal with a zeroed key, and (2) the
// expirable LRU starts a goroutine that never exits.
type dekCache struct {
	mu      sync.Mutex
	max     int
	ttl     time.Duration
	now     func() time.Time
	order   *list.List // front = most recently used; values are *dekEntry
	entries map[string]*list.Element
}

type dekEntry struct {
	key     string
	pt      []byte
	expires time.Time
}

func newDEKCache(maxEntries int, ttl time.Duration, now func() time.Time) *dekCache {
	return &dekCache{max: maxEntries, ttl: ttl, now: now, order: list.New(), entries: map[string]*list.Element{}}
}

func (c *dekCache) get(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*dekEntry)
	if !c.now().Before(e.expires) {
		c.removeElement(el)
		return nil, false
	}
	c.order.MoveToFront(el)
	return append([]byte(nil), e.pt...), true
}

func (c *dekCache) add(key string, pt []byte) {
	own := append([]byte(nil), pt...)
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		c.removeElement(el)
	}
	c.entries[key] = c.order.PushFront(&dekEntry{key: key, pt: own, expires: c.now().Add(c.ttl)})
	for c.order.Len() > c.max {
		c.removeElement(c.order.Back())
	}
}

func (c *dekCache) remove(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		c.removeElement(el)
	}
}

func (c *dekCache) purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.order.Len() > 0 {
		c.removeElement(c.order.Back())
	}
}

// removeElement unlinks an entry and zeroes its plaintext. Callers hold mu.
func (c *dekCache) removeElement(el *list.Element) {
	e := c.order.Remove(el).(*dekEntry)
	delete(c.entries, e.key)
	clear(e.pt)
}

func (c *dekCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// counter is a Prometheus counter read from an atomic the keys package increments.
type counter struct {
	name, help string
	v          *atomic.Uint64
}

// registerCounters registers each counter with reg.
func registerCounters(reg prometheus.Registerer, counters []counter) error {
	for _, c := range counters {
		v := c.v
		if err := reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help},
			func() float64 { return float64(v.Load()) })); err != nil {
			return fmt.Errorf("keys: register metric %s: %w", c.name, err)
		}
	}
	return nil
}
