package app_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/notification/internal/adapters/memstore"
	"github.com/securemsg/securemsg/services/notification/internal/app"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
	"github.com/securemsg/securemsg/services/notification/templates"
)

const (
	org    = "Riverside Clinic"
	portal = "https://portal.riverside.test/login"
	pool   = "pool-cardiology"
)

// fakePolicy allows everything unless told otherwise; the policies themselves are covered by
// the wire tests, which run them through the real engine and guard.
type fakePolicy struct {
	deny    map[string]bool // actions refused
	failing error           // returned by every call when set
}

func (f *fakePolicy) Authorize(_ context.Context, _ *auth.Principal, action string, _ policy.Resource, _ policy.Context) (policy.Decision, error) {
	if f.failing != nil {
		return policy.Decision{}, f.failing
	}
	return policy.Decision{Allowed: !f.deny[action]}, nil
}

// sender records the alerts it is given and answers with err(n) for the n-th (1-based).
type sender struct {
	mu     sync.Mutex
	alerts []domain.Alert
	err    func(n int) error
}

func (s *sender) Send(_ context.Context, a domain.Alert) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.alerts = append(s.alerts, a)
	if s.err != nil {
		return s.err(len(s.alerts))
	}
	return nil
}

func (s *sender) sent() []domain.Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.alerts)
}

type fixture struct {
	svc    *app.Service
	store  *memstore.Store
	policy *fakePolicy
	email  *sender
	sms    *sender
	// later is how far the store's clock runs ahead of the wall clock (see advance).
	later time.Duration
}

