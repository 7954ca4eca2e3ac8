package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
)

// WrappedKey is one wrapped DEK held by a store, under the store's own row id.
type WrappedKey struct {
	ID      string
	Wrapped string
}

// WrappedKeyStore is what a service's store implements so the rewrap job and the coverage
// report reach every table that holds wrapped DEKs. PGStore implements it for Postgres.
type WrappedKeyStore interface {
	// StoreName names the store in reports and checkpoints, e.g. "messaging.threads".
	StoreName() string
	// ScanWrapped returns up to limit wrapped keys whose ids sort after afterID ("" = from
	// the start), in ascending id order; an empty result means the end.
	ScanWrapped(ctx context.Context, afterID string, limit int) ([]WrappedKey, error)
	// ReplaceWrapped sets row id's wrapped key to newWrapped only if it still equals
	// oldWrapped (compare-and-swap, so a concurrent writer is never clobbered) and reports
	// whether it did.
	ReplaceWrapped(ctx context.Context, id, oldWrapped, newWrapped string) (bool, error)
}

// Rewrapping is the part of Transit the rewrap job uses.
type Rewrapping interface {
	Rewrap(ctx context.Context, keyName string, wrapped []string) ([]RewrapResult, error)
	ReadKey(ctx context.Context, keyName string) (KeyInfo, error)
}

// Rewrapper moves every wrapped DEK in its stores to the key's latest version.
type Rewrapper struct {
	Transit Rewrapping
	KeyName string
	// BatchSize is how many wrapped keys go in one scan and one Vault rewrap (default 500).
	BatchSize int
	// DryRun scans and counts what would be rewrapped, without calling rewrap or writing.
	DryRun bool
	// CheckpointFile, when set, records progress after every batch (cursor per store, and
	// stores finished) so that a run stopped half-way resumes where it was. Delete the file
	// to start over. A dry run reads but never writes it.
	CheckpointFile string
	// Progress, when set, is called after every batch.
	Progress func(Progress)
}

// Progress is reported after every batch.
type Progress struct {
	Store            string
	Scanned, Changed int // in this batch
}

// RewrapReport is the outcome of a run for one store.
type RewrapReport struct {
	Store         string
	Scanned       int // wrapped keys seen in this run
	Rewrapped     int // replaced (or, in a dry run, that would be)
	AlreadyLatest int
	Conflicts     int // changed by a concurrent writer between scan and replace; left alone
	Retired       int // under a version below min_decryption_version: cannot be rewrapped
	Invalid       int // not a wrapped key Vault accepts
	Skipped       bool
}

// checkpoint is the persisted progress of a rewrap run.
type checkpoint struct {
	Key     string            `json:"key"`
	Cursors map[string]string `json:"cursors"`
	Done    map[string]bool   `json:"done"`
}

// Run rewraps every store in turn. It stops at the first error that is not about a single key
// (Vault down, a store failing), with the checkpoint saved up to the last finished batch.
func (r *Rewrapper) Run(ctx context.Context, stores ...WrappedKeyStore) ([]RewrapReport, error) {
	batch := r.BatchSize
	if batch <= 0 {
		batch = 500
	}
	info, err := r.Transit.ReadKey(ctx, r.KeyName)
	if err != nil {
		return nil, err
	}
	cp, err := r.loadCheckpoint()
	if err != nil {
		return nil, err
	}
	var reports []RewrapReport
	for _, s := range stores {
		rep := RewrapReport{Store: s.StoreName()}
		if cp.Done[rep.Store] {
			rep.Skipped = true
			reports = append(reports, rep)
			continue
		}
		cursor := cp.Cursors[rep.Store]
		for {
			rows, err := s.ScanWrapped(ctx, cursor, batch)
			if err != nil {
				return append(reports, rep), fmt.Errorf("scan %s: %w", rep.Store, err)
			}
			if len(rows) == 0 {
				break
			}
			changed, err := r.rewrapBatch(ctx, s, rows, info.LatestVersion, &rep)
			if err != nil {
				return append(reports, rep), fmt.Errorf("rewrap %s: %w", rep.Store, err)
			}
			cursor = rows[len(rows)-1].ID
			cp.Cursors[rep.Store] = cursor
			if err := r.saveCheckpoint(cp); err != nil {
				return append(reports, rep), err
			}
			if r.Progress != nil {
				r.Progress(Progress{Store: rep.Store, Scanned: len(rows), Changed: changed})
			}
		}
		cp.Done[rep.Store] = true
		if err := r.saveCheckpoint(cp); err != nil {
			return append(reports, rep), err
		}
		reports = append(reports, rep)
	}
	return reports, nil
}

