package wire_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/fieldmaskpb"

	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
	"github.com/securemsg/securemsg/services/messaging/internal/wire"
)

// seedFileWithSettings writes the directory seed newEnv starts from, with settings for the
// pools named in settings (a pool left out has none), and returns its path.
func seedFileWithSettings(t *testing.T, settings map[string]*domain.SeedPoolSettings) string {
	t.Helper()
	b, err := os.ReadFile(servicetest.DirectorySeedFile(t, append(slices.Clone(servicetest.Predefined), TwoPoolClinician)...))
	if err != nil {
		t.Fatal(err)
	}
	seed, err := domain.ParseDirectorySeed(b)
	if err != nil {
		t.Fatalf("ParseDirectorySeed(servicetest's seed) = %v", err)
	}
	for i, p := range seed.Pools {
		seed.Pools[i].Settings = settings[p.ID]
	}
	if b, err = json.Marshal(seed); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "directory-seed.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSeededPoolSettings: a pool's settings in the directory seed are what GetPoolSettings and
// CreateThread answer from the first start, without an admin call; a later import stores them
// for a pool that has none yet and never changes settings that are stored, so an
// administrator's change survives a restart with a seed that says otherwise.
func TestSeededPoolSettings(t *testing.T) {
	t.Parallel()
	const disclaimer = "If this is an emergency, call 911."
	e := newEnv(t, tuned(func(s *wire.Settings) {
		s.DirectoryBootstrap = seedFileWithSettings(t, map[string]*domain.SeedPoolSettings{
			"pool-cardiology": {AutoReplyEnabled: true, AutoReplyText: "The cardiology team reads messages on weekdays.",
				Turnaround: "48h", EmergencyDisclaimer: disclaimer},
		})
	}))
	admin := e.as(t, servicetest.Admin)

	got, err := e.api.GetPoolSettings(admin, &messagingv1.GetPoolSettingsRequest{PoolId: "pool-cardiology"})
	if err != nil {
		t.Fatalf("GetPoolSettings(pool-cardiology) = %v", err)
	}
	st := got.GetSettings()
	if !st.GetAutoReplyEnabled() || st.GetAutoReplyText() != "The cardiology team reads messages on weekdays." ||
		st.GetTurnaroundTime().AsDuration() != 48*time.Hour || st.GetEmergencyDisclaimer() != disclaimer {
		t.Fatalf("GetPoolSettings(pool-cardiology) = %v, want the seed's settings", st)
	}
	if st.GetUpdatedBySubject() != domain.SeedSubject || st.GetEtag() != "1" || st.GetUpdateTime() == nil {
		t.Fatalf("GetPoolSettings(pool-cardiology) = %v, want version 1 by %s with an update time", st, domain.SeedSubject)
	}
	if got, err := e.api.GetPoolSettings(admin, &messagingv1.GetPoolSettingsRequest{PoolId: "pool-dermatology"}); err != nil || got.GetSettings().GetEtag() != "0" {
		t.Fatalf("GetPoolSettings(pool-dermatology) = %v, %v, want none stored", got, err)
	}

	// A patient writing to the pool gets the auto-reply, the turnaround and the disclaimer.
	created := e.createThread(t, servicetest.Patient, threadTo("pool-cardiology", marker(t, "subject"), marker(t, "body")))
	reply := created.GetAutoReply().GetBody()
	if !strings.Contains(reply, "reads messages on weekdays") || !strings.Contains(reply, "2 days") || !strings.Contains(reply, disclaimer) {
		t.Errorf("CreateThread().AutoReply = %q, want the seed's text, turnaround and disclaimer", reply)
	}
	if created.GetTurnaroundTime().AsDuration() != 48*time.Hour || created.GetEmergencyDisclaimer() != disclaimer {
		t.Errorf("CreateThread() turnaround %v, disclaimer %q, want the seed's", created.GetTurnaroundTime(), created.GetEmergencyDisclaimer())
	}

	// An administrator changes the seeded text.
	if _, err := e.api.UpdatePoolSettings(admin, &messagingv1.UpdatePoolSettingsRequest{
		Settings:   &messagingv1.PoolSettings{PoolId: "pool-cardiology", AutoReplyText: "The admin's text.", Etag: "1"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"auto_reply_text"}},
	}); err != nil {
		t.Fatalf("UpdatePoolSettings = %v", err)
	}

	// A restart with a seed that gives both pools other settings: cardiology keeps the
	// administrator's, dermatology, which had none, gets the seed's.
	e.settings.DirectoryBootstrap = seedFileWithSettings(t, map[string]*domain.SeedPoolSettings{
		"pool-cardiology":  {AutoReplyEnabled: false, AutoReplyText: "The seed's second text.", Turnaround: "1h", EmergencyDisclaimer: "Other."},
		"pool-dermatology": {Turnaround: "72h", EmergencyDisclaimer: disclaimer},
	})
	restarted, _ := startReplica(t, e)
	got, err = restarted.GetPoolSettings(admin, &messagingv1.GetPoolSettingsRequest{PoolId: "pool-cardiology"})
	if err != nil {
		t.Fatalf("GetPoolSettings(pool-cardiology) after the restart = %v", err)
	}
	st = got.GetSettings()
	if st.GetAutoReplyText() != "The admin's text." || !st.GetAutoReplyEnabled() || st.GetTurnaroundTime().AsDuration() != 48*time.Hour ||
		st.GetEmergencyDisclaimer() != disclaimer || st.GetUpdatedBySubject() != servicetest.Admin.Subject || st.GetEtag() != "2" {
		t.Fatalf("GetPoolSettings(pool-cardiology) after the restart = %v, want the administrator's, unchanged", st)
	}
	created = e.createThread(t, servicetest.Patient, threadTo("pool-cardiology", marker(t, "subject"), marker(t, "body")))
	if reply := created.GetAutoReply().GetBody(); !strings.Contains(reply, "The admin's text.") || strings.Contains(reply, "second text") {
		t.Errorf("CreateThread().AutoReply after the restart = %q, want the administrator's text", reply)
	}
	got, err = restarted.GetPoolSettings(admin, &messagingv1.GetPoolSettingsRequest{PoolId: "pool-dermatology"})
	if err != nil || got.GetSettings().GetTurnaroundTime().AsDuration() != 72*time.Hour || got.GetSettings().GetUpdatedBySubject() != domain.SeedSubject {
		t.Fatalf("GetPoolSettings(pool-dermatology) after the restart = %v, %v, want the seed's 72h", got, err)
	}
	created = e.createThread(t, servicetest.Patient, threadTo("pool-dermatology", marker(t, "subject"), marker(t, "body")))
	if created.GetAutoReply() != nil || created.GetTurnaroundTime().AsDuration() != 72*time.Hour || created.GetEmergencyDisclaimer() != disclaimer {
		t.Errorf("CreateThread(pool-dermatology) = auto-reply %v, turnaround %v, disclaimer %q; want no auto-reply, 72h and the disclaimer",
			created.GetAutoReply(), created.GetTurnaroundTime(), created.GetEmergencyDisclaimer())
	}
}