// newFixture is the service over a fresh fake store, with email and SMS senders; options
// change its dependencies before it is built.
func newFixture(t *testing.T, options ...func(*app.Deps)) *fixture {
	t.Helper()
	defaults, err := templates.Defaults()
	if err != nil {
		t.Fatal(err)
	}
	emitter, err := auditlog.NewEmitter(commonv1.Component_COMPONENT_NOTIFICATION)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{policy: &fakePolicy{deny: map[string]bool{}}, email: &sender{}, sms: &sender{}}
	f.store = memstore.New(memstore.WithClock(func() time.Time { return time.Now().Add(f.later) }))
	deps := app.Deps{
		Preferences: f.store, Deliveries: f.store, Templates: f.store, Policy: f.policy, Audit: emitter,
		Senders: map[domain.Channel]domain.Sender{domain.ChannelEmail: f.email, domain.ChannelSMS: f.sms},
	}
	for _, o := range options {
		o(&deps)
	}
	f.svc, err = app.New(app.Config{
		OrganisationName: org, PortalLink: portal, DefaultTemplates: defaults,
		Retry:   domain.RetryPolicy{Base: time.Minute, Max: time.Hour, MaxAttempts: 3},
		Workers: 4, Lease: time.Minute, SendTimeout: time.Second, PollInterval: 10 * time.Millisecond,
	}, deps)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// advance runs the store's clock d ahead, so what was due within d is due now. Only the test
// goroutine calls it, between use cases.
func (f *fixture) advance(d time.Duration) { f.later += d }

func withoutSenders(d *app.Deps) { d.Senders = nil }

func patient(subject string) *auth.Principal {
	return &auth.Principal{Kind: auth.KindUser, Subject: subject, Roles: []auth.Role{auth.RolePatient}, PatientID: "p-" + subject, ClientID: "portal"}
}

// as is ctx carrying p, as the auth guard leaves it for a handler.
func as(t *testing.T, p *auth.Principal) context.Context { return auth.WithPrincipal(t.Context(), p) }

// audits decodes the audit records the store committed.
func (f *fixture) audits(t *testing.T) []*eventsv1.AuditRecord {
	t.Helper()
	var out []*eventsv1.AuditRecord
	for _, ev := range f.store.Outbox() {
		rec := &eventsv1.AuditRecord{}
		if err := proto.Unmarshal(ev.Payload, rec); err != nil {
			t.Fatalf("decode audit record %s: %v", ev.ID, err)
		}
		out = append(out, rec)
	}
	return out
}

func (f *fixture) setEmail(t *testing.T, p *auth.Principal, addr string, more func(*domain.Preferences)) {
	t.Helper()
	_, err := f.svc.UpdatePreferences(as(t, p), p, 0, func(d *domain.Preferences) {
		d.Channels[domain.ChannelEmail] = domain.ChannelSetting{Enabled: true, Address: addr}
		if more != nil {
			more(d)
		}
	})
	if err != nil {
		t.Fatalf("UpdatePreferences(%s) = %v", p.Subject, err)
	}
}

// wantRefusal checks err is the usererr refusal of kind with reason.
func wantRefusal(t *testing.T, err error, kind usererr.Kind, reason string) {
	t.Helper()
	var ue *usererr.Error
	if !errors.As(err, &ue) || ue.Kind != kind || ue.ReasonOf() != reason {
		t.Fatalf("error = %v, want a usererr of kind %d with reason %s", err, kind, reason)
	}
}

func TestUpdatePreferences(t *testing.T) {
	t.Parallel()
	clinician := &auth.Principal{Kind: auth.KindUser, Subject: "c-1", Roles: []auth.Role{auth.RoleClinician}, CarePools: []string{pool}}
	tests := []struct {
		name    string
		who     *auth.Principal
		etag    int64
		change  func(*domain.Preferences)
		policy  fakePolicy
		kind    usererr.Kind
		reason  string
		noLeaks string
	}{
		{name: "stored and audited", who: patient("u-1"), change: func(d *domain.Preferences) {
			d.Channels[domain.ChannelEmail] = domain.ChannelSetting{Enabled: true, Address: "a@example.org"}
		}},
		{name: "stale etag", who: patient("u-1"), etag: 7, change: func(d *domain.Preferences) { d.Locale = "fr-FR" },
			kind: usererr.Aborted, reason: "ETAG_MISMATCH"},
		{name: "bad address", who: patient("u-1"), change: func(d *domain.Preferences) {
			d.Channels[domain.ChannelEmail] = domain.ChannelSetting{Enabled: true, Address: "not-an-address"}
		}, kind: usererr.InvalidArgument, reason: domain.ReasonInvalidPreferences, noLeaks: "not-an-address"},
		{name: "enabled without an address", who: patient("u-1"), change: func(d *domain.Preferences) {
			d.Channels[domain.ChannelPush] = domain.ChannelSetting{Enabled: true}
		}, kind: usererr.FailedPrecondition, reason: domain.ReasonChannelNeedsAddress},
		{name: "pool of another team", who: clinician, change: func(d *domain.Preferences) { d.PoolSubscriptions = []string{"pool-dermatology"} },
			kind: usererr.FailedPrecondition, reason: "NOT_POOL_MEMBER"},
		{name: "own pool", who: clinician, change: func(d *domain.Preferences) { d.PoolSubscriptions = []string{pool} }},
		{name: "refused by policy", who: patient("u-1"), change: func(*domain.Preferences) {},
			policy: fakePolicy{deny: map[string]bool{"notification.UpdatePreferences": true}}, kind: usererr.PermissionDenied, reason: "PERMISSION_DENIED"},
		{name: "access not recorded", who: patient("u-1"), change: func(*domain.Preferences) {},
			policy: fakePolicy{failing: policy.ErrNotRecorded}, kind: usererr.Unavailable, reason: "ACCESS_NOT_RECORDED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			*f.policy = tt.policy
			got, err := f.svc.UpdatePreferences(as(t, tt.who), tt.who, tt.etag, tt.change)
			stored, serr := f.store.Preferences(t.Context(), tt.who.Subject)
			if serr != nil {
				t.Fatal(serr)
			}
			if tt.reason != "" {
				wantRefusal(t, err, tt.kind, tt.reason)
				if tt.noLeaks != "" && strings.Contains(err.Error(), tt.noLeaks) {
					t.Errorf("error %q echoes the address", err)
				}
				if stored.Version != 0 || len(f.store.Outbox()) != 0 {
					t.Errorf("after a refusal: stored version %d, %d audit records; want nothing stored", stored.Version, len(f.store.Outbox()))
				}
				return
			}
			if err != nil {
				t.Fatalf("UpdatePreferences() = %v", err)
			}
			if got.Version != 2 || got.Subject != tt.who.Subject || stored.Version != 2 {
				t.Errorf("UpdatePreferences() = version %d, stored %d; want 2", got.Version, stored.Version)
			}
			recs := f.audits(t)
			if len(recs) != 1 {
				t.Fatalf("audit records = %d, want 1", len(recs))
			}
			r := recs[0]
			if r.GetAction() != eventsv1.Action_ACTION_UPDATE || r.GetRecordType() != eventsv1.RecordType_RECORD_TYPE_NOTIFICATION_PREFERENCES ||
				r.GetRecordId() != tt.who.Subject || r.GetReasonCode() != "own_preferences" || r.GetActor().GetSubject() != tt.who.Subject ||
				r.GetOutcome() != eventsv1.Outcome_OUTCOME_SUCCESS || r.GetPurposeOfUse() == commonv1.PurposeOfUse_PURPOSE_OF_USE_UNSPECIFIED {
				t.Errorf("audit record = %v", r)
			}
			if raw, _ := proto.Marshal(r); strings.Contains(string(raw), "a@example.org") {
				t.Error("audit record holds the contact point")
			}
		})
	}
}

