package wire_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	notificationv1 "github.com/securemsg/securemsg/gen/securemsg/notification/v1"
	"github.com/securemsg/securemsg/services/internal/platform/daemon"
	"github.com/securemsg/securemsg/services/internal/platform/keys"
	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
	"github.com/securemsg/securemsg/services/notification/internal/adapters/httpsender"
	"github.com/securemsg/securemsg/services/notification/internal/adapters/smtpsender"
	"github.com/securemsg/securemsg/services/notification/internal/app"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
	"github.com/securemsg/securemsg/services/notification/internal/wire"
)

const (
	testOrg    = "Riverside Clinic"
	testPortal = "https://portal.riverside.test/login"
	testPool   = "pool-cardiology"
)

var hmacSecret = []byte("test-hmac-secret-0123456789")

// receiver is an HTTPS provider (SMS gateway, push gateway or webhook) on 127.0.0.1 that checks
// signatures and records what it got.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []recorded
	status func(n int) int // status for the n-th request (1-based); nil means 200
}

type recorded struct {
	Body    string
	Headers http.Header
}

func newReceiver(t testing.TB) *receiver {
	t.Helper()
	r := &receiver{}
	r.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if err := httpsender.Verify(hmacSecret, req.Header.Get(httpsender.SignatureHeader), body, time.Now(), time.Minute); err != nil {
			t.Errorf("receiver: signature check: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		r.mu.Lock()
		r.reqs = append(r.reqs, recorded{Body: string(body), Headers: req.Header.Clone()})
		n := len(r.reqs)
		st := r.status
		r.mu.Unlock()
		code := http.StatusOK
		if st != nil {
			code = st(n)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) all() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.reqs...)
}

// env is a notification service under test with its providers.
type env struct {
	h               *servicetest.Harness
	svc             *app.Service
	sms, push, hook *receiver
	client          notificationv1.NotificationServiceClient
}

type envOptions struct {
	retry   domain.RetryPolicy
	workers int
}

func requireStack(t testing.TB) testkit.Stack {
	t.Helper()
	stack := testkit.LoadStack()
	testkit.RequireTCP(t, "mailpit SMTP", stack.SMTPAddr)
	u, _ := url.Parse(stack.MailAPIURL)
	testkit.RequireTCP(t, "mailpit API", u.Host)
	vu, _ := url.Parse(stack.VaultAddr)
	testkit.RequireTCP(t, "vault", vu.Host)
	return stack
}

// testTransitKey is the Transit key the tests' services seal contact points under.
const testTransitKey = "securemsg-notification-test"

// wiring returns the settings and collaborators of a service under test: providers on e's
// receivers and mailpit, Transit from the stack, fast retries and polling.
func wiring(t testing.TB, stack testkit.Stack, e *env, o envOptions) (wire.Settings, wire.Deps) {
	t.Helper()
	email, err := smtpsender.New(smtpsender.Config{Addr: stack.SMTPAddr, From: "alerts@riverside.test", Mode: smtpsender.TLSNone})
	if err != nil {
		t.Fatal(err)
	}
	mk := func(k httpsender.Kind, r *receiver, allowed []string) domain.Sender {
		s, err := httpsender.New(httpsender.Config{Kind: k, URL: r.srv.URL + "/" + k.String(), Secret: hmacSecret, Client: r.srv.Client(), AllowedHosts: allowed})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if o.retry.MaxAttempts == 0 {
		o.retry = domain.RetryPolicy{Base: 50 * time.Millisecond, Max: 200 * time.Millisecond, MaxAttempts: 4}
	}
	transit, err := keys.OpenTransit(t.Context(), keys.Config{Addr: stack.VaultAddr, Token: stack.VaultToken}, testTransitKey)
	if err != nil {
		t.Fatalf("open transit: %v", err)
	}
	settings := wire.Settings{
		TransitKey:       testTransitKey,
		OrganisationName: testOrg,
		PortalLink:       testPortal,
		RetryBase:        o.retry.Base,
		RetryMax:         o.retry.Max,
		MaxAttempts:      o.retry.MaxAttempts,
		Workers:          max(o.workers, 4),
		PollInterval:     50 * time.Millisecond,
		ClaimLease:       30 * time.Second,
		SendTimeout:      10 * time.Second,
	}
	deps := wire.Deps{
		Transit: transit,
		Senders: map[domain.Channel]domain.Sender{
			domain.ChannelEmail:   email,
			domain.ChannelSMS:     mk(httpsender.SMS, e.sms, nil),
			domain.ChannelPush:    mk(httpsender.Push, e.push, nil),
			domain.ChannelWebhook: mk(httpsender.Webhook, e.hook, []string{e.hook.srv.Listener.Addr().String()}),
		},
	}
	return settings, deps
}

// spec is the service's daemon spec without its schema: each test gets a schema of its own.
func spec() daemon.Spec {
	sp := wire.Spec()
	sp.Schema = ""
	return sp
}

func startEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	stack := requireStack(t)
	e := &env{sms: newReceiver(t), push: newReceiver(t), hook: newReceiver(t)}
	settings, deps := wiring(t, stack, e, o)
	e.h = servicetest.Start(t, spec(), servicetest.Options{}, func(p *daemon.Process) error {
		svc, err := wire.Register(p, settings, deps)
		e.svc = svc
		return err
	})
	e.client = notificationv1.NewNotificationServiceClient(e.h.Portal)
	return e
}

// person returns a unique patient persona.
func person(t testing.TB, role string) servicetest.Persona {
	id := strings.ReplaceAll(uuid.NewString()[:13], "-", "")
	p := servicetest.Persona{Subject: "u-" + id, Roles: []string{role}}
	switch role {
	case "patient":
		p.PatientID = "p-" + id
	case "clinician":
		p.Pools = []string{testPool}
	}
	return p
}

// mailbox returns a unique email address for t.
func mailbox(t testing.TB, label string) string {
	return fmt.Sprintf("%s-%s@notify.test", label, strings.ReplaceAll(uuid.NewString()[:18], "-", ""))
}

func (e *env) setPrefs(t testing.TB, who servicetest.Persona, p *notificationv1.Preferences, paths ...string) *notificationv1.Preferences {
	t.Helper()
	resp, err := e.client.UpdatePreferences(e.h.As(t, t.Context(), who), &notificationv1.UpdatePreferencesRequest{
		Preferences: p, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}})
	if err != nil {
		t.Fatalf("UpdatePreferences(%v) = %v", paths, err)
	}
	return resp.GetPreferences()
}

