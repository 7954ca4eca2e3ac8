package app_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/attachment/internal/adapters/memstore"
	"github.com/securemsg/securemsg/services/attachment/internal/app"
	"github.com/securemsg/securemsg/services/attachment/internal/domain"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/keys"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

// The people and services of the tests.
var (
	patient      = &auth.Principal{Kind: auth.KindUser, Subject: "user-patient", Roles: []auth.Role{auth.RolePatient}, PatientID: "p-1001", ClientID: "portal-web"}
	otherPatient = &auth.Principal{Kind: auth.KindUser, Subject: "user-other", Roles: []auth.Role{auth.RolePatient}, PatientID: "p-2002", ClientID: "portal-web"}
	proxy        = &auth.Principal{Kind: auth.KindUser, Subject: "user-proxy", Roles: []auth.Role{auth.RoleProxy}, ClientID: "portal-web"}
	messaging    = &auth.Principal{Kind: auth.KindService, Subject: "service:messaging", Service: "messaging"}
	notification = &auth.Principal{Kind: auth.KindService, Subject: "service:notification", Service: "notification"}
)

// eicar is the antivirus test file, assembled at run time so no source file is flagged.
func eicar() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")
}

// fixture is the use cases over the in-memory repository and fake gateways.
type fixture struct {
	svc     *app.Service
	repo    *memstore.Store
	audit   *failingAudit
	objects *objects
	scanner *scanner
	access  *access
	clock   *testkit.Clock
}

