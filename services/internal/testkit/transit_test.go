package testkit

import (
	"net/http"
	"strings"
	"testing"
)

func TestStartTransitStopStart(t *testing.T) {
	s := StartTransit(t)
	post := func(path, body string) int {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, s.Addr()+"/v1/"+path, strings.NewReader(body))
		req.Header.Set("X-Vault-Token", s.Token())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("transit/keys/testkit-key", `{"type":"aes256-gcm96"}`); code/100 != 2 {
		t.Fatalf("create key: status %d, want 2xx", code)
	}
	s.Stop()
	if err := s.health(); err == nil {
		t.Fatal("health() after Stop = nil, want a connection error")
	}
	s.Start() // mounts transit/ again, as after any start
	// The key survived the restart: reading it works.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, s.Addr()+"/v1/transit/keys/testkit-key", nil)
	req.Header.Set("X-Vault-Token", s.Token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("read key after restart: status %d, want 200", resp.StatusCode)
	}
}
