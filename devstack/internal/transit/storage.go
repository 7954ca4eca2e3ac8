package transit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/vault/sdk/logical"
)

// stateFileName is the file under the data directory that holds every storage entry.
const stateFileName = "transit-dev-state.json"

// fileStorage is a logical.Storage kept in memory and, when path is set, written whole to a JSON
// file after every change. keysutil stores each key ring as a few small entries, so rewriting
// the whole file is cheap at dev-stack sizes and keeps the file consistent: it is replaced
// atomically (write to a temporary file, fsync, rename), so a crash never leaves half a key ring.
//
// The file holds raw key material unencrypted (Vault would seal it): it is created 0600 in a
// 0700 directory, and the server is a dev tool only.
type fileStorage struct {
	mu      sync.RWMutex
	path    string // "" keeps everything in memory
	entries map[string][]byte
}

// stateFile is the on-disk shape; []byte values are base64 in JSON.
type stateFile struct {
	Version int               `json:"version"`
	Entries map[string][]byte `json:"entries"`
}

var _ logical.Storage = (*fileStorage)(nil)

// openFileStorage loads the state under dir, or starts empty when dir is "" or holds no state
// yet.
func openFileStorage(dir string) (*fileStorage, error) {
	s := &fileStorage{entries: map[string][]byte{}}
	if dir == "" {
		return s, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	s.path = filepath.Join(dir, stateFileName)
	raw, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("read state: %w", err)
	}
	var st stateFile
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("decode state file %s: %w", s.path, err)
	}
	if st.Version != 1 {
		return nil, fmt.Errorf("state file %s: unsupported version %d", s.path, st.Version)
	}
	if st.Entries != nil {
		s.entries = st.Entries
	}
	return s, nil
}

// List returns the keys directly under prefix; deeper keys are folded into "folder/" names, as
// Vault's physical storage does.
func (s *fileStorage) List(_ context.Context, prefix string) ([]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	seen := map[string]struct{}{}
	for k := range s.entries {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			rest = rest[:i+1]
		}
		seen[rest] = struct{}{}
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out, nil
}

// Get returns a copy of the entry, or nil when there is none.
func (s *fileStorage) Get(_ context.Context, key string) (*logical.StorageEntry, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.entries[key]
	if !ok {
		return nil, nil
	}
	return &logical.StorageEntry{Key: key, Value: append([]byte(nil), v...)}, nil
}

// Put stores a copy of the entry and persists the state before returning, so a key that was
// reported created or rotated survives a restart.
func (s *fileStorage) Put(_ context.Context, e *logical.StorageEntry) error {
	if e == nil || e.Key == "" {
		return errors.New("storage put: empty key")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, had := s.entries[e.Key]
	s.entries[e.Key] = append([]byte(nil), e.Value...)
	if err := s.persistLocked(); err != nil {
		if had {
			s.entries[e.Key] = prev
		} else {
			delete(s.entries, e.Key)
		}
		return err
	}
	return nil
}

// Delete removes the entry (no error when absent) and persists the state.
func (s *fileStorage) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, had := s.entries[key]
	if !had {
		return nil
	}
	delete(s.entries, key)
	if err := s.persistLocked(); err != nil {
		s.entries[key] = prev
		return err
	}
	return nil
}

// deletePrefix removes every entry under prefix in one write (used when a mount is disabled).
func (s *fileStorage) deletePrefix(prefix string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	removed := map[string][]byte{}
	for k, v := range s.entries {
		if strings.HasPrefix(k, prefix) {
			removed[k] = v
			delete(s.entries, k)
		}
	}
	if len(removed) == 0 {
		return nil
	}
	if err := s.persistLocked(); err != nil {
		for k, v := range removed {
			s.entries[k] = v
		}
		return err
	}
	return nil
}

// copyEntries returns a deep copy of every entry, consistent at one instant (a snapshot).
func (s *fileStorage) copyEntries() map[string][]byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string][]byte, len(s.entries))
	for k, v := range s.entries {
		out[k] = append([]byte(nil), v...)
	}
	return out
}

// replaceAll swaps the whole state for entries (a snapshot restore): written to disk first,
// in one atomic rename, so a failed write leaves both the file and the memory as they were,
// and a crash leaves either the old state or the new, never a mix.
func (s *fileStorage) replaceAll(entries map[string][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writeState(entries); err != nil {
		return err
	}
	s.entries = entries
	return nil
}

// persistLocked writes the whole state atomically. The caller holds s.mu for writing.
func (s *fileStorage) persistLocked() error { return s.writeState(s.entries) }

// writeState replaces the state file with entries (write a temporary file, fsync, rename).
func (s *fileStorage) writeState(entries map[string][]byte) error {
	if s.path == "" {
		return nil
	}
	raw, err := json.Marshal(stateFile{Version: 1, Entries: entries})
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), stateFileName+".*.tmp")
	if err != nil {
		return fmt.Errorf("persist state: %w", err)
	}
	tmpName := tmp.Name()
	defer func() { _ = os.Remove(tmpName) }() // no-op after a successful rename
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close() // the write already failed; that error is the one to report
		return fmt.Errorf("persist state: %w", err)
	}
	if _, err := tmp.Write(raw); err != nil {
		_ = tmp.Close() // the write already failed; that error is the one to report
		return fmt.Errorf("persist state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close() // the write already failed; that error is the one to report
		return fmt.Errorf("persist state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("persist state: %w", err)
	}
	if err := os.Rename(tmpName, s.path); err != nil {
		return fmt.Errorf("persist state: %w", err)
	}
	return nil
}
