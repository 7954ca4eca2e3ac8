package repotest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/securemsg/securemsg/services/audit/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// RunCheckpoints holds an implementation of domain.Checkpoints to its contract; newStore
// returns a fresh, empty store for each subtest.
func RunCheckpoints(t *testing.T, newStore func(t *testing.T) domain.Checkpoints) {
	t.Run("none yet", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		if _, err := s.LatestCheckpoint(t.Context()); !errors.Is(err, domain.ErrNoCheckpoint) || !errors.Is(err, usererr.ErrNotFound) {
			t.Errorf("LatestCheckpoint() of an empty store error = %v, want ErrNoCheckpoint (NotFound)", err)
		}
		if got, err := s.Checkpoints(t.Context(), 0, 1000); err != nil || len(got) != 0 {
			t.Errorf("Checkpoints() of an empty store = %v, %v; want none", got, err)
		}
	})
	t.Run("saved checkpoints are listed by size and never replaced", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		ctx := t.Context()
		for _, size := range []uint64{20, 10, 30} {
			if err := s.SaveCheckpoint(ctx, checkpoint(size, "root")); err != nil {
				t.Fatalf("SaveCheckpoint(%d) error = %v", size, err)
			}
		}
		if err := s.SaveCheckpoint(ctx, checkpoint(20, "another root")); err != nil {
			t.Fatalf("SaveCheckpoint(20 again) error = %v", err)
		}
		got, err := s.Checkpoints(ctx, 15, 30)
		if err != nil || len(got) != 2 || got[0].TreeSize != 20 || got[1].TreeSize != 30 {
			t.Fatalf("Checkpoints(15, 30) = %v, %v; want sizes 20 and 30", got, err)
		}
		if !sameCheckpoint(got[0], checkpoint(20, "root")) {
			t.Errorf("Checkpoints(15, 30)[0] = %+v, want the first checkpoint of size 20 unchanged", got[0])
		}
		latest, err := s.LatestCheckpoint(ctx)
		if err != nil || !sameCheckpoint(latest, checkpoint(30, "root")) {
			t.Errorf("LatestCheckpoint() = %+v, %v; want size 30", latest, err)
		}
	})
}

func checkpoint(size uint64, root string) domain.Checkpoint {
	return domain.Checkpoint{TreeSize: size, Root: []byte(fmt.Sprintf("%s-%d", root, size)), Signature: []byte("sig"), KeyID: "key-1",
		SignedBody: []byte(fmt.Sprintf("body %d", size)), CreatedAt: Base.Add(time.Hour + 123456*time.Microsecond)}
}

func sameCheckpoint(a, b domain.Checkpoint) bool {
	return a.TreeSize == b.TreeSize && bytes.Equal(a.Root, b.Root) && bytes.Equal(a.Signature, b.Signature) && a.KeyID == b.KeyID &&
		bytes.Equal(a.SignedBody, b.SignedBody) && a.CreatedAt.Equal(b.CreatedAt)
}
