package validate

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// This file runs, as each service's NATS user of deploy/nats/accounts.conf, the NATS operations
// that service's code performs, against a real nats-server: a grant the code needs and the file
// lacks shows up as a permissions violation (or a failed call) and fails the test. The services'
// packages are internal to services/, so this module cannot call them; the operations below
// are the same nats.go calls with the same arguments, each marked with the code it mirrors, and
// the names (streams, subjects, bucket, durables) are read from the services' Go source, so a
// rename there fails here until accounts.conf follows.

// repoRoot is the repository root, from deploy/validate.
const repoRoot = "../.."

// codeNames are the NATS names the services' code uses, read from its source.
type codeNames struct {
	eventsStream, eventsSubject, auditStream, auditSubject, reconcileSubject, directoryBucket string
	auditDurable, notificationDurable                                                         string
}

// kvStream is the stream behind the directory bucket (nats.go's KV naming convention).
func (n codeNames) kvStream() string { return "KV_" + n.directoryBucket }

// goStringConsts returns the string constants declared at top level in the Go file at path
// (relative to the repository root), by name.
func goStringConsts(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(repoRoot, path), nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	out := map[string]string{}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, s := range gd.Specs {
			vs := s.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if v, err := strconv.Unquote(lit.Value); err == nil {
						out[name.Name] = v
					}
				}
			}
		}
	}
	return out
}

func loadCodeNames(t *testing.T) codeNames {
	t.Helper()
	get := func(path, name string) string {
		t.Helper()
		v, ok := goStringConsts(t, path)[name]
		if !ok || v == "" {
			t.Fatalf("%s: no string constant %s; update this test to follow the code", path, name)
		}
		return v
	}
	const streams = "services/internal/platform/natsx/streams.go"
	return codeNames{
		eventsStream:        get(streams, "EventsStream"),
		eventsSubject:       get(streams, "EventsSubject"),
		auditStream:         get(streams, "AuditStream"),
		auditSubject:        get(streams, "AuditSubject"),
		reconcileSubject:    get(streams, "ReconcileSubject"),
		directoryBucket:     get(streams, "DirectoryBucket"),
		auditDurable:        get("services/audit/internal/ports/nats.go", "DefaultDurable"),
		notificationDurable: get("services/notification/internal/wire/wire.go", "Consumer"),
	}
}

// serviceConn is one service's connection, with the permission violations the server reported
// on it.
type serviceConn struct {
	name string
	nc   *nats.Conn
	js   jetstream.JetStream

	mu         sync.Mutex
	violations []string
}

func isViolation(err error) bool {
	return errors.Is(err, nats.ErrPermissionViolation) || strings.Contains(strings.ToLower(err.Error()), "permissions violation")
}

func connectService(t *testing.T, srv *server.Server, user, password string) *serviceConn {
	t.Helper()
	c := &serviceConn{name: user}
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(user, password), nats.Name("securemsg-"+user),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if isViolation(err) {
				c.mu.Lock()
				c.violations = append(c.violations, err.Error())
				c.mu.Unlock()
			}
		}))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	if c.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	return c
}

// takeViolations returns and forgets the violations reported so far.
func (c *serviceConn) takeViolations() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.violations
	c.violations = nil
	return v
}

// mustBeClean fails the test with every violation reported on c so far.
func (c *serviceConn) mustBeClean(t *testing.T, during string) {
	t.Helper()
	if err := c.nc.Flush(); err != nil {
		t.Errorf("%s: flush after %s: %v", c.name, during, err)
	}
	// nats.go reports a violation on its own goroutine, possibly after Flush returned: give it
	// a moment, so a refusal is blamed on the step that caused it rather than missed.
	time.Sleep(150 * time.Millisecond)
	for _, v := range c.takeViolations() {
		t.Errorf("%s: %s: the server refused an operation the code performs: %s", c.name, during, v)
	}
}

// expectDenied runs op, which must be refused: either op reports an error that is not a timeout
// while the server reports a violation, or it times out because the server dropped the request.
func (c *serviceConn) expectDenied(t *testing.T, what string, op func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	err := op(ctx)
	_ = c.nc.Flush()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if len(c.takeViolations()) > 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("%s: %s was allowed (op error %v), want a permissions violation", c.name, what, err)
}

