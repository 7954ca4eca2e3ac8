// Package directory is the suite's record of who may call and for whom: people and their
// status, registered client applications, care-pool memberships and proxy grants
// (securemsg.directory.v1 entries).
//
// The messaging service owns the data and is the only writer: a change commits in its Postgres
// schema together with an outbox event, built by Put, that puts the new entry into the
// JetStream key-value bucket the topology names (natsx.Topology.DirectoryBucket). Every service
// process watches the bucket and keeps the newest version of each entry in memory, so its
// access guard decides on the next call, without a round trip, whatever a still-valid token
// claims. Entries carry versions because the outbox may re-publish an older value after a
// newer one: the newest version wins, whatever the arrival order.
package directory

import (
	"encoding/hex"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/securemsg/securemsg/services/internal/platform/outbox"
)

// Key prefixes of the bucket's entries. Subjects and client ids are hex-encoded, because key-value
// keys allow only [-/_=.a-zA-Z0-9] and identity providers' subjects contain other characters.
const (
	personPrefix     = "person."
	membershipPrefix = "member."
	grantsPrefix     = "grants."
	appPrefix        = "app."
)

// PersonKey is the key of a person's PersonEntry.
func PersonKey(subject string) string { return personPrefix + hex.EncodeToString([]byte(subject)) }

// MembershipKey is the key of a person's MembershipEntry.
func MembershipKey(subject string) string {
	return membershipPrefix + hex.EncodeToString([]byte(subject))
}

// GrantsKey is the key of a proxy's ProxyGrantsEntry.
func GrantsKey(proxySubject string) string {
	return grantsPrefix + hex.EncodeToString([]byte(proxySubject))
}

// AppKey is the key of a client application's ClientAppEntry.
func AppKey(clientID string) string { return appPrefix + hex.EncodeToString([]byte(clientID)) }

// Subject is the NATS subject a put of key in bucket is published to (JetStream's key-value
// convention, so the bucket's stream stores it and its watchers see it).
func Subject(bucket, key string) string { return "$KV." + bucket + "." + key }

// Put returns the outbox event that puts entry under key in bucket. The writer adds it to the
// same commit as the change it describes.
func Put(bucket, key string, entry proto.Message) (outbox.Event, error) {
	if bucket == "" {
		return outbox.Event{}, fmt.Errorf("directory: no bucket for %s", key)
	}
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(entry)
	if err != nil {
		return outbox.Event{}, fmt.Errorf("directory: encode %s: %w", key, err)
	}
	return outbox.Event{ID: outbox.NewID(), Subject: Subject(bucket, key), Payload: payload}, nil
}