// newFixture builds the use cases with limits tuned by tune (when not nil).
func newFixture(t *testing.T, tune func(*app.Config)) *fixture {
	t.Helper()
	f := &fixture{
		objects: &objects{m: map[string][]byte{}},
		scanner: &scanner{},
		access:  &access{rules: map[string]map[string]domain.Access{}},
		clock:   testkit.NewTickingClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), time.Millisecond), // distinct, increasing creation times
	}
	f.repo = memstore.New(f.clock.Now)
	f.audit = &failingAudit{AuditWriter: f.repo}
	emitter, err := auditlog.NewEmitter(commonv1.Component_COMPONENT_ATTACHMENT, auditlog.WithClock(f.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	cfg := app.Config{
		KeyName: "securemsg-attachment", Limits: domain.DefaultLimits(), EventsSubject: "securemsg.events",
		DraftTTL: 24 * time.Hour, UploadTTL: time.Hour, SessionTTL: 24 * time.Hour, FinishLease: 15 * time.Minute,
	}
	if tune != nil {
		tune(&cfg)
	}
	f.svc, err = app.New(cfg, app.Deps{
		Attachments: f.repo, Sessions: f.repo, AuditTrail: f.audit, Objects: f.objects, Scanner: f.scanner,
		Access: f.access, Keys: newDEKs(), Emitter: emitter, Now: f.clock.Now, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("app.New = %v", err)
	}
	return f
}

// as is a request context of p, as the rpc guards leave it.
func as(t *testing.T, p *auth.Principal) context.Context {
	return auth.WithPrincipal(t.Context(), p)
}

// upload uploads data as p under name (text/plain unless mediaType is set).
func (f *fixture) upload(t *testing.T, p *auth.Principal, req app.UploadRequest, data []byte) (*domain.Attachment, error) {
	t.Helper()
	if req.FileName == "" {
		req.FileName = "note.txt"
	}
	if req.DeclaredMediaType == "" {
		req.DeclaredMediaType = "text/plain"
	}
	if req.DeclaredSize == 0 {
		req.DeclaredSize = int64(len(data))
	}
	return f.svc.Upload(as(t, p), p, req, bytes.NewReader(data))
}

// mustUpload uploads a text file as p and fails the test on error.
func (f *fixture) mustUpload(t *testing.T, p *auth.Principal, req app.UploadRequest, data []byte) *domain.Attachment {
	t.Helper()
	a, err := f.upload(t, p, req, data)
	if err != nil {
		t.Fatalf("Upload(as %s) = %v", p.Subject, err)
	}
	return a
}

// download reads the whole range [off, off+n) as p.
func (f *fixture) download(t *testing.T, p *auth.Principal, id string, off, n int64) ([]byte, error) {
	t.Helper()
	d, err := f.svc.OpenDownload(as(t, p), p, id, off, n)
	if err != nil {
		return nil, err
	}
	defer func() { _ = d.Close() }() // read-only
	return io.ReadAll(d)
}

// bind binds a to message msg of thread as messaging does.
func (f *fixture) bind(t *testing.T, a *domain.Attachment, thread, msg string) (*domain.Attachment, error) {
	t.Helper()
	return f.svc.BindAttachment(as(t, messaging), messaging, app.BindRequest{
		AttachmentID: a.ID, ThreadID: thread, MessageID: msg, UploaderSubject: a.UploaderSubject,
	})
}

// auditRecords decodes the audit records committed so far.
func (f *fixture) auditRecords(t *testing.T) []*eventsv1.AuditRecord {
	return committed(t, f, auditlog.DefaultSubjectPrefix+".attachment", func() *eventsv1.AuditRecord { return &eventsv1.AuditRecord{} })
}

// countAudit counts the records of action with reason.
func (f *fixture) countAudit(t *testing.T, action eventsv1.Action, reason string) int {
	n := 0
	for _, r := range f.auditRecords(t) {
		if r.GetAction() == action && r.GetReasonCode() == reason {
			n++
		}
	}
	return n
}

// findAudit returns the records of action on record id.
func (f *fixture) findAudit(t *testing.T, action eventsv1.Action, id string) []*eventsv1.AuditRecord {
	t.Helper()
	var out []*eventsv1.AuditRecord
	for _, r := range f.auditRecords(t) {
		if r.GetAction() == action && r.GetRecordId() == id {
			out = append(out, r)
		}
	}
	return out
}

// scanned decodes the AttachmentScanned events committed so far.
func (f *fixture) scanned(t *testing.T) []*eventsv1.AttachmentScanned {
	return committed(t, f, "securemsg.events.attachment.scanned", func() *eventsv1.AttachmentScanned { return &eventsv1.AttachmentScanned{} })
}

// committed decodes the committed outbox rows on subject into messages newMsg makes.
func committed[M proto.Message](t *testing.T, f *fixture, subject string, newMsg func() M) []M {
	t.Helper()
	var out []M
	for _, r := range f.repo.Rows() {
		if m := newMsg(); r.Subject == subject {
			if err := proto.Unmarshal(r.Payload, m); err != nil {
				t.Fatalf("decode a %s row: %v", subject, err)
			}
			out = append(out, m)
		}
	}
	return out
}

// wantRefusal checks that err is a usererr of kind with reason.
func wantRefusal(t *testing.T, what string, err error, kind usererr.Kind, reason string) {
	t.Helper()
	var ue *usererr.Error
	if !errors.As(err, &ue) || ue.Kind != kind || (reason != "" && ue.ReasonOf() != reason) {
		t.Fatalf("%s = %v, want a refusal of kind %v with reason %s", what, err, kind, reason)
	}
}

// objects is an object store in memory. down makes every call fail as an unreachable store.
type objects struct {
	mu   sync.Mutex
	m    map[string][]byte
	down atomic.Bool
}

var errStoreDown = usererr.Wrap(usererr.Unavailable, "OBJECT_STORE_UNAVAILABLE", "object storage unavailable", errors.New("connection refused"))

func (o *objects) Put(_ context.Context, name string, r io.Reader, size int64) error {
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.down.Load() {
		return errStoreDown
	}
	o.m[name] = b
	return nil
}

func (o *objects) Open(_ context.Context, name string, _ domain.ReadHint) (domain.Object, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.down.Load() {
		return nil, errStoreDown
	}
	b, ok := o.m[name]
	if !ok {
		return nil, usererr.New(usererr.NotFound, "OBJECT_NOT_FOUND", "object not found")
	}
	return object{bytes.NewReader(b)}, nil
}

func (o *objects) Remove(_ context.Context, name string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.down.Load() {
		return errStoreDown
	}
	delete(o.m, name)
	return nil
}

func (o *objects) RemoveIncompleteUploads(context.Context, time.Duration) (int, error) { return 0, nil }

func (o *objects) RemovePrefix(_ context.Context, prefix string) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.down.Load() {
		return 0, errStoreDown
	}
	n := 0
	for name := range o.m {
		if strings.HasPrefix(name, prefix) {
			delete(o.m, name)
			n++
		}
	}
	return n, nil
}

func (o *objects) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.m)
}