// ensureStreams is natsx.EnsureStreams with natsx.DefaultTopology (1 replica): both streams and
// the directory bucket created or updated to the code's configuration.
func ensureStreams(ctx context.Context, js jetstream.JetStream, n codeNames) error {
	mk := func(name, subject string) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name: name, Subjects: []string{subject + ".>"}, Storage: jetstream.FileStorage,
			Retention: jetstream.LimitsPolicy, Replicas: 1, MaxAge: 7 * 24 * time.Hour,
			Duplicates: 10 * time.Minute, Discard: jetstream.DiscardOld, DenyDelete: true,
		}
	}
	for _, cfg := range []jetstream.StreamConfig{mk(n.eventsStream, n.eventsSubject), mk(n.auditStream, n.auditSubject)} {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
		}
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: n.directoryBucket, History: 8, Storage: jetstream.FileStorage, Replicas: 1,
	}); err != nil {
		return fmt.Errorf("ensure bucket %s: %w", n.directoryBucket, err)
	}
	return nil
}

// directoryWatch is directory.Watch: the bucket's values with history, then every put.
type directoryWatch struct {
	mu     sync.Mutex
	keys   map[string]bool
	loaded chan struct{}
}

func (w *directoryWatch) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.keys)
}

func watchDirectory(t *testing.T, c *serviceConn, n codeNames) *directoryWatch {
	t.Helper()
	ctx := t.Context()
	kv, err := c.js.KeyValue(ctx, n.directoryBucket)
	if err != nil {
		t.Fatalf("%s: open bucket: %v", c.name, err)
	}
	kw, err := kv.WatchAll(ctx, jetstream.IncludeHistory())
	if err != nil {
		t.Fatalf("%s: watch bucket: %v", c.name, err)
	}
	t.Cleanup(func() { _ = kw.Stop() })
	w := &directoryWatch{keys: map[string]bool{}, loaded: make(chan struct{})}
	go func() {
		announced := false
		for e := range kw.Updates() {
			if e == nil {
				if !announced {
					announced = true
					close(w.loaded)
				}
				continue
			}
			w.mu.Lock()
			w.keys[e.Key()] = true
			w.mu.Unlock()
		}
	}()
	select {
	case <-w.loaded:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: directory not loaded (the watch got nothing)", c.name)
	}
	return w
}

// publishOutbox is the outbox relay: pipelined PublishMsgAsync with Nats-Msg-Id, then the acks.
func publishOutbox(t *testing.T, c *serviceConn, subjects ...string) {
	t.Helper()
	pub, err := jetstream.New(c.nc, jetstream.WithPublishAsyncTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var futures []jetstream.PubAckFuture
	for i, s := range subjects {
		msg := nats.NewMsg(s)
		msg.Data = []byte(`{}`)
		msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s-%d-%d", c.name, time.Now().UnixNano(), i))
		f, err := pub.PublishMsgAsync(msg)
		if err != nil {
			t.Errorf("%s: publish %s: %v", c.name, s, err)
			continue
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Errorf("%s: publish %s: %v", c.name, f.Msg().Subject, err)
		case <-time.After(10 * time.Second):
			t.Errorf("%s: publish %s: no PubAck", c.name, f.Msg().Subject)
		}
	}
}

// reconcileRequest is auditlog.Reconciler.ask: a core NATS request for the producer's mark.
func reconcileRequest(t *testing.T, c *serviceConn, n codeNames) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	msg, err := c.nc.RequestWithContext(ctx, n.reconcileSubject+"."+c.name, []byte(`{"producer":"`+c.name+`"}`))
	if err != nil {
		t.Errorf("%s: reconcile request: %v", c.name, err)
		return
	}
	var rep struct {
		Mark *int64 `json:"mark"`
	}
	if err := json.Unmarshal(msg.Data, &rep); err != nil || rep.Mark == nil {
		t.Errorf("%s: reconcile reply %q, want a mark", c.name, msg.Data)
	}
}

