package auth_test

import (
	"crypto/x509"
	"net/url"
	"testing"

	"github.com/securemsg/securemsg/services/internal/platform/auth"
)

func TestServiceIdentity(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		uris []string
		want string
		ok   bool
	}{
		{"messaging", []string{"spiffe://securemsg.local/service/messaging"}, "messaging", true},
		{"other trust domain", []string{"spiffe://evil.local/service/messaging"}, "", false},
		{"not a service path", []string{"spiffe://securemsg.local/user/alice"}, "", false},
		{"nested path", []string{"spiffe://securemsg.local/service/a/b"}, "", false},
		{"query smuggling", []string{"spiffe://securemsg.local/service/messaging?x=1"}, "", false},
		{"two identities", []string{"spiffe://securemsg.local/service/messaging", "spiffe://securemsg.local/service/audit"}, "", false},
		{"https uri ignored", []string{"https://securemsg.local/service/messaging"}, "", false},
		{"none", nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cert := &x509.Certificate{}
			for _, u := range tt.uris {
				pu, err := url.Parse(u)
				if err != nil {
					t.Fatal(err)
				}
				cert.URIs = append(cert.URIs, pu)
			}
			got, ok := auth.ServiceIdentity(cert)
			if got != tt.want || ok != tt.ok {
				t.Errorf("ServiceIdentity(%v) = %q, %v, want %q, %v", tt.uris, got, ok, tt.want, tt.ok)
			}
		})
	}
}
