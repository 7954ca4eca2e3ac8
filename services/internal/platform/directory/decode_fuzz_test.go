package directory_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	"github.com/securemsg/securemsg/services/internal/platform/directory"
)

// FuzzDecode: whatever a key and value hold, Decode returns an error or an entry that names
// the very identity its key was derived from — never an entry it would file under someone else.
func FuzzDecode(f *testing.F) {
	seeds := []proto.Message{
		&directoryv1.PersonEntry{Subject: "user-1", Status: directoryv1.PersonStatus_PERSON_STATUS_DEACTIVATED, Version: 3},
		&directoryv1.MembershipEntry{Subject: "clin", Pools: []*directoryv1.PoolMembership{{PoolId: "pool-a", Role: directoryv1.PoolRole_POOL_ROLE_LEAD}}},
		&directoryv1.ProxyGrantsEntry{ProxySubject: "proxy", Grants: []*directoryv1.StoredProxyGrant{{GrantId: "g", PatientId: "p-1", Scopes: []string{"read"}}}},
		&directoryv1.ClientAppEntry{ClientId: "portal-web", Active: true, AllowedScopes: []string{"messages.read"}},
	}
	for _, e := range seeds {
		b, err := proto.Marshal(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(directory.KeyOf(e), b)
		f.Add(directory.PersonKey("someone-else"), b)
	}
	f.Add("person.zz", []byte{0x0a, 0x01, 'x'})
	f.Add("nodot", []byte{})
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		entry, err := directory.Decode(key, value)
		if err != nil {
			return
		}
		if got := directory.KeyOf(entry); got != key {
			t.Fatalf("Decode(%q) returned an entry for %q", key, got)
		}
	})
}
