package keys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

// fakeKeyService is an in-memory KeyService for unit tests of the cache; the real Transit
// server is exercised in transit_integration_test.go.
type fakeKeyService struct {
	calls   atomic.Int64
	release chan struct{} // when set, Decrypt waits for it
	fail    error
}

func (f *fakeKeyService) GenerateDataKey(_ context.Context, keyName string) ([]byte, string, error) {
	n := f.calls.Add(1)
	if f.fail != nil {
		return nil, "", f.fail
	}
	return bytes.Repeat([]byte{byte(n)}, 32), fmt.Sprintf("vault:v1:%s-%d", keyName, n), nil
}

func (f *fakeKeyService) Decrypt(_ context.Context, _, wrapped string) ([]byte, error) {
	f.calls.Add(1)
	if f.release != nil {
		<-f.release
	}
	if f.fail != nil {
		return nil, f.fail
	}
	return bytes.Repeat([]byte{byte(len(wrapped))}, 32), nil
}

func TestKeyringCachesAndCopies(t *testing.T) {
	t.Parallel()
	svc := &fakeKeyService{}
	reg := prometheus.NewRegistry()
	k, err := NewKeyring(svc, KeyringOptions{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	dek, err := k.NewDEK(t.Context(), "messaging")
	if err != nil {
		t.Fatal(err)
	}
	clear(dek.Plaintext) // the caller's copy; the cache keeps its own
	got, err := k.OpenDEK(t.Context(), "messaging", dek.Wrapped)
	if err != nil || !bytes.Equal(got, bytes.Repeat([]byte{1}, 32)) {
		t.Fatalf("OpenDEK(new dek) = %x, %v; want the created key", got, err)
	}
	if want := (KeyringStats{Hits: 1, VaultCalls: 1}); k.Stats() != want {
		t.Fatalf("Stats() = %+v, want %+v", k.Stats(), want)
	}
	if _, err := k.OpenDEK(t.Context(), "other-key", dek.Wrapped); err != nil {
		t.Fatal(err)
	}
	if got := svc.calls.Load(); got != 2 {
		t.Fatalf("vault calls = %d, want 2 (the cache is keyed by key name too)", got)
	}
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 5 {
		t.Fatalf("Gather() = %d metric families, %v; want 5", len(mfs), err)
	}
	// Only the Transit histogram has labels, and only bounded ones: never a key name or DEK.
	allowed := map[string]map[string]bool{
		"operation": {"datakey": true, "decrypt": true},
		"outcome":   {"ok": true, "error": true},
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() != "securemsg_transit_request_duration_seconds" {
				if len(m.GetLabel()) != 0 {
					t.Errorf("metric %s has labels %v, want none", mf.GetName(), m.GetLabel())
				}
				continue
			}
			for _, l := range m.GetLabel() {
				if !allowed[l.GetName()][l.GetValue()] {
					t.Errorf("metric %s has label %s=%q, want operation or outcome from a fixed set", mf.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
}

func TestKeyringOneCallPerMissUnderConcurrency(t *testing.T) {
	t.Parallel()
	svc := &fakeKeyService{release: make(chan struct{})}
	k, err := NewKeyring(svc, KeyringOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const callers = 64
	var wg sync.WaitGroup
	results := make([][]byte, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() { results[i], errs[i] = k.OpenDEK(t.Context(), "messaging", "vault:v1:abc") })
	}
	deadline := time.Now().Add(10 * time.Second)
	for k.Stats().Misses < callers {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d callers missed", k.Stats().Misses, callers)
		}
		time.Sleep(time.Millisecond) // polling with a deadline
	}
	close(svc.release)
	wg.Wait()
	if got := svc.calls.Load(); got != 1 {
		t.Fatalf("vault calls for %d concurrent misses = %d, want 1", callers, got)
	}
	for i := range callers {
		if errs[i] != nil || len(results[i]) != 32 {
			t.Fatalf("caller %d: %x, %v", i, results[i], errs[i])
		}
		if i > 0 && &results[i][0] == &results[0][0] {
			t.Fatal("callers share one plaintext slice; each must get a copy")
		}
	}
}

func TestKeyringBoundsAndZeroes(t *testing.T) {
	t.Parallel()
	clock := testkit.NewClock(time.Unix(1000, 0))
	svc := &fakeKeyService{}
	k, err := NewKeyring(svc, KeyringOptions{MaxEntries: 2, MaxAge: time.Minute, now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	open := func(w string) {
		t.Helper()
		if _, err := k.OpenDEK(ctx, "k", w); err != nil {
			t.Fatal(err)
		}
	}
	open("vault:v1:a")
	el := k.cache.entries[cacheKey("k", "vault:v1:a")]
	held := el.Value.(*dekEntry).pt // the cache's own copy, to see it zeroed
	open("vault:v1:bb")
	open("vault:v1:ccc") // evicts a (least recently used)
	if k.cache.len() != 2 {
		t.Fatalf("cache len = %d, want 2", k.cache.len())
	}
	if !bytes.Equal(held, make([]byte, 32)) {
		t.Fatalf("evicted plaintext = %x, want zeroed", held)
	}
	before := svc.calls.Load()
	open("vault:v1:ccc")
	if svc.calls.Load() != before {
		t.Fatal("a cached DEK cost a vault call")
	}
	clock.Advance(time.Minute)
	open("vault:v1:ccc")
	if svc.calls.Load() != before+1 {
		t.Fatal("an expired DEK was served from the cache")
	}
	k.Flush()
	if k.cache.len() != 0 {
		t.Fatalf("cache len after Flush = %d, want 0", k.cache.len())
	}
}

func TestKeyringErrors(t *testing.T) {
	t.Parallel()
	svc := &fakeKeyService{fail: fmt.Errorf("boom: %w", ErrKeyServiceUnavailable)}
	k, _ := NewKeyring(svc, KeyringOptions{})
	if _, err := k.NewDEK(t.Context(), "k"); !IsUnavailable(err) {
		t.Errorf("NewDEK error = %v, want ErrKeyServiceUnavailable", err)
	}
	if _, err := k.OpenDEK(t.Context(), "k", "vault:v1:x"); !errors.Is(err, ErrKeyServiceUnavailable) {
		t.Errorf("OpenDEK error = %v, want ErrKeyServiceUnavailable", err)
	}
	if got := k.Stats().Errors; got != 2 {
		t.Errorf("Stats().Errors = %d, want 2", got)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	blocked := &fakeKeyService{release: make(chan struct{})}
	defer close(blocked.release)
	kb, _ := NewKeyring(blocked, KeyringOptions{})
	if _, err := kb.OpenDEK(ctx, "k", "vault:v1:x"); !errors.Is(err, context.Canceled) {
		t.Errorf("OpenDEK(cancelled) error = %v, want context.Canceled", err)
	}
}

func TestWrappedKeyVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"vault:v1:abc", 1, true}, {"vault:v12:x", 12, true}, {"vault:v0:x", 0, false},
		{"vault:v1:", 0, false}, {"vault:vx:abc", 0, false}, {"v1:abc", 0, false}, {"", 0, false},
	}
	for _, tc := range tests {
		got, err := WrappedKeyVersion(tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("WrappedKeyVersion(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
