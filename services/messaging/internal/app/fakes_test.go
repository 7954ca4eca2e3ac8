package app_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	directoryv1 "github.com/securemsg/securemsg/gen/securemsg/directory/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/keys"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/messaging/internal/adapters/memstore"
	"github.com/securemsg/securemsg/services/messaging/internal/app"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// The use cases' unit tests run over the in-memory repositories (held to the Postgres
// adapter's behaviour by the contract tests in adapters/repotest), the shipped policies, and
// fakes of the key and attachment services: no stack, milliseconds per case.

const eventsSubject = "securemsg.events"

// harness is a Service over fakes, with a clock the test moves.
type harness struct {
	svc   *app.Service
	store *memstore.Store
	keys  *fakeKeys
	att   *fakeAttachments
	clock *testkit.Clock
	audit string // the audit records' subject
}

// engine is the shipped policy set, loaded once: it reads files only.
var engine = sync.OnceValues(func() (*policy.Engine, error) {
	return policy.New(filepath.Join("..", "..", "..", "..", "deploy", "policies"), policy.Options{
		Recorder: auth.RecorderFunc(func(context.Context, auth.DecisionRecord) error { return nil }),
	})
})

// newHarness builds the harness; tune adjusts the service's configuration and collaborators.
func newHarness(t *testing.T, tune ...func(*app.Config, *app.Deps)) *harness {
	t.Helper()
	pe, err := engine()
	if err != nil {
		t.Fatalf("policy.New(deploy/policies) = %v", err)
	}
	h := &harness{store: memstore.New(), keys: newFakeKeys(), att: &fakeAttachments{files: map[string]*domain.BoundAttachment{}},
		clock: testkit.NewClock(time.Now().UTC().Truncate(time.Microsecond))}
	em, err := auditlog.NewEmitter(commonv1.Component_COMPONENT_MESSAGING, auditlog.WithClock(h.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	h.audit = em.Subject()
	all := map[string]string{"GENERAL": "30d", "CLINICAL_QUESTION": "30d", "PRESCRIPTION": "30d", "TEST_RESULTS": "30d",
		"APPOINTMENT": "30d", "BILLING": "30d", "ADMINISTRATIVE": "30d"}
	retention, err := domain.ParseRetention(all)
	if err != nil {
		t.Fatal(err)
	}
	cfg := app.Config{KeyName: "securemsg-messaging-test", Retention: retention, RetractWindow: 15 * time.Minute, EventsSubject: eventsSubject}
	h.seedPools(t)
	deps := app.Deps{Threads: h.store, Messages: h.store, Inbox: h.store, Settings: h.store, Pools: h.store, Apps: h.store, Grants: h.store, People: h.store, Members: h.store,
		Retention: h.store, AuditTrail: h.store,
		Keys: h.keys, Policy: pe, Emitter: em, Attachments: h.att, Now: h.clock.Now}
	for _, f := range tune {
		f(&cfg, &deps)
	}
	h.svc, err = app.New(cfg, deps)
	if err != nil {
		t.Fatalf("app.New() = %v", err)
	}
	return h
}

// seedPools creates the pools the tests write to, with the care-team principals below as
// their members (in the store, which is also the tests' directory).
func (h *harness) seedPools(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	for _, id := range []string{"pool-cardiology", "pool-dermatology"} {
		if _, err := h.store.CreatePool(ctx, domain.Pool{ID: id, Name: id, CreatedAt: h.clock.Now()}, nil); err != nil {
			t.Fatalf("CreatePool(%s) = %v", id, err)
		}
	}
	for _, p := range []*auth.Principal{clinician, colleague, otherClinician} {
		for _, pool := range p.CarePools {
			m := domain.PoolMember{PoolID: pool, Subject: p.Subject, Role: directoryv1.PoolRole_POOL_ROLE_CLINICIAN, AddedAt: h.clock.Now()}
			if _, _, err := h.store.SetPoolMember(ctx, m, func(bool) ([]outbox.Event, error) { return nil, nil }); err != nil {
				t.Fatalf("SetPoolMember = %v", err)
			}
		}
	}
}

// Principals, as the guard chain builds them from the dev stack's seeded users.
func person(subject string, roles ...auth.Role) *auth.Principal {
	now := time.Now()
	return &auth.Principal{Kind: auth.KindUser, Subject: subject, Roles: roles, AMR: []string{"mfa"}, AuthTime: now, IssuedAt: now,
		ClientID: "portal-web", Scopes: strings.Fields("openid messages.read messages.write attachments.read attachments.write notifications.manage audit.read admin")}
}

// patientOf is the patient whose record is patientID.
func patientOf(subject, patientID string) *auth.Principal {
	p := person(subject, auth.RolePatient)
	p.PatientID = patientID
	return p
}

// clinicianIn is a clinician of the care pools.
func clinicianIn(subject string, pools ...string) *auth.Principal {
	p := person(subject, auth.RoleClinician)
	p.CarePools = pools
	return p
}

var (
	patient      = patientOf("user-patient", "p-1001")
	otherPatient = patientOf("user-patient-2", "p-1002")
	teen         = patientOf("user-teen", "p-2001")
	proxy        = func() *auth.Principal {
		p := person("user-proxy", auth.RoleProxy)
		exp := time.Now().Add(24 * time.Hour)
		p.ProxyGrants = []auth.ProxyGrant{{PatientID: "p-1001", Scopes: []string{"read", "write"}, ExpiresAt: exp},
			{PatientID: "p-2001", Scopes: []string{"read", "write"}, ExpiresAt: exp}}
		return p
	}()
	clinician      = clinicianIn("user-clinician", "pool-cardiology")
	colleague      = clinicianIn("user-clinician-4", "pool-cardiology")
	otherClinician = clinicianIn("user-clinician-2", "pool-dermatology")
	admin          = person("user-admin", auth.RoleAdmin)
	attachments    = &auth.Principal{Kind: auth.KindService, Subject: "service:attachment", Service: "attachment"}
)

// fakeKeys wraps DEKs by naming them; down makes it answer as an unreachable Vault.
type fakeKeys struct {
	mu   sync.Mutex
	deks map[string][]byte
	down bool
}

func newFakeKeys() *fakeKeys { return &fakeKeys{deks: map[string][]byte{}} }

func (k *fakeKeys) setDown(down bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.down = down
}

func (k *fakeKeys) NewDEK(_ context.Context, keyName string) (keys.DEK, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.down {
		return keys.DEK{}, keys.ErrKeyServiceUnavailable
	}
	dek := make([]byte, 32)
	_, _ = rand.Read(dek)
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	wrapped := "vault:v1:" + keyName + ":" + hex.EncodeToString(id)
	k.deks[wrapped] = slices.Clone(dek)
	return keys.DEK{Plaintext: dek, Wrapped: wrapped}, nil
}

func (k *fakeKeys) OpenDEK(_ context.Context, _, wrapped string) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.down {
		return nil, keys.ErrKeyServiceUnavailable
	}
	dek, ok := k.deks[wrapped]
	if !ok {
		return nil, keys.ErrInvalidWrappedKey
	}
	return slices.Clone(dek), nil
}

func (k *fakeKeys) Forget(string, string) {}

// fakeAttachments answers as the attachment service does through attachmentclient.
type fakeAttachments struct {
	mu     sync.Mutex
	files  map[string]*domain.BoundAttachment
	purged []string
}

func (a *fakeAttachments) add(uploader string, clean bool) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	id := uuid.NewString()
	a.files[id] = &domain.BoundAttachment{ID: id, UploaderSubject: uploader, Clean: clean}
	return id
}

