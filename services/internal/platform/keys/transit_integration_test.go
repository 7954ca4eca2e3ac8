package keys_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/securemsg/securemsg/services/internal/platform/crypto"
	"github.com/securemsg/securemsg/services/internal/platform/keys"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

// transit starts a Transit dev server owned by the test and returns a client of it with a
// fresh key.
func transit(t testing.TB) (*testkit.TransitServer, *keys.Transit, string) {
	t.Helper()
	srv := testkit.StartTransit(t)
	tr, err := keys.NewTransit(t.Context(), keys.Config{Addr: srv.Addr(), Token: srv.Token()})
	if err != nil {
		t.Fatal(err)
	}
	key := "k-" + testkit.UniqueName(t, "", 40)
	if err := tr.CreateKey(t.Context(), key); err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	return srv, tr, key
}

func TestTransitDataKeyRoundTrip(t *testing.T) {
	t.Parallel()
	_, tr, key := transit(t)
	ctx := t.Context()
	pt, wrapped, err := tr.GenerateDataKey(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := keys.WrappedKeyVersion(wrapped); err != nil || v != 1 || len(pt) != 32 {
		t.Fatalf("GenerateDataKey = %d-byte key, version %d, %v; want 32 bytes, version 1", len(pt), v, err)
	}
	got, err := tr.Decrypt(ctx, key, wrapped)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Decrypt(wrapped) = %v; want the generated key", err)
	}
	if _, err := tr.Decrypt(ctx, "no-such-key", wrapped); err == nil {
		t.Fatal("Decrypt under a missing key: error = nil")
	}

	if err := tr.Rotate(ctx, key); err != nil {
		t.Fatal(err)
	}
	info, err := tr.ReadKey(ctx, key)
	if err != nil || info.LatestVersion != 2 || len(info.Versions) != 2 {
		t.Fatalf("ReadKey after rotate = %+v, %v; want latest 2 with 2 versions", info, err)
	}
	res, err := tr.Rewrap(ctx, key, []string{wrapped, "vault:v1:bm90LWEtY2lwaGVydGV4dA=="})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || res[0].Version != 2 {
		t.Fatalf("Rewrap[0] = %+v, want version 2", res[0])
	}
	if res[1].Err == nil {
		t.Fatalf("Rewrap[1] of garbage = %+v, want a per-item error", res[1])
	}
	if got, err := tr.Decrypt(ctx, key, res[0].Wrapped); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Decrypt(rewrapped) = %v; want the same key", err)
	}

	// Retire version 1: the old wrapped form fails with ErrKeyVersionRetired, the new one works.
	if err := tr.SetMinDecryptionVersion(ctx, key, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Decrypt(ctx, key, wrapped); !errors.Is(err, keys.ErrKeyVersionRetired) {
		t.Fatalf("Decrypt(v1 after min_decryption_version=2) error = %v, want ErrKeyVersionRetired", err)
	}
	k, _ := keys.NewKeyring(tr, keys.KeyringOptions{})
	if _, err := k.OpenDEK(ctx, key, wrapped); !errors.Is(err, keys.ErrKeyVersionRetired) {
		t.Fatalf("Keyring.OpenDEK(v1) error = %v, want ErrKeyVersionRetired", err)
	}
	if _, err := tr.Decrypt(ctx, key, res[0].Wrapped); err != nil {
		t.Fatalf("Decrypt(v2) after retiring v1: %v", err)
	}
}

