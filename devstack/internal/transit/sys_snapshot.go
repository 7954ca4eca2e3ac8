package transit

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// handleRaftSnapshot serves Vault's integrated-storage snapshot API (see snapshot.go):
//
//	GET  sys/storage/raft/snapshot        the whole storage as a snapshot (binary body)
//	POST sys/storage/raft/snapshot        restore a snapshot of this key store (seal checked)
//	POST sys/storage/raft/snapshot-force  restore any valid snapshot (into a fresh server)
//
// PUT works as POST, as everywhere in Vault's API. The caller has been authorized (root token).
func (s *Server) handleRaftSnapshot(w http.ResponseWriter, r *http.Request, rest string) string {
	write := r.Method == http.MethodPost || r.Method == http.MethodPut
	switch {
	case rest == "snapshot" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		return s.takeSnapshot(w, r)
	case rest == "snapshot" && write:
		return s.restoreSnapshot(w, r, false)
	case rest == "snapshot-force" && write:
		return s.restoreSnapshot(w, r, true)
	case rest == "snapshot" || rest == "snapshot-force":
		logical.RespondError(w, http.StatusMethodNotAllowed, logical.ErrUnsupportedOperation)
	default:
		logical.RespondError(w, http.StatusNotFound, logical.ErrUnsupportedPath)
	}
	return ""
}

// takeSnapshot answers with the whole storage. The snapshot is built in memory before the
// first byte is sent, so a failure is an error answer, never a 200 with half a snapshot.
func (s *Server) takeSnapshot(w http.ResponseWriter, r *http.Request) string {
	// Under the mount lock for writing: no request is halfway through changing a key ring, so
	// the copy is the state between two requests, as a raft snapshot is at one log index.
	s.mu.Lock()
	entries := s.store.copyEntries()
	s.mu.Unlock()
	raw, err := encodeSnapshot(entries, s.sealKey, time.Now())
	if err != nil {
		logical.RespondError(w, http.StatusInternalServerError, fmt.Errorf("take snapshot: %w", err))
		return err.Error()
	}
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Length", strconv.Itoa(len(raw)))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(raw)
	}
	return ""
}

// restoreSnapshot replaces the whole storage with a snapshot's, after verifying all of it; a
// snapshot refused for any reason is a 400 and changes nothing. The new state is on disk before
// the answer (204, as Vault), and the mounts are rebuilt from its mount table.
func (s *Server) restoreSnapshot(w http.ResponseWriter, r *http.Request, force bool) string {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSnapshotSize))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			logical.RespondError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("snapshot refused: larger than %d bytes", maxSnapshotSize))
			return ""
		}
		logical.RespondError(w, http.StatusBadRequest, fmt.Errorf("snapshot refused: read body: %w", err))
		return ""
	}
	snap, err := decodeSnapshot(raw)
	if err != nil {
		logical.RespondError(w, http.StatusBadRequest, fmt.Errorf("snapshot refused, nothing changed: %w", err))
		return ""
	}
	if !force && !snap.sealedBy(s.sealKey) {
		logical.RespondError(w, http.StatusBadRequest, fmt.Errorf("snapshot refused, nothing changed: %w", errSealMismatch))
		return ""
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	mounts, err := s.mountsFrom(snap.entries[mountsKey])
	if err != nil {
		logical.RespondError(w, http.StatusBadRequest, fmt.Errorf("snapshot refused, nothing changed: %w", err))
		return ""
	}
	if err := s.store.replaceAll(snap.entries); err != nil {
		logical.RespondError(w, http.StatusInternalServerError, fmt.Errorf("restore snapshot (nothing changed): %w", err))
		return err.Error()
	}
	s.mounts = mounts
	s.log.Info("snapshot restored", "entries", len(snap.entries), "mounts", len(mounts), "taken", snap.meta.Created, "force", force)
	w.WriteHeader(http.StatusNoContent)
	return ""
}
