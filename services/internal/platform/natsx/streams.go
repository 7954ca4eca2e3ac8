package natsx

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Topology names the suite's streams and the subject trees they capture, and how they are
// stored. Production uses DefaultTopology with Replicas 3; tests use unique names and subjects
// so they never see each other's messages.
type Topology struct {
	// EventsStream captures EventsSubject + ".>" (domain events for notification and apps).
	EventsStream  string
	EventsSubject string
	// AuditStream captures AuditSubject + ".>" (audit records for the audit service).
	AuditStream  string
	AuditSubject string
	// ReconcileSubject is where producers ask the audit service which audit records it lacks
	// (core NATS request/reply, not a stream).
	ReconcileSubject string
	// DirectoryBucket is the JetStream key-value bucket of the directory (package
	// platform/directory): written by messaging through its outbox, watched by every service.
	DirectoryBucket string
	// Replicas is the stream replication factor: 1 in dev, 3 in production.
	Replicas int
	// MaxAge bounds how long events stay in the streams. Consumers must keep up within it.
	MaxAge time.Duration
	// DuplicateWindow is how long JetStream remembers Nats-Msg-Id values to drop re-publishes;
	// the outbox relay relies on it when it re-sends after a crash between publish and mark.
	DuplicateWindow time.Duration
}

// Default stream and subject names of the suite.
const (
	EventsStream  = "SECUREMSG_EVENTS"
	EventsSubject = "securemsg.events"
	AuditStream   = "SECUREMSG_AUDIT"
	AuditSubject  = "securemsg.audit"
	// ReconcileSubject is the core-NATS subject tree of audit reconciliation requests; it lies
	// outside AuditSubject on purpose, so the audit stream never captures a request.
	ReconcileSubject = "securemsg.reconcile.audit"
	// DirectoryBucket is the key-value bucket of the directory (people, client applications,
	// pool memberships, proxy grants).
	DirectoryBucket = "SECUREMSG_DIRECTORY"
)

// DefaultTopology is the development topology: file storage, 1 replica, 7 days of events, a
// 10-minute duplicate window (longer than any relay restart we expect).
func DefaultTopology() Topology {
	return Topology{
		EventsStream:     EventsStream,
		EventsSubject:    EventsSubject,
		AuditStream:      AuditStream,
		AuditSubject:     AuditSubject,
		ReconcileSubject: ReconcileSubject,
		DirectoryBucket:  DirectoryBucket,
		Replicas:         1,
		MaxAge:           7 * 24 * time.Hour,
		DuplicateWindow:  10 * time.Minute,
	}
}

// StreamConfigs returns the JetStream configuration of each stream in t.
func (t Topology) StreamConfigs() []jetstream.StreamConfig {
	replicas := max(t.Replicas, 1)
	dup := orDefault(t.DuplicateWindow, 10*time.Minute)
	mk := func(name, subject, desc string) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:        name,
			Description: desc,
			Subjects:    []string{subject + ".>"},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Replicas:    replicas,
			MaxAge:      t.MaxAge,
			Duplicates:  dup,
			// Publishers must never silently lose an event: when a limit is hit the oldest
			// go (limits policy), and a publish to a missing stream fails instead of vanishing.
			Discard:    jetstream.DiscardOld,
			DenyDelete: true,
		}
	}
	return []jetstream.StreamConfig{
		mk(t.EventsStream, t.EventsSubject, "securemsg domain events (ids and metadata, no PHI)"),
		mk(t.AuditStream, t.AuditSubject, "securemsg audit records on their way to the audit log"),
	}
}

// Validate reports every missing name in t at once.
func (t Topology) Validate() error {
	var errs []error
	for field, v := range map[string]string{
		"EventsStream": t.EventsStream, "EventsSubject": t.EventsSubject,
		"AuditStream": t.AuditStream, "AuditSubject": t.AuditSubject, "ReconcileSubject": t.ReconcileSubject,
		"DirectoryBucket": t.DirectoryBucket,
	} {
		if v == "" {
			errs = append(errs, fmt.Errorf("natsx: topology %s is empty", field))
		}
	}
	return errors.Join(errs...)
}

// EnsureStreams creates the streams and the directory bucket of t or updates them to match, so a deploy that changes
// MaxAge or Replicas converges without manual steps. Safe to call from every replica.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, t Topology) error {
	if err := t.Validate(); err != nil {
		return err
	}
	for _, cfg := range t.StreamConfigs() {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("natsx: ensure stream %s: %w", cfg.Name, err)
		}
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, t.DirectoryConfig()); err != nil {
		return fmt.Errorf("natsx: ensure bucket %s: %w", t.DirectoryBucket, err)
	}
	return nil
}

// DirectoryConfig is the key-value bucket the directory lives in: file storage, never expiring,
// and enough history per key that a watcher can keep the newest version of an entry whatever
// order the outbox published its versions in.
func (t Topology) DirectoryConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      t.DirectoryBucket,
		Description: "securemsg directory: people, client applications, pool memberships, proxy grants",
		History:     8,
		Storage:     jetstream.FileStorage,
		Replicas:    max(t.Replicas, 1),
	}
}