// TestKeyringFailsClosedWhenVaultIsDown stops the Transit server: new DEKs fail with
// ErrKeyServiceUnavailable while records under a cached DEK still open; after a restart all
// works again.
func TestKeyringFailsClosedWhenVaultIsDown(t *testing.T) {
	t.Parallel()
	srv, tr, key := transit(t)
	ctx := t.Context()
	k, err := keys.NewKeyring(tr, keys.KeyringOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cached, err := k.NewDEK(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	uncached, err := k.NewDEK(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	k.Forget(key, uncached.Wrapped)
	s, _ := crypto.NewRecordSealer(cached.Plaintext, "thread-1")
	aad := crypto.MessageFieldAAD("thread-1", "m1", "body")
	env, _ := s.SealRecord([]byte("still readable"), aad)

	srv.Stop()
	if _, err := k.NewDEK(ctx, key); !errors.Is(err, keys.ErrKeyServiceUnavailable) {
		t.Fatalf("NewDEK with vault down: error = %v, want ErrKeyServiceUnavailable", err)
	}
	if _, err := k.OpenDEK(ctx, key, uncached.Wrapped); !errors.Is(err, keys.ErrKeyServiceUnavailable) {
		t.Fatalf("OpenDEK(uncached) with vault down: error = %v, want ErrKeyServiceUnavailable", err)
	}
	dek, err := k.OpenDEK(ctx, key, cached.Wrapped)
	if err != nil {
		t.Fatalf("OpenDEK(cached) with vault down: %v", err)
	}
	s2, _ := crypto.NewRecordSealer(dek, "thread-1")
	if pt, err := s2.OpenRecord(env, aad); err != nil || string(pt) != "still readable" {
		t.Fatalf("OpenRecord with vault down = %q, %v", pt, err)
	}

	srv.Start()
	if _, err := k.OpenDEK(ctx, key, uncached.Wrapped); err != nil {
		t.Fatalf("OpenDEK after vault restart: %v", err)
	}
	if _, err := k.NewDEK(ctx, key); err != nil {
		t.Fatalf("NewDEK after vault restart: %v", err)
	}
}

// TestCryptoShredding destroys a thread's wrapped DEK: every record sealed under it is then
// unreadable, also after a cache flush, and no other DEK opens it.
func TestCryptoShredding(t *testing.T) {
	t.Parallel()
	_, tr, key := transit(t)
	ctx := t.Context()
	k, _ := keys.NewKeyring(tr, keys.KeyringOptions{})

	// A tiny "thread store": wrapped DEK per thread, and sealed message bodies.
	wrappedByThread := map[string]string{}
	type record struct {
		thread, msg string
		env         []byte
	}
	var records []record
	for _, thread := range []string{"shredded", "kept"} {
		dek, err := k.NewDEK(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		wrappedByThread[thread] = dek.Wrapped
		s, _ := crypto.NewRecordSealer(dek.Plaintext, thread)
		for i := range 3 {
			msg := fmt.Sprintf("m%d", i)
			env, err := s.SealRecord([]byte("body of "+msg), crypto.MessageFieldAAD(thread, msg, "body"))
			if err != nil {
				t.Fatal(err)
			}
			records = append(records, record{thread, msg, env})
		}
	}
	openRecord := func(r record) ([]byte, error) {
		wrapped, ok := wrappedByThread[r.thread]
		if !ok {
			return nil, errors.New("no wrapped dek: thread shredded")
		}
		dek, err := k.OpenDEK(ctx, key, wrapped)
		if err != nil {
			return nil, err
		}
		s, _ := crypto.NewRecordSealer(dek, r.thread)
		return s.OpenRecord(r.env, crypto.MessageFieldAAD(r.thread, r.msg, "body"))
	}

	// Shred: delete the wrapped DEK and drop it from the cache.
	shredded := wrappedByThread["shredded"]
	delete(wrappedByThread, "shredded")
	k.Forget(key, shredded)
	k.Flush()

	for _, r := range records {
		pt, err := openRecord(r)
		if r.thread == "kept" && (err != nil || string(pt) != "body of "+r.msg) {
			t.Fatalf("kept thread record %s = %q, %v", r.msg, pt, err)
		}
		if r.thread == "shredded" && err == nil {
			t.Fatalf("shredded thread record %s opened: %q", r.msg, pt)
		}
		if r.thread != "shredded" {
			continue
		}
		// No other DEK in the system opens it either.
		dek, err := k.OpenDEK(ctx, key, wrappedByThread["kept"])
		if err != nil {
			t.Fatal(err)
		}
		s, _ := crypto.NewRecordSealer(dek, "x")
		if _, err := s.OpenRecord(r.env, crypto.MessageFieldAAD(r.thread, r.msg, "body")); !errors.Is(err, crypto.ErrNotAuthentic) {
			t.Fatalf("shredded record under another DEK: error = %v, want ErrNotAuthentic", err)
		}
	}
}

func pgPool(t *testing.T) (*pgxpool.Pool, string) {
	t.Helper()
	pool := testkit.Postgres(t)
	return pool, testkit.NewSchema(t, pool)
}

// TestRewrapPGStore rotates the key and rewraps a real Postgres table: a dry run changes
// nothing, a run stopped after one batch resumes from its checkpoint, a concurrent writer is not
// clobbered, and coverage goes to 100% so min_decryption_version can rise.
func TestRewrapPGStore(t *testing.T) {
	t.Parallel()
	_, tr, key := transit(t)
	ctx := t.Context()
	pool, schema := pgPool(t)
	if _, err := pool.Exec(ctx, fmt.Sprintf(`CREATE TABLE %s.threads (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), wrapped_dek text)`, schema)); err != nil {
		t.Fatal(err)
	}
	const n = 25
	plain := map[string][]byte{}
	for range n {
		pt, w, err := tr.GenerateDataKey(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		var id string
		if err := pool.QueryRow(ctx, fmt.Sprintf(`INSERT INTO %s.threads (wrapped_dek) VALUES ($1) RETURNING id::text`, schema), w).Scan(&id); err != nil {
			t.Fatal(err)
		}
		plain[id] = pt
	}
	// A shredded thread (NULL) is skipped.
	if _, err := pool.Exec(ctx, fmt.Sprintf(`INSERT INTO %s.threads (wrapped_dek) VALUES (NULL)`, schema)); err != nil {
		t.Fatal(err)
	}
	spec, err := keys.ParsePGStoreSpec("pg:" + schema + ".threads.id.wrapped_dek")
	if err != nil {
		t.Fatal(err)
	}
	store, err := keys.NewPGStore(ctx, pool, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Rotate(ctx, key); err != nil {
		t.Fatal(err)
	}
	coverage := func() keys.StoreCoverage {
		t.Helper()
		cov, err := keys.Coverage(ctx, 2, 7, store)
		if err != nil {
			t.Fatal(err)
		}
		return cov[0]
	}
	if c := coverage(); c.Total != n || c.PerVersion[1] != n || c.Percent() != 0 {
		t.Fatalf("coverage before rewrap = %+v, want %d on v1", c, n)
	}

	dry := &keys.Rewrapper{Transit: tr, KeyName: key, BatchSize: 10, DryRun: true}
	rep, err := dry.Run(ctx, store)
	if err != nil || rep[0].Rewrapped != n {
		t.Fatalf("dry run = %+v, %v; want %d to rewrap", rep, err, n)
	}
	if c := coverage(); c.PerVersion[1] != n {
		t.Fatalf("dry run changed rows: %+v", c)
	}

	// A concurrent writer replaces one row between scan and replace: it must survive.
	rows, _ := store.ScanWrapped(ctx, "", 1)
	concurrentID := rows[0].ID
	cpFile := filepath.Join(t.TempDir(), "rewrap.json")
	stopAfterOne, cancel := context.WithCancel(ctx)
	first := &keys.Rewrapper{Transit: tr, KeyName: key, BatchSize: 10, CheckpointFile: cpFile,
		Progress: func(keys.Progress) { cancel() }}
	if _, err := pool.Exec(ctx, fmt.Sprintf(`UPDATE %s.threads SET wrapped_dek = 'vault:v2:written-concurrently' WHERE id = $1`, schema), concurrentID); err != nil {
		t.Fatal(err)
	}
	_, err = first.Run(stopAfterOne, store)
	if err == nil {
		t.Fatal("run with a cancelled context after one batch: error = nil")
	}
	if b, err := os.ReadFile(cpFile); err != nil || !bytes.Contains(b, []byte(store.StoreName())) {
		t.Fatalf("checkpoint after one batch = %s, %v", b, err)
	}
	if c := coverage(); c.PerVersion[2] != 10 {
		t.Fatalf("after one batch of 10, %d on v2, want 10 (%+v)", c.PerVersion[2], c)
	}

	resume := &keys.Rewrapper{Transit: tr, KeyName: key, BatchSize: 10, CheckpointFile: cpFile}
	rep, err = resume.Run(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	if rep[0].Scanned != n-10 || rep[0].Rewrapped != n-10 {
		t.Fatalf("resumed run = %+v, want the remaining %d rewrapped", rep[0], n-10)
	}
	c := coverage()
	if !c.Complete() || c.Percent() != 100 {
		t.Fatalf("coverage after rewrap = %+v, want 100%%", c)
	}
	var got string
	_ = pool.QueryRow(ctx, fmt.Sprintf(`SELECT wrapped_dek FROM %s.threads WHERE id = $1`, schema), concurrentID).Scan(&got)
	if got != "vault:v2:written-concurrently" {
		t.Fatalf("concurrent write was clobbered: %q", got)
	}
	// Every rewrapped DEK still unwraps to the same key, also after retiring version 1.
	if err := tr.SetMinDecryptionVersion(ctx, key, 2); err != nil {
		t.Fatal(err)
	}
	all, _ := store.ScanWrapped(ctx, "", 100)
	for _, row := range all {
		if row.ID == concurrentID {
			continue
		}
		pt, err := tr.Decrypt(ctx, key, row.Wrapped)
		if err != nil || !bytes.Equal(pt, plain[row.ID]) {
			t.Fatalf("row %s after rewrap: %v", row.ID, err)
		}
	}
	// A finished checkpoint skips the store on the next run.
	rep, err = resume.Run(ctx, store)
	if err != nil || !rep[0].Skipped {
		t.Fatalf("run with a finished checkpoint = %+v, %v; want skipped", rep, err)
	}
}

func TestPGStoreSpecRejectsInjection(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"pg:a.b.c", "pg:a.b.c.d.e", "a.b.c.d", `pg:a.b"; drop table x;--.c.d`, "pg:A.b.c.d", "pg:a.b.c.1d"} {
		if _, err := keys.ParsePGStoreSpec(s); err == nil {
			t.Errorf("ParsePGStoreSpec(%q) error = nil, want an error", s)
		}
	}
}

// BenchmarkVaultCallsPerThousandMessages seals 1,000 messages in one hot thread the way the
// messaging service does (NewDEK when the thread is created, OpenDEK for each message) and
// reports the real HTTP requests the Transit server received. Goal: 1.
func BenchmarkVaultCallsPerThousandMessages(b *testing.B) {
	_, tr, key := transit(b)
	ctx := b.Context()
	var calls uint64
	n := 0
	for b.Loop() {
		k, _ := keys.NewKeyring(tr, keys.KeyringOptions{})
		before := tr.Requests()
		dek, err := k.NewDEK(ctx, key)
		if err != nil {
			b.Fatal(err)
		}
		for i := range 1000 {
			pt, err := k.OpenDEK(ctx, key, dek.Wrapped)
			if err != nil {
				b.Fatal(err)
			}
			s, _ := crypto.NewRecordSealer(pt, "t")
			if _, err := s.SealRecord([]byte("hello"), crypto.MessageFieldAAD("t", fmt.Sprint(i), "body")); err != nil {
				b.Fatal(err)
			}
		}
		calls += tr.Requests() - before
		n++
	}
	b.ReportMetric(float64(calls)/float64(n), "vault-calls/1000msgs")
}
