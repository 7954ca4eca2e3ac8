package keys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

// runPool starts p.Run until the test ends and returns a function that stops it and waits.
func runPool(t *testing.T, p *DEKPool) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { _ = p.Run(ctx); close(done) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond with a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestDEKPoolServesPrefetchedKeysOnce(t *testing.T) {
	t.Parallel()
	svc := &fakeKeyService{}
	ring, err := NewKeyring(svc, KeyringOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	p, err := NewDEKPool(ring, "attachment", DEKPoolOptions{Size: 3, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	runPool(t, p)
	waitFor(t, "the pool to fill", func() bool { return p.Stats().Ready == 3 })
	dek, err := p.NewDEK(t.Context(), "attachment")
	if err != nil {
		t.Fatalf("NewDEK = %v", err)
	}
	if st := p.Stats(); st.Hits != 1 || st.Misses != 0 {
		t.Fatalf("Stats() = %+v, want 1 hit, 0 misses", st)
	}
	// The pooled key opens through the keyring like any other.
	pt, err := p.OpenDEK(t.Context(), "attachment", dek.Wrapped)
	if err != nil || !bytes.Equal(pt, dek.Plaintext) {
		t.Fatalf("OpenDEK(pooled dek) = %x, %v; want %x", pt, err, dek.Plaintext)
	}

	// Under concurrency every caller gets a DEK of its own: one DEK per object.
	const callers = 50
	var wg sync.WaitGroup
	got := make([]DEK, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() { got[i], errs[i] = p.NewDEK(t.Context(), "attachment") })
	}
	wg.Wait()
	seen := map[string]bool{dek.Wrapped: true}
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("NewDEK #%d = %v", i, errs[i])
		}
		if seen[got[i].Wrapped] {
			t.Fatalf("NewDEK handed out %s twice", got[i].Wrapped)
		}
		seen[got[i].Wrapped] = true
	}
	if st := p.Stats(); st.Hits+st.Misses != callers+1 {
		t.Errorf("Stats() = %+v, want hits+misses = %d", st, callers+1)
	}
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 6 {
		t.Errorf("Gather() = %d metric families, %v; want 6", len(mfs), err)
	}
}

func TestDEKPoolOtherKeysAndNoRun(t *testing.T) {
	t.Parallel()
	svc := &fakeKeyService{}
	ring, _ := NewKeyring(svc, KeyringOptions{})
	p, err := NewDEKPool(ring, "attachment", DEKPoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Without Run the pool is empty: every DEK comes from Vault on the caller's path.
	if _, err := p.NewDEK(t.Context(), "attachment"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.NewDEK(t.Context(), "messaging"); err != nil {
		t.Fatal(err)
	}
	if got := svc.calls.Load(); got != 2 {
		t.Errorf("vault calls = %d, want 2", got)
	}
	if st := p.Stats(); st.Hits != 0 || st.Misses != 1 {
		t.Errorf("Stats() = %+v, want 0 hits, 1 miss (the other key is not the pool's)", st)
	}
	if _, err := NewDEKPool(nil, "x", DEKPoolOptions{}); err == nil {
		t.Error("NewDEKPool(nil keyring) = nil error")
	}
}

func TestDEKPoolDropsOldKeys(t *testing.T) {
	t.Parallel()
	clock := testkit.NewClock(time.Unix(1000, 0))
	svc := &fakeKeyService{}
	ring, _ := NewKeyring(svc, KeyringOptions{})
	p, err := NewDEKPool(ring, "k", DEKPoolOptions{Size: 2, MaxAge: time.Hour, now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	// Fill by hand (as Run does), to look at the pooled plaintexts.
	if p.fill(t.Context()) {
		t.Fatal("fill failed")
	}
	held := [][]byte{}
	for range 2 {
		d := <-p.ready
		held = append(held, d.dek.Plaintext)
		p.ready <- d
	}
	clock.Advance(time.Hour)
	dek, err := p.NewDEK(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Hits != 0 || st.Misses != 1 || st.Expired != 2 {
		t.Fatalf("Stats() = %+v, want the 2 old keys dropped and a miss", st)
	}
	for i, pt := range held {
		if !bytes.Equal(pt, make([]byte, 32)) {
			t.Errorf("dropped key %d = %x, want zeroed", i, pt)
		}
		if bytes.Equal(pt, dek.Plaintext) {
			t.Errorf("NewDEK returned dropped key %d", i)
		}
	}
	// dropExpired keeps fresh keys and drops old ones.
	if p.fill(t.Context()) {
		t.Fatal("fill failed")
	}
	p.dropExpired()
	if st := p.Stats(); st.Ready != 2 {
		t.Fatalf("Ready after dropExpired of fresh keys = %d, want 2", st.Ready)
	}
	clock.Advance(2 * time.Hour)
	p.dropExpired()
	if st := p.Stats(); st.Ready != 0 || st.Expired != 4 {
		t.Fatalf("Stats() after dropExpired of old keys = %+v, want none ready, 4 expired", st)
	}
}

func TestDEKPoolFailsClosedAndRecovers(t *testing.T) {
	t.Parallel()
	svc := &switchableKeyService{}
	svc.setFail(fmt.Errorf("sealed: %w", ErrKeyServiceUnavailable))
	ring, _ := NewKeyring(svc, KeyringOptions{})
	p, err := NewDEKPool(ring, "k", DEKPoolOptions{Size: 2, RetryInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runPool(t, p)
	waitFor(t, "a failed refill", func() bool { return p.Stats().Errors >= 1 })
	if _, err := p.NewDEK(t.Context(), "k"); !errors.Is(err, ErrKeyServiceUnavailable) {
		t.Fatalf("NewDEK with Vault down = %v, want ErrKeyServiceUnavailable", err)
	}
	// Without demand the pool does not keep calling a failing Vault.
	calls := svc.calls.Load()
	time.Sleep(100 * time.Millisecond) // ten retry intervals; no polling condition exists for "nothing happens"
	if got := svc.calls.Load(); got > calls+1 {
		t.Errorf("vault calls while idle and failing = %d, want at most 1", got-calls)
	}
	svc.setFail(nil)
	if _, err := p.NewDEK(t.Context(), "k"); err != nil {
		t.Fatalf("NewDEK after Vault recovered = %v", err)
	}
	waitFor(t, "the pool to refill", func() bool { return p.Stats().Ready == 2 })
}

func TestDEKPoolRunZeroesOnExit(t *testing.T) {
	t.Parallel()
	ring, _ := NewKeyring(&fakeKeyService{}, KeyringOptions{})
	p, err := NewDEKPool(ring, "k", DEKPoolOptions{Size: 2})
	if err != nil {
		t.Fatal(err)
	}
	stop := runPool(t, p)
	waitFor(t, "the pool to fill", func() bool { return p.Stats().Ready == 2 })
	var held [][]byte
	for range 2 {
		d := <-p.ready
		held = append(held, d.dek.Plaintext)
		p.ready <- d
	}
	stop()
	if st := p.Stats(); st.Ready != 0 {
		t.Fatalf("Ready after Run returned = %d, want 0", st.Ready)
	}
	for i, pt := range held {
		if !bytes.Equal(pt, make([]byte, 32)) {
			t.Errorf("pooled key %d after Run returned = %x, want zeroed", i, pt)
		}
	}
}

// switchableKeyService fails while fail is set.
type switchableKeyService struct {
	fakeKeyService
	mu   sync.Mutex
	fail error
}

func (s *switchableKeyService) setFail(err error) { s.mu.Lock(); s.fail = err; s.mu.Unlock() }

func (s *switchableKeyService) GenerateDataKey(ctx context.Context, keyName string) ([]byte, string, error) {
	s.mu.Lock()
	err := s.fail
	s.mu.Unlock()
	if err != nil {
		s.calls.Add(1)
		return nil, "", err
	}
	return s.fakeKeyService.GenerateDataKey(ctx, keyName)
}