func (r *Rewrapper) rewrapBatch(ctx context.Context, s WrappedKeyStore, rows []WrappedKey, latest int, rep *RewrapReport) (int, error) {
	rep.Scanned += len(rows)
	var stale []WrappedKey
	for _, row := range rows {
		v, err := WrappedKeyVersion(row.Wrapped)
		switch {
		case err != nil:
			rep.Invalid++
		case v >= latest:
			rep.AlreadyLatest++
		default:
			stale = append(stale, row)
		}
	}
	if len(stale) == 0 {
		return 0, nil
	}
	if r.DryRun {
		rep.Rewrapped += len(stale)
		return len(stale), nil
	}
	in := make([]string, len(stale))
	for i, row := range stale {
		in[i] = row.Wrapped
	}
	results, err := r.Transit.Rewrap(ctx, r.KeyName, in)
	if err != nil {
		return 0, err
	}
	changed := 0
	for i, res := range results {
		switch {
		case errors.Is(res.Err, ErrKeyVersionRetired):
			rep.Retired++
			continue
		case res.Err != nil:
			rep.Invalid++
			continue
		}
		ok, err := s.ReplaceWrapped(ctx, stale[i].ID, stale[i].Wrapped, res.Wrapped)
		if err != nil {
			return changed, err
		}
		if !ok {
			rep.Conflicts++
			continue
		}
		rep.Rewrapped++
		changed++
	}
	return changed, nil
}

func (r *Rewrapper) loadCheckpoint() (*checkpoint, error) {
	cp := &checkpoint{Key: r.KeyName, Cursors: map[string]string{}, Done: map[string]bool{}}
	if r.CheckpointFile == "" {
		return cp, nil
	}
	b, err := os.ReadFile(r.CheckpointFile)
	if errors.Is(err, os.ErrNotExist) {
		return cp, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	if err := json.Unmarshal(b, cp); err != nil {
		return nil, fmt.Errorf("parse checkpoint %s: %w", r.CheckpointFile, err)
	}
	if cp.Key != r.KeyName {
		return nil, fmt.Errorf("checkpoint %s is for key %q, not %q", r.CheckpointFile, cp.Key, r.KeyName)
	}
	if cp.Cursors == nil {
		cp.Cursors = map[string]string{}
	}
	if cp.Done == nil {
		cp.Done = map[string]bool{}
	}
	return cp, nil
}

// saveCheckpoint writes the checkpoint atomically (temp file + rename) so a crash never leaves
// half a file.
func (r *Rewrapper) saveCheckpoint(cp *checkpoint) error {
	if r.CheckpointFile == "" || r.DryRun {
		return nil
	}
	b, err := json.MarshalIndent(cp, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(r.CheckpointFile), ".rewrap-checkpoint-*")
	if err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	// Clears the temp file on any failure below; after the rename there is nothing left to
	// remove and the error (not found) says only that.
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(b); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := os.Rename(tmp.Name(), r.CheckpointFile); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	return nil
}

// StoreCoverage says how many wrapped DEKs of one store sit on each key version.
type StoreCoverage struct {
	Store         string
	Total         int
	PerVersion    map[int]int
	Invalid       int // values that are not vault:vN:...
	LatestVersion int
}

// OnLatest is how many wrapped DEKs are on the latest version.
func (c StoreCoverage) OnLatest() int { return c.PerVersion[c.LatestVersion] }

// Percent is the share on the latest version, 100 for an empty store.
func (c StoreCoverage) Percent() float64 {
	if c.Total == 0 {
		return 100
	}
	return 100 * float64(c.OnLatest()) / float64(c.Total)
}

// Versions lists the versions present, ascending.
func (c StoreCoverage) Versions() []int { return slices.Sorted(maps.Keys(c.PerVersion)) }

// Complete reports whether every wrapped DEK is on the latest version.
func (c StoreCoverage) Complete() bool { return c.OnLatest() == c.Total }

// MinVersion is the lowest version in use, or LatestVersion for an empty store.
func (c StoreCoverage) MinVersion() int {
	if vs := c.Versions(); len(vs) > 0 {
		return vs[0]
	}
	return c.LatestVersion
}

// Coverage scans every store and counts its wrapped DEKs per key version against latest.
func Coverage(ctx context.Context, latest, batchSize int, stores ...WrappedKeyStore) ([]StoreCoverage, error) {
	if batchSize <= 0 {
		batchSize = 1000
	}
	out := make([]StoreCoverage, 0, len(stores))
	for _, s := range stores {
		c := StoreCoverage{Store: s.StoreName(), PerVersion: map[int]int{}, LatestVersion: latest}
		for cursor := ""; ; {
			rows, err := s.ScanWrapped(ctx, cursor, batchSize)
			if err != nil {
				return out, fmt.Errorf("scan %s: %w", c.Store, err)
			}
			if len(rows) == 0 {
				break
			}
			for _, row := range rows {
				c.Total++
				if v, err := WrappedKeyVersion(row.Wrapped); err == nil {
					c.PerVersion[v]++
				} else {
					c.Invalid++
				}
			}
			cursor = rows[len(rows)-1].ID
		}
		out = append(out, c)
	}
	return out, nil
}
