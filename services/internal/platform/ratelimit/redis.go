package ratelimit

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// minSharedRate is the slowest rate a Redis bucket takes: GCRA's emission interval (1/rate) must
// fit a time.Duration. One call in about 11.6 days is far below any limit worth configuring.
const minSharedRate = 1e-6

// redisStore keeps GCRA buckets in Redis (redis_rate's Lua script, one atomic round trip per
// bucket, on Redis's clock), so every replica of a service draws on the same buckets.
//
// Keys are rate:securemsg:<scope>:principal:<sha256 of the subject or "ip:<addr>", 128 bits>
// and rate:securemsg:<scope>:client:<client_id>. Subjects are hashed because some identity
// providers use an email address or a record number as `sub`, and a peer address is an
// identifier too; client ids name OAuth apps, not people, and stay readable for operators. No
// key carries a token. Keys expire when their bucket is full again.
type redisStore struct {
	client  *redis.Client
	gcra    *redis_rate.Limiter
	prefix  string
	timeout time.Duration
}

func newRedisStore(url, caFile, scope string, timeout time.Duration) (*redisStore, error) {
	if scope == "" {
		return nil, errors.New("ratelimit: a Redis store needs a Scope (the service name)")
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		// ParseURL's message may quote the URL, password included: name the problem only.
		return nil, errors.New("ratelimit: the Redis URL does not parse (redis://host:port/db)")
	}
	// A decision has StoreTimeout in all: one dial attempt, no command retries (each would wait
	// out another timeout), and the pool's wait bounded the same way.
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.PoolTimeout = timeout, timeout, timeout, timeout
	opts.ContextTimeoutEnabled = true
	opts.MaxRetries = -1
	opts.DialerRetries = 1
	opts.DisableIdentity = true // CLIENT SETINFO would cost a round trip on every new connection
	if caFile != "" && opts.TLSConfig != nil {
		pem, err := os.ReadFile(caFile) //nolint:gosec // G304: the path is the operator's SECUREMSG_RATE_REDIS_CACERT
		if err != nil {
			return nil, fmt.Errorf("ratelimit: read the Redis CA file: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ratelimit: no PEM certificates in the Redis CA file %s", caFile)
		}
		opts.TLSConfig.RootCAs = roots
	}
	client := redis.NewClient(opts)
	return &redisStore{client: client, gcra: redis_rate.NewLimiter(client), prefix: "securemsg:" + scope + ":", timeout: timeout}, nil
}

func (s *redisStore) close() error { return s.client.Close() }

func (s *redisStore) key(b bucket) string {
	if b.kind == clientBucket {
		return s.prefix + "client:" + b.key
	}
	sum := sha256.Sum256([]byte(b.key))
	return s.prefix + "principal:" + hex.EncodeToString(sum[:16])
}

// gcraLimit turns a token bucket into redis_rate's terms: one request per 1/Rate seconds, so a
// fractional rate (0.5/s) is exact.
func gcraLimit(l Limit) redis_rate.Limit {
	return redis_rate.Limit{Rate: 1, Burst: l.Burst, Period: time.Duration(float64(time.Second) / l.Rate)}
}

// take takes a token from each bucket in turn. When one refuses, the tokens already taken are
// given back (a negative cost), and the remaining buckets are only looked at, so the retry hint
// is the longest wait of all of them as in the per-process store. Giving back is not atomic with
// taking: another replica may see the token spent for a moment, which errs towards the limit.
// The rpc's own cancellation does not end the calls early — a client hanging up is no store
// failure — but StoreTimeout does.
func (s *redisStore) take(ctx context.Context, _ time.Time, buckets []bucket) (bool, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	var taken []bucket
	for i, b := range buckets {
		res, err := s.gcra.Allow(ctx, s.key(b), gcraLimit(b.limit))
		if err != nil {
			s.giveBack(ctx, taken)
			return false, 0, fmt.Errorf("redis rate limit: %w", err)
		}
		if res.Allowed > 0 {
			taken = append(taken, b)
			continue
		}
		wait := res.RetryAfter
		for _, rest := range buckets[i+1:] {
			// A cost of 0 takes nothing and answers with the bucket's wait (RetryAfter -1: none).
			peek, err := s.gcra.AllowAtMost(ctx, s.key(rest), gcraLimit(rest.limit), 0)
			if err != nil {
				s.giveBack(ctx, taken)
				return false, 0, fmt.Errorf("redis rate limit: %w", err)
			}
			wait = max(wait, peek.RetryAfter)
		}
		s.giveBack(ctx, taken)
		return false, wait, nil
	}
	return true, 0, nil
}

// giveBack returns the tokens of a refused call. Its errors are dropped: a token not given back
// stays spent until it refills, which errs towards the limit, and the call is decided already.
func (s *redisStore) giveBack(ctx context.Context, taken []bucket) {
	for _, b := range taken {
		_, _ = s.gcra.AllowN(ctx, s.key(b), gcraLimit(b.limit), -1)
	}
}
