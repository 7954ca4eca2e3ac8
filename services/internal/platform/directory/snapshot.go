package directory

import (
	"encoding/hex"
	"fmt"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
)

// Snapshot is the newest version of every directory entry one process has seen, safe for
// concurrent use. The watcher fills it from the bucket; the writer (messaging) also applies its
// own committed entries at once, so its next call already sees them.
type Snapshot struct {
	mu      sync.RWMutex
	loaded  bool
	people  map[string]*directoryv1.PersonEntry
	members map[string]*directoryv1.MembershipEntry
	grants  map[string]*directoryv1.ProxyGrantsEntry
	apps    map[string]*directoryv1.ClientAppEntry
}

// NewSnapshot returns an empty snapshot that is not loaded yet: Admit refuses every person
// until MarkLoaded (the watcher's initial values are in).
func NewSnapshot() *Snapshot {
	return &Snapshot{
		people:  map[string]*directoryv1.PersonEntry{},
		members: map[string]*directoryv1.MembershipEntry{},
		grants:  map[string]*directoryv1.ProxyGrantsEntry{},
		apps:    map[string]*directoryv1.ClientAppEntry{},
	}
}

// MarkLoaded records that the snapshot holds every entry the bucket had when watching began.
func (s *Snapshot) MarkLoaded() {
	s.mu.Lock()
	s.loaded = true
	s.mu.Unlock()
}

// Loaded reports whether MarkLoaded was called.
func (s *Snapshot) Loaded() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.loaded
}

// Apply keeps entry unless the snapshot already holds a newer version of it. Entries of other
// types are ignored.
func (s *Snapshot) Apply(entry proto.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch e := entry.(type) {
	case *directoryv1.PersonEntry:
		keepNewer(s.people, e.GetSubject(), e)
	case *directoryv1.MembershipEntry:
		keepNewer(s.members, e.GetSubject(), e)
	case *directoryv1.ProxyGrantsEntry:
		keepNewer(s.grants, e.GetProxySubject(), e)
	case *directoryv1.ClientAppEntry:
		keepNewer(s.apps, e.GetClientId(), e)
	}
}

type versioned interface{ GetVersion() int64 }

func keepNewer[E versioned](m map[string]E, id string, e E) {
	if cur, ok := m[id]; ok && cur.GetVersion() >= e.GetVersion() {
		return
	}
	m[id] = e
}

// Decode parses the value stored under key, choosing the entry type by the key's prefix.
func Decode(key string, value []byte) (proto.Message, error) {
	prefix, id, ok := strings.Cut(key, ".")
	if !ok {
		return nil, fmt.Errorf("directory: key %q has no prefix", key)
	}
	if _, err := hex.DecodeString(id); err != nil {
		return nil, fmt.Errorf("directory: key %q is not hex-encoded", key)
	}
	var entry proto.Message
	switch prefix + "." {
	case personPrefix:
		entry = &directoryv1.PersonEntry{}
	case membershipPrefix:
		entry = &directoryv1.MembershipEntry{}
	case grantsPrefix:
		entry = &directoryv1.ProxyGrantsEntry{}
	case appPrefix:
		entry = &directoryv1.ClientAppEntry{}
	default:
		return nil, fmt.Errorf("directory: key %q has an unknown prefix", key)
	}
	if err := proto.Unmarshal(value, entry); err != nil {
		return nil, fmt.Errorf("directory: decode %s: %w", key, err)
	}
	// Snapshot.Apply files an entry by the identity inside it: one stored under another
	// person's key must not change what the directory says about either.
	if KeyOf(entry) != key {
		return nil, fmt.Errorf("directory: the entry under %s names another identity", key)
	}
	return entry, nil
}

// KeyOf is the key an entry is stored under, from the identity it names; "" for a message that
// is no directory entry.
func KeyOf(entry proto.Message) string {
	switch e := entry.(type) {
	case *directoryv1.PersonEntry:
		return PersonKey(e.GetSubject())
	case *directoryv1.MembershipEntry:
		return MembershipKey(e.GetSubject())
	case *directoryv1.ProxyGrantsEntry:
		return GrantsKey(e.GetProxySubject())
	case *directoryv1.ClientAppEntry:
		return AppKey(e.GetClientId())
	}
	return ""
}

// Person returns the person's entry, if the directory has one.
func (s *Snapshot) Person(subject string) (*directoryv1.PersonEntry, bool) {
	return lookup(s, s.people, subject)
}

// Membership returns the person's pool memberships, if the directory has an entry.
func (s *Snapshot) Membership(subject string) (*directoryv1.MembershipEntry, bool) {
	return lookup(s, s.members, subject)
}

func lookup[E any](s *Snapshot, m map[string]E, id string) (E, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := m[id]
	return e, ok
}

// PoolRole is subject's role in the pool as the directory says now; POOL_ROLE_UNSPECIFIED when
// the person is not a member (or the directory has no entry for them).
func (s *Snapshot) PoolRole(subject, poolID string) directoryv1.PoolRole {
	m, ok := s.Membership(subject)
	if !ok {
		return directoryv1.PoolRole_POOL_ROLE_UNSPECIFIED
	}
	for _, p := range m.GetPools() {
		if p.GetPoolId() == poolID {
			return p.GetRole()
		}
	}
	return directoryv1.PoolRole_POOL_ROLE_UNSPECIFIED
}