func TestGetPreferencesRecordsWhoMayBeAlerted(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	now := time.Now()
	proxy := &auth.Principal{Kind: auth.KindUser, Subject: "x-1", Roles: []auth.Role{auth.RoleProxy}, ProxyGrants: []auth.ProxyGrant{
		{PatientID: "p-alerts", Scopes: []string{"read", "notifications"}, ExpiresAt: now.Add(time.Hour)},
		{PatientID: "p-read-only", Scopes: []string{"read"}, ExpiresAt: now.Add(time.Hour)},
		{PatientID: "p-expired", Scopes: []string{"notifications"}, ExpiresAt: now.Add(-time.Hour)},
	}}
	got, err := f.svc.GetPreferences(as(t, proxy), proxy)
	if err != nil || got.Subject != "x-1" || got.Role != domain.RoleProxy {
		t.Fatalf("GetPreferences() = %+v, %v", got, err)
	}
	for patient, want := range map[string]bool{"p-alerts": true, "p-read-only": false, "p-expired": false} {
		proxies, err := f.store.NotifyProxies(t.Context(), patient, now)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(proxies, "x-1") != want {
			t.Errorf("NotifyProxies(%s) = %v, want proxy alerted: %v", patient, proxies, want)
		}
	}
	f.policy.deny["notification.GetPreferences"] = true
	_, err = f.svc.GetPreferences(as(t, proxy), proxy)
	wantRefusal(t, err, usererr.PermissionDenied, "PERMISSION_DENIED")
}

// created is a MessageCreated event of a new message to recipients.
func created(recipients ...string) domain.MessageCreated {
	return domain.MessageCreated{
		EventID: uuid.NewString(), ThreadID: uuid.NewString(), MessageID: uuid.NewString(), PoolID: pool,
		PatientID: "p-u-pat", SenderSubject: "c-sender", Recipients: recipients,
		Sensitivity: int16(commonv1.Sensitivity_SENSITIVITY_NORMAL), OccurredAt: time.Now(),
	}
}