func emailOn(addr string) *notificationv1.ChannelPreference {
	return &notificationv1.ChannelPreference{Enabled: true, Address: addr}
}

// created publishes a MessageCreated for recipients in thread (new ids when empty) and returns
// it. Each call publishes with the event id as Nats-Msg-Id, like the outbox relay.
func (e *env) created(t testing.TB, thread string, recipients ...string) *eventsv1.MessageCreated {
	t.Helper()
	if thread == "" {
		thread = uuid.NewString()
	}
	ev := &eventsv1.MessageCreated{
		Meta:     &eventsv1.EventMeta{EventId: uuid.NewString(), OccurredAt: timestamppb.Now(), Producer: commonv1.Component_COMPONENT_MESSAGING},
		ThreadId: thread, MessageId: uuid.NewString(), PoolId: testPool, PatientId: "p-1001",
		SenderSubject: "user-clinician", SenderRole: commonv1.Role_ROLE_CLINICIAN,
		Sensitivity: commonv1.Sensitivity_SENSITIVITY_NORMAL, RecipientSubjects: recipients,
	}
	e.publish(t, "message.created."+testPool, ev, ev.Meta.EventId)
	return ev
}

func (e *env) publish(t testing.TB, suffix string, m proto.Message, msgID string) {
	t.Helper()
	publish(t, e.h.JS, e.h.Topology.EventsSubject+"."+suffix, m, msgID)
}