func (a *fakeAttachments) Bind(_ context.Context, attachmentID, threadID, messageID, uploader string) (domain.BoundAttachment, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f, ok := a.files[attachmentID]
	if !ok || f.UploaderSubject != uploader {
		return domain.BoundAttachment{}, usererr.New(usererr.NotFound, "ATTACHMENT_NOT_FOUND", "attachment not found")
	}
	f.ThreadID, f.MessageID = threadID, messageID
	return *f, nil
}

func (a *fakeAttachments) Purge(_ context.Context, threadIDs []string, _ string) (int64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.purged = append(a.purged, threadIDs...)
	return 0, nil
}

// ctxAs is a request context with p as the verified caller.
func ctxAs(t *testing.T, p *auth.Principal) context.Context {
	return auth.WithPrincipal(t.Context(), p)
}

// wantRefusal fails unless err is a usererr refusal of kind with reason.
func wantRefusal(t *testing.T, what string, err error, kind usererr.Kind, reason string) {
	t.Helper()
	var ue *usererr.Error
	if !errors.As(err, &ue) || ue.Kind != kind || ue.ReasonOf() != reason {
		t.Fatalf("%s = %v, want a %v refusal %s", what, err, usererr.Code(kind), reason)
	}
}

// auditRecords decodes the committed audit records.
func (h *harness) auditRecords(t *testing.T) []*eventsv1.AuditRecord {
	t.Helper()
	var out []*eventsv1.AuditRecord
	for _, e := range h.store.Outbox() {
		if e.Subject != h.audit {
			continue
		}
		rec := &eventsv1.AuditRecord{}
		if err := proto.Unmarshal(e.Payload, rec); err != nil {
			t.Fatalf("decode audit record: %v", err)
		}
		out = append(out, rec)
	}
	return out
}

// findAudit is the first committed audit record of action on recordID.
func (h *harness) findAudit(t *testing.T, action eventsv1.Action, recordID string) *eventsv1.AuditRecord {
	t.Helper()
	for _, r := range h.auditRecords(t) {
		if r.GetAction() == action && r.GetRecordId() == recordID {
			return r
		}
	}
	return nil
}

// eventSubjects lists the committed domain events' subjects, without the prefix.
func (h *harness) eventSubjects() []string {
	var out []string
	for _, e := range h.store.Outbox() {
		if s, ok := strings.CutPrefix(e.Subject, eventsSubject+"."); ok {
			out = append(out, s)
		}
	}
	return out
}

// createThread starts a thread as p in pool-cardiology for p-1001 and fails the test on error.
func (h *harness) createThread(t *testing.T, p *auth.Principal, subject, body string) *app.CreateThreadResult {
	t.Helper()
	c := app.CreateThreadCmd{PoolID: "pool-cardiology", Category: commonv1.ThreadCategory_THREAD_CATEGORY_CLINICAL_QUESTION,
		Sensitivity: commonv1.Sensitivity_SENSITIVITY_NORMAL, Subject: subject, Body: body, ClientRequestID: uuid.NewString()}
	if p.PatientID == "" {
		c.PatientID = "p-1001"
	}
	res, err := h.svc.CreateThread(ctxAs(t, p), p, c)
	if err != nil {
		t.Fatalf("CreateThread(as %s) = %v", p.Subject, err)
	}
	return res
}