// delivered summarises the stored deliveries of recipient as "channel/kind/status[/code]".
func (f *fixture) delivered(recipient string) []string {
	var out []string
	for _, d := range f.store.Deliveries() {
		if d.RecipientSubject != recipient {
			continue
		}
		s := d.Channel.String() + "/" + d.Kind.String() + "/" + statusName[d.Status]
		if d.SuppressionCode != "" {
			s += "/" + d.SuppressionCode
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

var statusName = map[domain.Status]string{
	domain.StatusPending: "pending", domain.StatusSent: "sent", domain.StatusRetrying: "retrying",
	domain.StatusFailed: "failed", domain.StatusSuppressed: "suppressed", domain.StatusSending: "sending",
}

func TestMessageCreatedPlansAlerts(t *testing.T) {
	t.Parallel()
	now := time.Now()
	proxyWithGrant := &auth.Principal{Kind: auth.KindUser, Subject: "x-granted", Roles: []auth.Role{auth.RoleProxy},
		ProxyGrants: []auth.ProxyGrant{{PatientID: "p-u-pat", Scopes: []string{"notifications"}, ExpiresAt: now.Add(time.Hour)}}}
	proxyWithout := &auth.Principal{Kind: auth.KindUser, Subject: "x-none", Roles: []auth.Role{auth.RoleProxy}}
	subscriber := &auth.Principal{Kind: auth.KindUser, Subject: "c-sub", Roles: []auth.Role{auth.RoleClinician}, CarePools: []string{pool}}
	tests := []struct {
		name  string
		setup func(t *testing.T, f *fixture)
		event func() domain.MessageCreated
		want  map[string][]string // recipient → deliveries
	}{
		{
			name:  "a recipient with email on is alerted, one without channels is logged as suppressed",
			setup: func(t *testing.T, f *fixture) { f.setEmail(t, patient("u-pat"), "pat@example.org", nil) },
			event: func() domain.MessageCreated { return created("u-pat", "u-silent", "c-sender") },
			want: map[string][]string{
				"u-pat":    {"email/new_message/pending"},
				"u-silent": {"none/new_message/suppressed/channel_disabled"},
				"c-sender": nil,
			},
		},
		{
			name: "a proxy is alerted only under a notifications grant",
			setup: func(t *testing.T, f *fixture) {
				f.setEmail(t, proxyWithGrant, "granted@example.org", nil)
				f.setEmail(t, proxyWithout, "none@example.org", nil)
			},
			event: func() domain.MessageCreated { return created("x-none") },
			want: map[string][]string{
				"x-granted": {"email/new_message/pending"},
				"x-none":    {"none/new_message/suppressed/no_consent"},
			},
		},
		{
			name: "a proxy never hears of an adolescent-confidential thread",
			setup: func(t *testing.T, f *fixture) {
				f.setEmail(t, proxyWithGrant, "granted@example.org", nil)
				f.setEmail(t, proxyWithout, "none@example.org", nil)
			},
			event: func() domain.MessageCreated {
				ev := created("x-none", "u-teen")
				ev.Sensitivity = domain.SensitivityAdolescentConfidential
				return ev
			},
			want: map[string][]string{"x-granted": nil, "x-none": nil, "u-teen": {"none/new_message/suppressed/channel_disabled"}},
		},
		{
			name: "pool subscribers are alerted",
			setup: func(t *testing.T, f *fixture) {
				f.setEmail(t, subscriber, "sub@example.org", func(d *domain.Preferences) { d.PoolSubscriptions = []string{pool} })
			},
			event: func() domain.MessageCreated { return created() },
			want:  map[string][]string{"c-sub": {"email/new_message/pending"}},
		},
		{
			name: "a digest window opens a digest",
			setup: func(t *testing.T, f *fixture) {
				f.setEmail(t, patient("u-pat"), "pat@example.org", func(d *domain.Preferences) { d.DigestWindow = time.Minute })
			},
			event: func() domain.MessageCreated { return created("u-pat") },
			want:  map[string][]string{"u-pat": {"email/digest/pending", "email/digest/suppressed/digested"}},
		},
		{
			name: "an enabled channel without a stored address is logged",
			setup: func(t *testing.T, f *fixture) {
				// The contact point was cleared behind the API's back: the channel stays on.
				_, err := f.store.UpdatePreferences(t.Context(), domain.Identity{Subject: "u-pat", Role: domain.RolePatient}, func(d *domain.Preferences) ([]outbox.Event, error) {
					d.Channels[domain.ChannelSMS] = domain.ChannelSetting{Enabled: true}
					return nil, nil
				})
				if err != nil {
					t.Fatal(err)
				}
			},
			event: func() domain.MessageCreated { return created("u-pat") },
			want:  map[string][]string{"u-pat": {"sms/new_message/suppressed/no_address"}},
		},
		{
			name:  "the pool's automatic reply alerts nobody",
			setup: func(t *testing.T, f *fixture) { f.setEmail(t, patient("u-pat"), "pat@example.org", nil) },
			event: func() domain.MessageCreated {
				ev := created("u-pat")
				ev.AutoReply = true
				return ev
			},
			want: map[string][]string{"u-pat": nil},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			tt.setup(t, f)
			ev := tt.event()
			for range 2 { // the second time is a JetStream redelivery: nothing changes
				if err := f.svc.MessageCreated(t.Context(), ev); err != nil {
					t.Fatalf("MessageCreated() = %v", err)
				}
			}
			for recipient, want := range tt.want {
				if got := f.delivered(recipient); !slices.Equal(got, want) {
					t.Errorf("deliveries of %s = %v, want %v", recipient, got, want)
				}
			}
		})
	}
}

func TestMalformedEventsAreRefusedBeforeAnyWork(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	bad := created("u-pat")
	bad.MessageID = "not a uuid"
	if err := f.svc.MessageCreated(t.Context(), bad); !errors.Is(err, domain.ErrMalformedEvent) {
		t.Errorf("MessageCreated(malformed) = %v, want ErrMalformedEvent", err)
	}
	if err := f.svc.MessageRead(t.Context(), domain.MessageRead{EventID: uuid.NewString(), ThreadID: uuid.NewString()}); !errors.Is(err, domain.ErrMalformedEvent) {
		t.Errorf("MessageRead(no reader) = %v, want ErrMalformedEvent", err)
	}
	if n := len(f.store.Deliveries()); n != 0 {
		t.Errorf("deliveries = %d, want 0", n)
	}
}

func TestRemindersFireAndReadingCancelsThem(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.setEmail(t, patient("u-pat"), "pat@example.org", func(d *domain.Preferences) {
		d.RemindersEnabled, d.ReminderAfter = true, time.Millisecond
	})
	read, unread := created("u-pat"), created("u-pat")
	read.OccurredAt, unread.OccurredAt = time.Now().Add(-time.Minute), time.Now().Add(-time.Minute)
	for _, ev := range []domain.MessageCreated{read, unread} {
		if err := f.svc.MessageCreated(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.svc.MessageRead(t.Context(), domain.MessageRead{EventID: uuid.NewString(), ThreadID: read.ThreadID,
		UpToMessageID: read.MessageID, ReaderSubject: "u-pat", UnreadCount: 0, OccurredAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	n, err := f.svc.FireReminders(t.Context())
	if err != nil || n != 1 {
		t.Fatalf("FireReminders() = %d, %v; want the unread message's reminder only", n, err)
	}
	want := []string{"email/new_message/pending", "email/new_message/suppressed/already_read", "email/unread_reminder/pending"}
	if got := f.delivered("u-pat"); !slices.Equal(got, want) {
		t.Errorf("deliveries = %v, want %v", got, want)
	}
	if n, err := f.svc.FireReminders(t.Context()); err != nil || n != 0 {
		t.Errorf("FireReminders() again = %d, %v; want 0", n, err)
	}
}

func TestDispatchOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		smsErr     func(n int) error
		attempts   int // dispatch rounds, each after the previous retry fell due
		wantStatus domain.Status
		wantCodes  []string // attempt error codes, in order
		wantAudit  eventsv1.Action
		wantReason string
	}{
		{name: "sent", attempts: 1, wantStatus: domain.StatusSent, wantCodes: []string{""},
			wantAudit: eventsv1.Action_ACTION_ALERT_SENT, wantReason: "sms.new_message"},
		{name: "retried then sent", smsErr: func(n int) error {
			if n == 1 {
				return &domain.SendError{Code: "sms_status_503"}
			}
			return nil
		}, attempts: 2, wantStatus: domain.StatusSent, wantCodes: []string{"sms_status_503", ""},
			wantAudit: eventsv1.Action_ACTION_ALERT_SENT, wantReason: "sms.new_message"},
		{name: "dead-lettered after the last attempt", smsErr: func(int) error { return &domain.SendError{Code: "sms_status_500"} },
			attempts: 3, wantStatus: domain.StatusFailed, wantCodes: []string{"sms_status_500", "sms_status_500", "sms_status_500"},
			wantAudit: eventsv1.Action_ACTION_ALERT_ABANDONED, wantReason: "sms.sms_status_500"},
		{name: "a permanent failure is not retried", smsErr: func(int) error { return &domain.SendError{Code: "sms_status_400", Permanent: true} },
			attempts: 1, wantStatus: domain.StatusFailed, wantCodes: []string{"sms_status_400"},
			wantAudit: eventsv1.Action_ACTION_ALERT_ABANDONED, wantReason: "sms.sms_status_400"},
		{name: "an unknown error is retried as internal", smsErr: func(n int) error {
			if n == 1 {
				return errors.New("provider said something about +15550001234")
			}
			return nil
		}, attempts: 2, wantStatus: domain.StatusSent, wantCodes: []string{"internal", ""},
			wantAudit: eventsv1.Action_ACTION_ALERT_SENT, wantReason: "sms.new_message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.sms.err = tt.smsErr
			pat := patient("u-pat")
			_, err := f.svc.UpdatePreferences(as(t, pat), pat, 0, func(d *domain.Preferences) {
				d.Channels[domain.ChannelSMS] = domain.ChannelSetting{Enabled: true, Address: "+15550001234"}
			})
			if err != nil {
				t.Fatal(err)
			}
			ev := created("u-pat")
			if err := f.svc.MessageCreated(t.Context(), ev); err != nil {
				t.Fatal(err)
			}
			for round := range tt.attempts {
				if round > 0 {
					f.advance(2 * time.Hour) // past the longest backoff: the retry is due
				}
				if n, err := f.svc.DispatchOnce(t.Context()); err != nil || n != 1 {
					t.Fatalf("DispatchOnce() round %d = %d, %v; want one claimed", round+1, n, err)
				}
			}
			if n, err := f.svc.DispatchOnce(t.Context()); err != nil || n != 0 {
				t.Errorf("DispatchOnce() after the outcome = %d, %v; want nothing due", n, err)
			}
			d := f.store.Deliveries()[0]
			var codes []string
			for i, a := range d.Log {
				codes = append(codes, a.ErrorCode)
				if a.Attempt != i+1 {
					t.Errorf("attempt %d numbered %d", i+1, a.Attempt)
				}
				if a.Status == domain.StatusRetrying && a.NextAttempt.Sub(a.FinishTime) < time.Minute {
					t.Errorf("attempt %d retries after %s, want at least the base backoff", i+1, a.NextAttempt.Sub(a.FinishTime))
				}
			}
			if d.Status != tt.wantStatus || !slices.Equal(codes, tt.wantCodes) {
				t.Errorf("delivery = status %d attempts %v, want %d %v", d.Status, codes, tt.wantStatus, tt.wantCodes)
			}
			// The metrics count each recorded attempt once, by channel and status.
			wantOutcomes := map[domain.Status]uint64{}
			for _, a := range d.Log {
				wantOutcomes[a.Status]++
			}
			for _, o := range f.svc.DeliveryOutcomes() {
				want := uint64(0)
				if o.Channel == domain.ChannelSMS {
					want = wantOutcomes[o.Status]
				}
				if o.Count != want {
					t.Errorf("DeliveryOutcomes() %s status %d = %d, want %d", o.Channel, o.Status, o.Count, want)
				}
			}
			if sent := f.sms.sent(); len(sent) != tt.attempts || sent[0].Address != "+15550001234" || sent[0].DeliveryID != d.ID ||
				sent[0].MessageID != ev.MessageID || !strings.Contains(sent[0].Text.Body, portal) {
				t.Errorf("alerts sent = %+v, want %d to the number, naming the delivery and the portal", sent, tt.attempts)
			}
			var alerts []*eventsv1.AuditRecord
			for _, r := range f.audits(t) {
				if r.GetRecordType() == eventsv1.RecordType_RECORD_TYPE_MESSAGE {
					alerts = append(alerts, r)
				}
			}
			if len(alerts) != 1 {
				t.Fatalf("alert audit records = %d, want 1 (retries are not audited)", len(alerts))
			}
			r := alerts[0]
			if r.GetAction() != tt.wantAudit || r.GetReasonCode() != tt.wantReason || r.GetRecordId() != ev.MessageID ||
				r.GetActor().GetSubject() != app.ServiceSubject || r.GetActor().GetRole() != commonv1.Role_ROLE_SERVICE ||
				r.GetActor().GetOnBehalfOf() != "u-pat" || r.GetOperation() != "notification.dispatch.sms" || r.GetPatientId() != ev.PatientID {
				t.Errorf("alert audit record = %v", r)
			}
			if raw, _ := proto.Marshal(r); strings.Contains(string(raw), "5550001234") {
				t.Error("alert audit record holds the phone number")
			}
		})
	}
}

func TestDispatchLeavesAlone(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		prefs    func(*domain.Preferences)
		options  []func(*app.Deps)
		want     string
		wantSent int
	}{
		{name: "quiet hours defer the alert", prefs: func(d *domain.Preferences) {
			d.Quiet = domain.QuietHours{Enabled: true, StartMinute: 0, EndMinute: 1439, TimeZone: "UTC"}
		}, want: "email/new_message/pending"},
		{name: "a channel turned off since is suppressed", prefs: func(d *domain.Preferences) {
			d.Channels[domain.ChannelEmail] = domain.ChannelSetting{}
		}, want: "email/new_message/suppressed/channel_disabled"},
		{name: "a channel without a sender is dead-lettered", options: []func(*app.Deps){withoutSenders}, want: "email/new_message/failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tt.options...)
			pat := patient("u-pat")
			f.setEmail(t, pat, "pat@example.org", nil)
			if err := f.svc.MessageCreated(t.Context(), created("u-pat")); err != nil {
				t.Fatal(err)
			}
			if tt.prefs != nil {
				if _, err := f.svc.UpdatePreferences(as(t, pat), pat, 0, tt.prefs); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := f.svc.DispatchOnce(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := f.delivered("u-pat"); !slices.Equal(got, []string{tt.want}) {
				t.Errorf("deliveries = %v, want [%s]", got, tt.want)
			}
			if got := len(f.email.sent()); got != tt.wantSent {
				t.Errorf("emails sent = %d, want %d", got, tt.wantSent)
			}
			d := f.store.Deliveries()[0]
			if tt.name == "quiet hours defer the alert" && (d.Attempts != 0 || !d.NextAttemptAt.After(time.Now())) {
				t.Errorf("deferred delivery = attempts %d due %s; want the attempt not counted, due after the quiet hours", d.Attempts, d.NextAttemptAt)
			}
		})
	}
}

func TestRecoverStaleClaims(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	pat := patient("u-pat")
	_, err := f.svc.UpdatePreferences(as(t, pat), pat, 0, func(d *domain.Preferences) {
		d.Channels[domain.ChannelEmail] = domain.ChannelSetting{Enabled: true, Address: "pat@example.org"}
		d.Channels[domain.ChannelSMS] = domain.ChannelSetting{Enabled: true, Address: "+15550001234"}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.MessageCreated(t.Context(), created("u-pat")); err != nil {
		t.Fatal(err)
	}
	// Workers that claimed both alerts and died before recording anything.
	if claimed, err := f.store.ClaimDue(t.Context(), 10, time.Minute); err != nil || len(claimed) != 2 {
		t.Fatalf("ClaimDue() = %d, %v", len(claimed), err)
	}
	f.store.ExpireClaims()
	n, err := f.svc.RecoverStaleClaims(t.Context())
	if err != nil || n != 2 {
		t.Fatalf("RecoverStaleClaims() = %d, %v; want 2", n, err)
	}
	// Email is at most once: dead-lettered as outcome unknown. SMS is retried (the gateway
	// de-duplicates on the delivery id).
	want := []string{"email/new_message/failed", "sms/new_message/retrying"}
	if got := f.delivered("u-pat"); !slices.Equal(got, want) {
		t.Errorf("deliveries = %v, want %v", got, want)
	}
	var abandoned int
	for _, r := range f.audits(t) {
		if r.GetAction() == eventsv1.Action_ACTION_ALERT_ABANDONED {
			abandoned++
			if r.GetReasonCode() != "email.outcome_unknown" {
				t.Errorf("abandoned alert reason = %q, want email.outcome_unknown", r.GetReasonCode())
			}
		}
	}
	if abandoned != 1 {
		t.Errorf("ALERT_ABANDONED records = %d, want 1", abandoned)
	}
	if n, err := f.svc.DispatchOnce(t.Context()); err != nil || n != 1 || len(f.sms.sent()) != 1 || len(f.email.sent()) != 0 {
		t.Errorf("DispatchOnce() after recovery = %d, %v, sms %d, email %d; want the sms resent only", n, err, len(f.sms.sent()), len(f.email.sent()))
	}
}

func TestTemplates(t *testing.T) {
	t.Parallel()
	admin := &auth.Principal{Kind: auth.KindUser, Subject: "admin-1", Roles: []auth.Role{auth.RoleAdmin}}
	good := domain.Template{Kind: domain.KindNewMessage, Channel: domain.ChannelEmail, Locale: "en-US",
		Subject: "Custom alert from {{.OrganisationName}}", Body: "Log in at {{.PortalLink}}"}
	tests := []struct {
		name   string
		t      domain.Template
		etag   int64
		deny   bool
		kind   usererr.Kind
		reason string
	}{
		{name: "stored", t: good},
		{name: "a field outside the allow-list", t: domain.Template{Kind: domain.KindNewMessage, Channel: domain.ChannelEmail, Locale: "en-US",
			Subject: "About {{.PatientName}}", Body: "{{.MessageBody}}"}, kind: usererr.InvalidArgument, reason: domain.ReasonTemplateRejected},
		{name: "stale etag", t: good, etag: 3, kind: usererr.Aborted, reason: "ETAG_MISMATCH"},
		{name: "refused by policy", t: good, deny: true, kind: usererr.PermissionDenied, reason: "PERMISSION_DENIED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.policy.deny["notification.UpdateTemplate"] = tt.deny
			got, err := f.svc.UpdateTemplate(as(t, admin), admin, tt.t, tt.etag)
			if tt.reason != "" {
				wantRefusal(t, err, tt.kind, tt.reason)
				if stored, _ := f.store.Templates(t.Context()); len(stored) != 0 || len(f.store.Outbox()) != 0 {
					t.Errorf("after a refusal: %d templates, %d audit records; want none", len(stored), len(f.store.Outbox()))
				}
				return
			}
			if err != nil || got.Version != 1 || got.UpdatedBy != "admin-1" {
				t.Fatalf("UpdateTemplate() = %+v, %v", got, err)
			}
			if recs := f.audits(t); len(recs) != 1 || recs[0].GetRecordType() != eventsv1.RecordType_RECORD_TYPE_NOTIFICATION_TEMPLATE ||
				recs[0].GetRecordId() != good.Key() || recs[0].GetReasonCode() != "template_lint_passed" {
				t.Errorf("audit records = %v", recs)
			}
			all, err := f.svc.ListTemplates(as(t, admin), admin)
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, tm := range all {
				keys = append(keys, tm.Key())
				if tm.Key() == good.Key() && tm.Subject != good.Subject {
					t.Errorf("listed %s = %q, want the override", tm.Key(), tm.Subject)
				}
			}
			if !slices.IsSortedFunc(all, func(a, b domain.Template) int {
				if a.Kind != b.Kind {
					return int(a.Kind) - int(b.Kind)
				}
				if a.Channel != b.Channel {
					return int(a.Channel) - int(b.Channel)
				}
				return strings.Compare(a.Locale, b.Locale)
			}) || len(slices.Compact(slices.Clone(keys))) != len(keys) {
				t.Errorf("ListTemplates() = %v, want each template once, by kind, channel, locale", keys)
			}
		})
	}
}
