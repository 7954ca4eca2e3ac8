package domain

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// seedWithSettings is a seed document whose only pool has settings (raw JSON).
func seedWithSettings(settings string) []byte {
	return []byte(`{"pools": [{"id": "pool-a", "name": "A", "settings": ` + settings + `}]}`)
}

func TestParseDirectorySeedPoolSettings(t *testing.T) {
	t.Parallel()
	s, err := ParseDirectorySeed(seedWithSettings(`{"auto_reply_enabled": true, "auto_reply_text": "Thanks.",
		"turnaround": "48h", "emergency_disclaimer": "Call 911."}`))
	if err != nil {
		t.Fatalf("ParseDirectorySeed() = %v", err)
	}
	got, err := s.Pools[0].Settings.Values("pool-a")
	want := PoolSettings{PoolID: "pool-a", AutoReplyEnabled: true, AutoReplyText: "Thanks.", Turnaround: 48 * time.Hour, EmergencyDisclaimer: "Call 911."}
	if err != nil || got != want {
		t.Fatalf("Values() = %+v, %v, want %+v", got, err, want)
	}

	// Every field may be left out, and the longest texts UpdatePoolSettings takes are taken.
	for _, settings := range []string{
		`{}`,
		`{"turnaround": "0s"}`,
		`{"auto_reply_text": "` + strings.Repeat("é", MaxAutoReplyChars) + `", "emergency_disclaimer": "` + strings.Repeat("é", MaxDisclaimerChars) + `"}`,
	} {
		if _, err := ParseDirectorySeed(seedWithSettings(settings)); err != nil {
			t.Errorf("ParseDirectorySeed(settings %.40s…) = %v, want it accepted", settings, err)
		}
	}
	// A pool without settings has none to store.
	s, err = ParseDirectorySeed([]byte(`{"pools": [{"id": "pool-a", "name": "A"}]}`))
	if err != nil || s.Pools[0].Settings != nil {
		t.Fatalf("ParseDirectorySeed(no settings) = %+v, %v, want nil settings", s.Pools, err)
	}
}

func TestParseDirectorySeedRefusesBadPoolSettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, settings, want string
	}{
		{"auto-reply too long", `{"auto_reply_text": "` + strings.Repeat("x", MaxAutoReplyChars+1) + `"}`, "auto_reply_text is longer than 2000 characters"},
		{"disclaimer too long", `{"emergency_disclaimer": "` + strings.Repeat("x", MaxDisclaimerChars+1) + `"}`, "emergency_disclaimer is longer than 1000 characters"},
		{"negative turnaround", `{"turnaround": "-1h"}`, `turnaround "-1h" is negative`},
		{"turnaround not a duration", `{"turnaround": "2 days"}`, `turnaround "2 days" is not a duration`},
		{"turnaround in fractions of a second", `{"turnaround": "1.5s"}`, `turnaround "1.5s" is not a whole number of seconds`},
		{"turnaround as a number", `{"turnaround": 172800}`, "cannot unmarshal number"},
		{"unknown field", `{"auto_reply": "Thanks."}`, `unknown field "auto_reply"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseDirectorySeed(seedWithSettings(tc.settings))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `pool "pool-a"`) {
				t.Fatalf("ParseDirectorySeed() = %v, want an error naming pool \"pool-a\" and saying %q", err, tc.want)
			}
		})
	}
	// Every pool's fault is reported at once, each under its pool.
	_, err := ParseDirectorySeed([]byte(`{"pools": [{"id": "pool-a", "name": "A", "settings": {"turnaround": "-1h"}},
		{"id": "pool-b", "name": "B", "settings": {"emergency_disclaimer": "` + strings.Repeat("x", MaxDisclaimerChars+1) + `"}}]}`))
	if err == nil || !strings.Contains(err.Error(), `pool "pool-a"`) || !strings.Contains(err.Error(), `pool "pool-b"`) {
		t.Fatalf("ParseDirectorySeed(two bad pools) = %v, want both pools named", err)
	}
}

// TestShippedDirectorySeeds parses the seeds the repository ships, so a typo in one fails here
// rather than at a deployment's start.
func TestShippedDirectorySeeds(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..", "..", "..")
	for _, path := range []string{"devstack/directory-bootstrap.json", "deploy/k8s/base/messaging/directory-bootstrap.json"} {
		b, err := os.ReadFile(filepath.Join(root, path))
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		s, err := ParseDirectorySeed(b)
		if err != nil {
			t.Fatalf("ParseDirectorySeed(%s) = %v", path, err)
		}
		if path != "devstack/directory-bootstrap.json" {
			continue
		}
		// The reference portal shows these; the dev stack has them without an admin call.
		settings := map[string]PoolSettings{}
		for _, p := range s.Pools {
			if p.Settings != nil {
				settings[p.ID], _ = p.Settings.Values(p.ID)
			}
		}
		if c := settings["pool-cardiology"]; !c.AutoReplyEnabled || c.AutoReplyText == "" || c.Turnaround != 48*time.Hour || !strings.Contains(c.EmergencyDisclaimer, "911") {
			t.Errorf("%s: pool-cardiology settings = %+v, want an auto-reply, 48h and the disclaimer", path, c)
		}
		if d := settings["pool-dermatology"]; d.AutoReplyEnabled || d.Turnaround != 72*time.Hour || d.EmergencyDisclaimer != settings["pool-cardiology"].EmergencyDisclaimer {
			t.Errorf("%s: pool-dermatology settings = %+v, want no auto-reply, 72h and cardiology's disclaimer", path, d)
		}
	}
}
