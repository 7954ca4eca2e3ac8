package ratelimit

import (
	"context"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// memoryStore keeps token buckets in this process, one bounded LRU map per dimension.
type memoryStore struct {
	maps [2]*lru.Cache[string, *rate.Limiter] // indexed by bucketKind
}

func newMemoryStore(maxKeys int) (*memoryStore, error) {
	s := &memoryStore{}
	for i := range s.maps {
		m, err := lru.New[string, *rate.Limiter](maxKeys)
		if err != nil {
			return nil, err
		}
		s.maps[i] = m
	}
	return s, nil
}

func (s *memoryStore) limiter(b bucket) *rate.Limiter {
	cache := s.maps[b.kind]
	if lim, ok := cache.Get(b.key); ok {
		return lim
	}
	lim := rate.NewLimiter(rate.Limit(b.limit.Rate), b.limit.Burst)
	// Two first requests racing may each create a bucket; the loser's single token is lost,
	// which is harmless.
	if prev, ok, _ := cache.PeekOrAdd(b.key, lim); ok {
		return prev
	}
	return lim
}

// take reserves a token in every bucket and cancels the reservations when any must wait, so a
// refused call spends nothing. It never fails.
func (s *memoryStore) take(_ context.Context, now time.Time, buckets []bucket) (bool, time.Duration, error) {
	var reservations []*rate.Reservation
	var wait time.Duration
	for _, b := range buckets {
		r := s.limiter(b).ReserveN(now, 1)
		if !r.OK() {
			wait = max(wait, time.Second)
			continue
		}
		reservations = append(reservations, r)
		wait = max(wait, r.DelayFrom(now))
	}
	if wait > 0 {
		for _, r := range reservations {
			r.CancelAt(now)
		}
		return false, wait, nil
	}
	return true, 0, nil
}