// auditConsumer is ports.Consumer.consumer: the durable, no filter, every record.
func auditConsumer(ctx context.Context, c *serviceConn, n codeNames) (jetstream.Consumer, error) {
	return c.js.CreateOrUpdateConsumer(ctx, n.auditStream, jetstream.ConsumerConfig{
		Durable: n.auditDurable, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 15 * time.Second,
		MaxDeliver: -1, MaxAckPending: 4096, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
}

// notificationConsumer is natsx.Consume's consumer for notification's wire: one filter, so it
// goes in FilterSubject.
func notificationConsumer(ctx context.Context, c *serviceConn, n codeNames) (jetstream.Consumer, error) {
	return c.js.CreateOrUpdateConsumer(ctx, n.eventsStream, jetstream.ConsumerConfig{
		Durable: n.notificationDurable, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second,
		MaxDeliver: 1000, BackOff: []time.Duration{200 * time.Millisecond, time.Second, 5 * time.Second, 30 * time.Second},
		MaxAckPending: 256, FilterSubject: n.eventsSubject + ".message.>",
	})
}

func TestNATSServicesRunUnderTheirPermissions(t *testing.T) {
	pw := setNATSPasswords(t)
	srv := startSecuremsgNATS(t)
	n := loadCodeNames(t)
	ctx := t.Context()
	svc := map[string]*serviceConn{}
	order := []string{"messaging", "attachment", "notification", "audit"}
	for _, name := range order {
		svc[name] = connectService(t, srv, name, pw[strings.ToUpper(name)])
	}
	messaging, attachment, notification, audit := svc["messaging"], svc["attachment"], svc["notification"], svc["audit"]

	// daemon.Start, part 1: every service declares the streams and the bucket. Whichever
	// starts first creates them, so each one creates them once (the administrator deletes them
	// in between) and then updates them to the same configuration.
	admin := connectService(t, srv, "jetstream-admin", pw["JETSTREAM_ADMIN"])
	for _, name := range order {
		for _, s := range []string{n.eventsStream, n.auditStream, n.kvStream()} {
			if err := admin.js.DeleteStream(ctx, s); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				t.Fatalf("admin: delete stream %s: %v", s, err)
			}
		}
		if err := ensureStreams(ctx, svc[name].js, n); err != nil {
			t.Fatalf("%s: create: %v", name, err)
		}
		svc[name].mustBeClean(t, "EnsureStreams (create)")
	}
	for _, name := range order {
		if err := ensureStreams(ctx, svc[name].js, n); err != nil {
			t.Fatalf("%s: update: %v", name, err)
		}
		svc[name].mustBeClean(t, "EnsureStreams (update)")
	}

	// Directory entries that messaging's outbox puts (directory.Put: $KV.<bucket>.<key>),
	// enough of them, and large enough, that the watches' initial replay needs flow control.
	var puts []string
	for i := range 300 {
		puts = append(puts, "$KV."+n.directoryBucket+".person."+hex.EncodeToString(fmt.Appendf(nil, "subject-%d", i)))
	}
	kvPub, err := jetstream.New(messaging.nc)
	if err != nil {
		t.Fatal(err)
	}
	big := []byte(strings.Repeat("x", 16<<10))
	for _, s := range puts {
		if _, err := kvPub.PublishAsync(s, big); err != nil {
			t.Fatalf("messaging: directory put: %v", err)
		}
	}
	select {
	case <-kvPub.PublishAsyncComplete():
	case <-time.After(20 * time.Second):
		t.Fatal("messaging: directory puts not acknowledged")
	}
	messaging.mustBeClean(t, "directory puts")

	// daemon.Start, part 2: every service watches the directory and waits for it to load.
	watches := map[string]*directoryWatch{}
	for _, name := range order {
		watches[name] = watchDirectory(t, svc[name], n)
	}
	for name, w := range watches {
		deadline := time.Now().Add(20 * time.Second)
		for w.count() < len(puts) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if got := w.count(); got < len(puts) {
			t.Errorf("%s: directory watch replayed %d of %d entries", name, got, len(puts))
		}
		svc[name].mustBeClean(t, "directory watch")
	}

	// audit: the ingest consumer, the reconciliation responder (ports.ServeReconcile: queue
	// group "audit", Idle reads the consumer's info, the reply goes to the requester's inbox).
	cons, err := auditConsumer(ctx, audit, n)
	if err != nil {
		t.Fatalf("audit: create consumer %s: %v", n.auditDurable, err)
	}
	sub, err := audit.nc.QueueSubscribe(n.reconcileSubject+".*", "audit", func(m *nats.Msg) {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		info, err := cons.Info(rctx)
		idle := err == nil && info.NumPending == 0 && info.NumAckPending == 0
		b, _ := json.Marshal(map[string]any{"mark": 0, "busy": !idle})
		_ = m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	audit.mustBeClean(t, "audit consumer and reconcile responder")

	// Every service: its reconciler asks, its outbox relay publishes its audit record and its
	// events.
	events := map[string][]string{
		"messaging": {
			n.eventsSubject + ".thread.created.cardiology-north", n.eventsSubject + ".message.created.cardiology-north",
			n.eventsSubject + ".message.read.cardiology-north",
		},
		"attachment": {n.eventsSubject + ".attachment.scanned"},
		"audit":      {n.eventsSubject + ".anomaly.raised"},
	}
	for _, name := range order {
		c := svc[name]
		reconcileRequest(t, c, n)
		publishOutbox(t, c, append([]string{n.auditSubject + "." + name}, events[name]...)...)
		c.mustBeClean(t, "reconcile and outbox")
	}

	// audit ingests: fetch, nak (a failed append), fetch again, ack; Idle and the lag metrics
	// read the consumer's info.
	fetchAll := func() []jetstream.Msg {
		var got []jetstream.Msg
		deadline := time.Now().Add(15 * time.Second)
		for len(got) < len(order) && time.Now().Before(deadline) {
			batch, err := cons.Fetch(1024, jetstream.FetchMaxWait(time.Second))
			if err != nil {
				t.Fatalf("audit: fetch: %v", err)
			}
			for m := range batch.Messages() {
				got = append(got, m)
			}
		}
		if len(got) != len(order) {
			t.Fatalf("audit: fetched %d audit records, want %d (one per service)", len(got), len(order))
		}
		return got
	}
	for _, m := range fetchAll() {
		if err := m.NakWithDelay(10 * time.Millisecond); err != nil {
			t.Errorf("audit: nak: %v", err)
		}
	}
	for _, m := range fetchAll() {
		if err := m.Ack(); err != nil {
			t.Errorf("audit: ack: %v", err)
		}
	}
	publishOutbox(t, messaging, n.auditSubject+".messaging")
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.Term(); err != nil { // an undecodable record is terminated
			t.Errorf("audit: term: %v", err)
		}
	}
	if _, err := audit.js.Consumer(ctx, n.auditStream, n.auditDurable); err != nil {
		t.Errorf("audit: consumer info (lag metrics): %v", err)
	}
	audit.mustBeClean(t, "ingest")

	// notification: natsx.Consume (create or update, pull, DoubleAck after success, nak with
	// the backoff delay after a failure, term for a permanent one) and the lag metrics.
	ncons, err := notificationConsumer(ctx, notification, n)
	if err != nil {
		t.Fatalf("notification: create consumer %s: %v", n.notificationDurable, err)
	}
	var handled sync.WaitGroup
	handled.Add(2) // message.created after one nak, message.read terminated
	var once sync.Map
	cc, err := ncons.Consume(func(m jetstream.Msg) {
		md, _ := m.Metadata()
		switch {
		case strings.Contains(m.Subject(), ".message.read."):
			if err := m.Term(); err != nil {
				t.Errorf("notification: term: %v", err)
			}
			handled.Done()
		case md != nil && md.NumDelivered == 1:
			if err := m.NakWithDelay(10 * time.Millisecond); err != nil {
				t.Errorf("notification: nak: %v", err)
			}
		default:
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := m.DoubleAck(actx); err != nil {
				t.Errorf("notification: double ack: %v", err)
			}
			if _, dup := once.LoadOrStore(m.Subject(), true); !dup {
				handled.Done()
			}
		}
	}, jetstream.PullMaxMessages(64))
	if err != nil {
		t.Fatalf("notification: consume: %v", err)
	}
	waitGroup(t, &handled, "notification: message events handled")
	cc.Stop()
	if _, err := notification.js.Consumer(ctx, n.eventsStream, n.notificationDurable); err != nil {
		t.Errorf("notification: consumer info (lag metrics): %v", err)
	}
	notification.mustBeClean(t, "events consumer")

	// messaging: ports.InboxFeed's ordered consumer on its own events; deleting it (as a reset
	// does with the previous consumer) makes the ordered consumer reset and go on.
	feed, err := messaging.js.OrderedConsumer(ctx, n.eventsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{n.eventsSubject + ".message.>", n.eventsSubject + ".thread.>"},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		t.Fatalf("messaging: ordered consumer: %v", err)
	}
	got := make(chan string, 16)
	fc, err := feed.Consume(func(m jetstream.Msg) { got <- m.Subject() })
	if err != nil {
		t.Fatalf("messaging: consume: %v", err)
	}
	t.Cleanup(fc.Stop)
	receive := func(subject string) {
		t.Helper()
		publishOutbox(t, messaging, subject)
		for {
			select {
			case s := <-got:
				if s == subject {
					return
				}
			case <-time.After(20 * time.Second):
				t.Errorf("messaging: inbox feed did not receive %s", subject)
				return
			}
		}
	}
	receive(n.eventsSubject + ".thread.assigned.cardiology-north")
	if err := messaging.js.DeleteConsumer(ctx, n.eventsStream, feed.CachedInfo().Name); err != nil {
		t.Errorf("messaging: delete the inbox feed's consumer: %v", err)
	}
	receive(n.eventsSubject + ".message.retracted.cardiology-north")
	messaging.mustBeClean(t, "inbox feed")

	// Every service: the directory watch's ordered consumer deletes its predecessor when it
	// resets. The names are generated; the administrator lists them.
	kvStream, err := admin.js.Stream(ctx, n.kvStream())
	if err != nil {
		t.Fatal(err)
	}
	var watchConsumers []string
	for name := range kvStream.ConsumerNames(ctx).Name() {
		watchConsumers = append(watchConsumers, name)
	}
	if len(watchConsumers) < len(order) {
		t.Fatalf("%d consumers on %s, want one per service's watch", len(watchConsumers), n.kvStream())
	}
	for i, name := range order {
		if err := svc[name].js.DeleteConsumer(ctx, n.kvStream(), watchConsumers[i]); err != nil {
			t.Errorf("%s: delete a directory watch consumer: %v", name, err)
		}
		svc[name].mustBeClean(t, "directory watch reset")
	}

	// And nothing more: what each user must not do.
	denied := []struct {
		c    *serviceConn
		what string
		op   func(ctx context.Context) error
	}{
		{attachment, "publish another service's audit records", func(context.Context) error {
			return attachment.nc.Publish(n.auditSubject+".messaging", nil)
		}},
		{attachment, "write the directory", func(context.Context) error {
			return attachment.nc.Publish(puts[0], nil)
		}},
		{notification, "ask reconciliation as another producer", func(context.Context) error {
			return notification.nc.Publish(n.reconcileSubject+".messaging", nil)
		}},
		{notification, "answer reconciliation requests", func(context.Context) error {
			_, err := notification.nc.QueueSubscribe(n.reconcileSubject+".*", "audit", func(*nats.Msg) {})
			return err
		}},
		{audit, "subscribe to reconciliation outside its queue group", func(context.Context) error {
			_, err := audit.nc.Subscribe(n.reconcileSubject+".*", func(*nats.Msg) {})
			return err
		}},
		{audit, "publish to an inbox that asked it nothing", func(context.Context) error {
			return audit.nc.Publish("_INBOX.not-a-request", nil)
		}},
		{messaging, "take over notification's durable consumer", func(ctx context.Context) error {
			_, err := messaging.js.CreateOrUpdateConsumer(ctx, n.eventsStream, jetstream.ConsumerConfig{Durable: n.notificationDurable, AckPolicy: jetstream.AckExplicitPolicy})
			return err
		}},
		{messaging, "pull from notification's durable consumer", func(context.Context) error {
			return messaging.nc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT."+n.eventsStream+"."+n.notificationDurable, messaging.nc.NewRespInbox(), []byte(`{"batch":1}`))
		}},
		{messaging, "delete notification's durable consumer", func(ctx context.Context) error {
			return messaging.js.DeleteConsumer(ctx, n.eventsStream, n.notificationDurable)
		}},
		{messaging, "read the audit stream", func(ctx context.Context) error {
			_, err := messaging.js.OrderedConsumer(ctx, n.auditStream, jetstream.OrderedConsumerConfig{})
			return err
		}},
		{notification, "create a consumer under another name", func(ctx context.Context) error {
			_, err := notification.js.CreateOrUpdateConsumer(ctx, n.eventsStream, jetstream.ConsumerConfig{Durable: "other", FilterSubject: n.eventsSubject + ".message.>", AckPolicy: jetstream.AckExplicitPolicy})
			return err
		}},
		{audit, "delete a stream", func(ctx context.Context) error {
			return audit.js.DeleteStream(ctx, n.auditStream)
		}},
	}
	for _, d := range denied {
		d.c.expectDenied(t, d.what, d.op)
	}
}

func waitGroup(t *testing.T, wg *sync.WaitGroup, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: timed out", what)
	}
}

// TestCodeNamesParse keeps loadCodeNames honest: the constants it reads exist and have the
// values accounts.conf is written for.
func TestCodeNamesParse(t *testing.T) {
	t.Parallel()
	n := loadCodeNames(t)
	got := []string{n.eventsStream, n.eventsSubject, n.auditStream, n.auditSubject, n.reconcileSubject, n.directoryBucket, n.auditDurable, n.notificationDurable}
	want := []string{"SECUREMSG_EVENTS", "securemsg.events", "SECUREMSG_AUDIT", "securemsg.audit", "securemsg.reconcile.audit", "SECUREMSG_DIRECTORY", "audit-log", "notification"}
	if !slices.Equal(got, want) {
		t.Errorf("names in the code = %v, want %v (change accounts.conf and the plans with them)", got, want)
	}
}