// set replaces an object's bytes (tampering).
func (o *objects) set(name string, b []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.m[name] = b
}

func (o *objects) get(name string) []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	return bytes.Clone(o.m[name])
}

type object struct{ *bytes.Reader }

func (object) Close() error { return nil }

// scanner finds EICAR, or fails while down.
type scanner struct {
	down atomic.Bool
}

func (s *scanner) Scan(_ context.Context, r io.Reader) (domain.Verdict, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return domain.Verdict{}, err
	}
	if s.down.Load() {
		return domain.Verdict{}, errors.New("clamd: no verdict: connection refused")
	}
	if bytes.Contains(b, []byte("EICAR-STANDARD-ANTIVIRUS-TEST-FILE")) {
		return domain.Verdict{Infected: true, Signature: "Eicar-Signature"}, nil
	}
	return domain.Verdict{}, nil
}

// access answers CheckAccess from rules: target → subject → answer. A target without rules is
// NotFound; a subject without an answer is denied.
type access struct {
	mu    sync.Mutex
	rules map[string]map[string]domain.Access
}

func (a *access) set(target, subject string, ans domain.Access) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.rules[target] == nil {
		a.rules[target] = map[string]domain.Access{}
	}
	a.rules[target][subject] = ans
}

func (a *access) CheckAccess(_ context.Context, p *auth.Principal, t domain.AccessTarget) (domain.Access, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	target := t.MessageID // preferred, as the messaging client asks
	if target == "" {
		target = t.ThreadID
	}
	subjects, ok := a.rules[target]
	if !ok {
		return domain.Access{}, usererr.New(usererr.NotFound, "MESSAGE_NOT_FOUND", "message or thread not found")
	}
	if ans, ok := subjects[p.Subject]; ok {
		return ans, nil
	}
	return domain.Access{Allowed: false, ReasonCode: "no_grant"}, nil
}

// deks makes random data keys "wrapped" by name.
type deks struct {
	mu sync.Mutex
	m  map[string][]byte
}

func newDEKs() *deks { return &deks{m: map[string][]byte{}} }

func (d *deks) NewDEK(_ context.Context, keyName string) (keys.DEK, error) {
	pt := make([]byte, 32)
	_, _ = rand.Read(pt)
	wrapped := "test:v1:" + keyName + ":" + hex.EncodeToString(pt[:8])
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m[wrapped] = bytes.Clone(pt)
	return keys.DEK{Plaintext: pt, Wrapped: wrapped}, nil
}

func (d *deks) OpenDEK(_ context.Context, _, wrapped string) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	pt, ok := d.m[wrapped]
	if !ok {
		return nil, keys.ErrInvalidWrappedKey
	}
	return bytes.Clone(pt), nil
}

// failingAudit is the repository's AuditWriter that can be made to refuse, as an outbox that
// cannot be written.
type failingAudit struct {
	domain.AuditWriter
	refuse atomic.Bool
}

func (a *failingAudit) WriteAudit(ctx context.Context, rows []outbox.Event) error {
	if a.refuse.Load() {
		return domain.NotRecorded(errors.New("outbox unavailable"))
	}
	return a.AuditWriter.WriteAudit(ctx, rows)
}