func publish(t testing.TB, js jetstream.JetStream, subject string, m proto.Message, msgID string) {
	t.Helper()
	data, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(t.Context(), &nats.Msg{Subject: subject, Data: data, Header: nats.Header{jetstream.MsgIDHeader: []string{msgID}}}); err != nil {
		t.Fatalf("publish %s: %v", subject, err)
	}
}

func (e *env) read(t testing.TB, reader, thread, upTo string, unread int32) {
	t.Helper()
	ev := &eventsv1.MessageRead{Meta: &eventsv1.EventMeta{EventId: uuid.NewString(), OccurredAt: timestamppb.Now(), Producer: commonv1.Component_COMPONENT_MESSAGING},
		ThreadId: thread, PoolId: testPool, UpToMessageId: upTo, ReaderSubject: reader, UnreadCount: unread}
	e.publish(t, "message.read."+testPool, ev, ev.Meta.EventId)
}

// countDeliveries counts deliveries of recipient in a status (0: any).
func (e *env) countDeliveries(t testing.TB, recipient string, status domain.Status) int {
	t.Helper()
	var n int
	err := e.h.Proc.Pool.QueryRow(t.Context(), `SELECT count(*) FROM deliveries WHERE recipient_subject = $1 AND ($2 = 0 OR status = $2)`, recipient, int16(status)).Scan(&n)
	if err != nil {
		t.Fatalf("count deliveries: %v", err)
	}
	return n
}

// mail is one message in mailpit.
type mail struct {
	ID      string
	Subject string
	Raw     string
}

// mails returns the messages mailpit holds for addr, with their raw source.
func mails(t testing.TB, addr string) []mail {
	t.Helper()
	api := testkit.LoadStack().MailAPIURL
	q := url.Values{"query": {`to:"` + addr + `"`}, "limit": {"500"}}
	var res struct {
		Messages []struct{ ID, Subject string } `json:"messages"`
	}
	getJSON(t, api+"/api/v1/search?"+q.Encode(), &res)
	var out []mail
	for _, m := range res.Messages {
		raw := get(t, api+"/api/v1/message/"+m.ID+"/raw")
		out = append(out, mail{ID: m.ID, Subject: m.Subject, Raw: raw})
	}
	return out
}

func waitMails(t testing.TB, addr string, n int, within time.Duration) []mail {
	t.Helper()
	var got []mail
	testkit.WaitFor(t, within, fmt.Sprintf("%d mails to %s", n, addr), func() bool {
		got = mails(t, addr)
		return len(got) >= n
	})
	return got
}

func get(t testing.TB, u string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	return string(b)
}

func getJSON(t testing.TB, u string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(get(t, u)), v); err != nil {
		t.Fatalf("decode %s: %v", u, err)
	}
}

// auditRecords returns the notification service's audit records published so far.
func auditRecords(t testing.TB, h *servicetest.Harness) ([]*eventsv1.AuditRecord, []string) {
	t.Helper()
	ctx := t.Context()
	cons, err := h.JS.OrderedConsumer(ctx, h.Topology.AuditStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{h.Topology.AuditSubject + ".notification"}})
	if err != nil {
		t.Fatalf("audit consumer: %v", err)
	}
	var recs []*eventsv1.AuditRecord
	var raws []string
	for {
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			t.Fatalf("fetch audit: %v", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			r := &eventsv1.AuditRecord{}
			if err := proto.Unmarshal(m.Data(), r); err != nil {
				t.Fatalf("decode audit record: %v", err)
			}
			recs, raws = append(recs, r), append(raws, string(m.Data()))
		}
		if n == 0 {
			return recs, raws
		}
	}
}
