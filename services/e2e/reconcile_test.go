package e2e_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
)

// Tolerances of the growth check: a service may hold a few more goroutines (a reconnected
// NATS or pgx connection, a gRPC transport) and descriptors after a fault than before it, but
// not one per request.
const (
	// defaultDrainWithin bounds how long reconcile waits for the relays and the audit
	// consumer (env.drainWithin overrides it).
	defaultDrainWithin = 45 * time.Second
	goroutineSlack     = 40
	fdSlack            = 12
)

// reconcile checks, after a fault, the invariants issue 10 lists:
//   - every acknowledged send and upload is stored (and no acknowledged upload is FAILED);
//   - message, outbox and audit records match one to one: each message someone wrote has
//     exactly one message.created event in the messaging outbox and exactly one CREATE entry in
//     the audit log; each of the pool's automatic replies (exactly one per thread whose pool
//     enables them, after its first patient-side message) has exactly one message.created
//     event and no CREATE entry (checkMessages); every audit record any outbox holds is in the
//     audit log once; every outbox row was published;
//   - no plaintext marker anywhere at rest: no text, bytea, array or json column of any schema,
//     no raw MinIO object, and no file under the stack's folder (Postgres data and WAL, the
//     JetStream store, MinIO's disks, mailpit's database, every log) holds one;
//   - the audit log verifies (VerifyRange from sequence 1);
//   - no orphan objects past the clean-up window (objectWindow; 0 skips the check when the
//     attachment service does not run): objects in the bucket with no visible row;
//   - no goroutine or file-descriptor growth against snapshotUsage's baseline.
//
// Checks that depend on asynchronous work (the relay, the audit consumer, the clean-up job,
// winding-down goroutines) poll with a deadline.
func (e *env) reconcile(t *testing.T, objectWindow time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	began := time.Now()
	acked := e.acked()

	// Everything written has been relayed and ingested.
	drainWithin := cmp.Or(e.drainWithin, defaultDrainWithin)
	if err := eventually(ctx, drainWithin, 250*time.Millisecond, e.outboxDrained); err != nil {
		t.Errorf("reconcile: outbox and audit log after %s: %v; %s", drainWithin, err, e.consumerReport(ctx))
	} else {
		t.Logf("reconcile: outboxes drained into the streams and the audit log after %s", time.Since(began).Round(time.Millisecond))
	}
	autoReplies, err := e.checkMessages(ctx, acked, e.ackedThreads())
	if err != nil {
		t.Errorf("reconcile: messages: %v", err)
	}
	if e.s.Service("attachment") != nil {
		if err := e.checkUploads(ctx); err != nil {
			t.Errorf("reconcile: uploads: %v", err)
		}
	}
	if err := e.checkVerify(ctx); err != nil {
		t.Errorf("reconcile: audit log: %v", err)
	}
	if e.s.MinIO != nil && objectWindow > 0 {
		err := eventually(ctx, objectWindow+20*time.Second, time.Second, func(ctx context.Context) error {
			return e.checkOrphans(ctx, objectWindow)
		})
		if err != nil {
			t.Errorf("reconcile: orphans: %v", err)
		}
	}
	if err := e.checkMarkersInDB(ctx); err != nil {
		t.Errorf("reconcile: plaintext at rest (Postgres): %v", err)
	}
	if e.s.MinIO != nil {
		if err := e.checkMarkersInBucket(ctx); err != nil {
			t.Errorf("reconcile: plaintext at rest (MinIO): %v", err)
		}
	}
	if err := e.checkMarkersInFiles(); err != nil {
		t.Errorf("reconcile: plaintext at rest (files): %v", err)
	}
	if e.baseline != nil {
		if err := eventually(ctx, 20*time.Second, 500*time.Millisecond, e.checkGrowth); err != nil {
			t.Errorf("reconcile: growth: %v", err)
		}
	}
	t.Logf("reconcile: %d acknowledged messages, %d auto-replies, %d uploads checked in %s",
		len(acked), autoReplies, len(e.uploads), time.Since(began).Round(time.Millisecond))
}

// outboxSchemas lists the schemas holding an outbox table.
func (e *env) outboxSchemas(ctx context.Context) ([]string, error) {
	rows, err := e.db.Query(ctx, `SELECT table_schema FROM information_schema.tables WHERE table_name = 'outbox' ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// outboxDrained fails while an outbox row is unpublished or an audit record from any outbox
// is missing from the audit log (audit.event_ids holds each ingested record's event id once).
func (e *env) outboxDrained(ctx context.Context) error {
	schemas, err := e.outboxSchemas(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range schemas {
		q := pgx.Identifier{s, "outbox"}.Sanitize()
		var unsent, missing int
		if err := e.db.QueryRow(ctx, `SELECT count(*) FROM `+q+` WHERE published_at IS NULL`).Scan(&unsent); err != nil {
			return err
		}
		if err := e.db.QueryRow(ctx, `SELECT count(*) FROM `+q+` o WHERE o.subject LIKE 'securemsg.audit.%'
			AND NOT EXISTS (SELECT 1 FROM audit.event_ids a WHERE a.event_id = o.id)`).Scan(&missing); err != nil {
			return err
		}
		if unsent > 0 {
			errs = append(errs, fmt.Errorf("%s.outbox has %d unpublished rows", s, unsent))
		}
		if missing > 0 {
			errs = append(errs, fmt.Errorf("%d audit records of %s.outbox are not in the audit log", missing, s))
		}
	}
	return errors.Join(errs...)
}

// checkMessages matches messages, message.created events and CREATE audit entries, and finds
// every acknowledged message stored:
//   - a message someone wrote has exactly one message.created event in the messaging outbox,
//     with auto_reply unset, and exactly one CREATE entry in the audit log;
//   - the pool's automatic reply (messages.auto_reply) is a system message, with no sender and
//     never acknowledged as anyone's write; it has exactly one message.created event, with
//     auto_reply set, and no CREATE entry (services/messaging/internal/app/send.go,
//     messageCreated: it is not audited as a person's write);
//   - a thread has exactly one auto-reply, right after its first message from the patient's
//     side, when its pool's settings enable auto-replies (messaging.pool_settings; no test
//     changes them) and it has such a message, and none otherwise;
//   - the auto-reply a CreateThread answer carried (or its absence) is what is stored;
//   - every message.created event is of a stored message.
//
// It returns how many auto-replies are stored.
func (e *env) checkMessages(ctx context.Context, acked map[string]string, threads map[string]*messagingv1.Message) (autoReplies int, err error) {
	msgs, err := e.storedMessages(ctx)
	if err != nil {
		return 0, err
	}
	stored := map[string]storedMessage{}
	ids := make([]string, 0, len(msgs))
	for _, m := range msgs {
		stored[m.id] = m
		ids = append(ids, m.id)
	}
	autoReplyOn := map[string]bool{} // thread id → its pool's settings enable auto-replies
	rows, err := e.db.Query(ctx, `SELECT t.id::text, coalesce(s.auto_reply_enabled, false)
		FROM messaging.threads t LEFT JOIN messaging.pool_settings s USING (pool_id)`)
	if err != nil {
		return 0, err
	}
	var (
		tid string
		on  bool
	)
	if _, err := pgx.ForEachRow(rows, []any{&tid, &on}, func() error { autoReplyOn[tid] = on; return nil }); err != nil {
		return 0, err
	}
	events := map[string]int{}
	autoEvents := map[string]int{} // of events, those flagged auto_reply
	rows, err = e.db.Query(ctx, `SELECT payload FROM messaging.outbox WHERE subject LIKE 'securemsg.events.message.created.%'`)
	if err != nil {
		return 0, err
	}
	payloads, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return 0, err
	}
	for _, p := range payloads {
		ev := &eventsv1.MessageCreated{}
		if err := proto.Unmarshal(p, ev); err != nil {
			return 0, fmt.Errorf("decode a message.created event: %w", err)
		}
		events[ev.GetMessageId()]++
		if ev.GetAutoReply() {
			autoEvents[ev.GetMessageId()]++
		}
	}
	audits := map[string]int{}
	rows, err = e.db.Query(ctx, `SELECT record_id, count(*) FROM audit.entries WHERE action = $1 AND record_id = ANY($2) GROUP BY 1`,
		int16(eventsv1.Action_ACTION_CREATE), ids)
	if err != nil {
		return 0, err
	}
	var (
		rid string
		n   int
	)
	if _, err := pgx.ForEachRow(rows, []any{&rid, &n}, func() error { audits[rid] = n; return nil }); err != nil {
		return 0, err
	}
	var errs []error
	for id := range acked {
		m, ok := stored[id]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("acknowledged message %s is not stored", id))
		case m.autoReply:
			errs = append(errs, fmt.Errorf("acknowledged message %s is stored as an auto-reply", id))
		}
	}
	for _, m := range msgs {
		wantAudits := 1
		if m.autoReply {
			wantAudits = 0
			if m.sender != "" || m.role != commonv1.Role_ROLE_UNSPECIFIED {
				errs = append(errs, fmt.Errorf("auto-reply %s has sender %q (role %v), want none", m.id, m.sender, m.role))
			}
		}
		if events[m.id] != 1 {
			errs = append(errs, fmt.Errorf("message %s (auto-reply %t) has %d message.created outbox events, want 1", m.id, m.autoReply, events[m.id]))
		} else if got := autoEvents[m.id] == 1; got != m.autoReply {
			errs = append(errs, fmt.Errorf("message %s: message.created event has auto_reply %t, want %t (messages.auto_reply)", m.id, got, m.autoReply))
		}
		if audits[m.id] != wantAudits {
			errs = append(errs, fmt.Errorf("message %s (auto-reply %t) has %d CREATE audit entries, want %d", m.id, m.autoReply, audits[m.id], wantAudits))
		}
	}
	// Each thread's auto-replies and its first patient-side message (msgs are in seq order).
	byThread, firstPatient := map[string][]storedMessage{}, map[string]int{}
	for _, m := range msgs {
		switch {
		case m.autoReply:
			byThread[m.thread] = append(byThread[m.thread], m)
			autoReplies++
		case patientSide(m.role) && firstPatient[m.thread] == 0:
			firstPatient[m.thread] = m.seq
		}
	}
	for thread, on := range autoReplyOn {
		got, first := byThread[thread], firstPatient[thread]
		want := 0
		if on && first > 0 {
			want = 1
		}
		switch {
		case len(got) != want:
			errs = append(errs, fmt.Errorf("thread %s has %d auto-replies, want %d (pool auto-reply enabled %t, first patient-side message at seq %d)",
				thread, len(got), want, on, first))
		case want == 1 && got[0].seq != first+1:
			errs = append(errs, fmt.Errorf("thread %s: auto-reply %s at seq %d, want %d (right after the first patient-side message)",
				thread, got[0].id, got[0].seq, first+1))
		}
	}
	for thread, answered := range threads {
		var got, want []string
		for _, m := range byThread[thread] {
			got = append(got, m.id)
		}
		if answered != nil {
			want = []string{answered.GetMessageId()}
			if !answered.GetAutoReply() {
				errs = append(errs, fmt.Errorf("thread %s: CreateThread answered auto-reply %s without auto_reply set", thread, answered.GetMessageId()))
			}
		}
		if !slices.Equal(got, want) {
			errs = append(errs, fmt.Errorf("thread %s: stored auto-replies %v, want %v as CreateThread answered", thread, got, want))
		}
	}
	for id := range events {
		if _, ok := stored[id]; !ok {
			errs = append(errs, fmt.Errorf("message.created event for %s, which is not stored", id))
		}
	}
	return autoReplies, errors.Join(errs...)
}

// storedMessage is a row of messaging.messages as reconcile sees it.
type storedMessage struct {
	id, thread string
	seq        int
	sender     string
	role       commonv1.Role
	autoReply  bool
}

// storedMessages reads every message, each thread's in seq order.
func (e *env) storedMessages(ctx context.Context) ([]storedMessage, error) {
	rows, err := e.db.Query(ctx, `SELECT id::text, thread_id::text, seq, sender_subject, sender_role, auto_reply
		FROM messaging.messages ORDER BY thread_id, seq`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (storedMessage, error) {
		var (
			m    storedMessage
			role int16
		)
		err := r.Scan(&m.id, &m.thread, &m.seq, &m.sender, &role, &m.autoReply)
		m.role = commonv1.Role(role)
		return m, err
	})
}

// patientSide reports whether role writes for the patient (the patient or a proxy): a
// thread's first such message is the one its pool's auto-reply answers.
func patientSide(role commonv1.Role) bool {
	return role == commonv1.Role_ROLE_PATIENT || role == commonv1.Role_ROLE_PROXY
}

// checkUploads finds every acknowledged upload stored in a visible state and byte-exact
// when clean.
func (e *env) checkUploads(ctx context.Context) error {
	e.mu.Lock()
	uploads := make(map[string]upload, len(e.uploads))
	for k, v := range e.uploads {
		uploads[k] = v
	}
	e.mu.Unlock()
	var errs []error
	for id, want := range uploads {
		var state string
		if err := e.db.QueryRow(ctx, `SELECT state FROM attachment.attachments WHERE id = $1`, id).Scan(&state); err != nil {
			errs = append(errs, fmt.Errorf("acknowledged upload %s: %w", id, err))
			continue
		}
		switch state {
		case "clean":
			got, err := e.download(ctx, want.user, id)
			if err != nil || !bytes.Equal(got, want.data) {
				errs = append(errs, fmt.Errorf("download(%s) as %s = %d bytes, %v; want the %d bytes uploaded", id, want.user, len(got), err, len(want.data)))
			}
		case "pending":
		default:
			errs = append(errs, fmt.Errorf("acknowledged upload %s is %q, want clean or pending", id, state))
		}
	}
	return errors.Join(errs...)
}

func (e *env) checkVerify(ctx context.Context) error {
	resp, err := e.audit.VerifyRange(e.as(ctx, "auditor"), &auditv1.VerifyRangeRequest{FromSequence: 1})
	if err != nil {
		return fmt.Errorf("VerifyRange: %w", err)
	}
	if !resp.GetOk() {
		return fmt.Errorf("VerifyRange failed at sequence %d: %v", resp.GetFirstFailingSequence(), resp.GetFailure())
	}
	if resp.GetVerifiedCount() == 0 {
		return errors.New("VerifyRange verified 0 records, want the test's")
	}
	return nil
}

func (e *env) bucket() (*minio.Client, error) {
	return minio.New(e.s.S3Endpoint(), &minio.Options{Creds: credentials.NewStaticV4(e.s.S3AccessKey(), e.s.S3SecretKey(), "")})
}

// checkOrphans fails while an object (or an incomplete multipart upload) has no row in a
// visible state; reconcile polls it for window plus a margin, so an orphan that outlives the
// clean-up window fails the test.
func (e *env) checkOrphans(ctx context.Context, window time.Duration) error {
	mc, err := e.bucket()
	if err != nil {
		return err
	}
	rows, err := e.db.Query(ctx, `SELECT object_name FROM attachment.attachments WHERE state IN ('uploading', 'pending', 'clean')`)
	if err != nil {
		return err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, n := range names {
		known[n] = true
	}
	var orphans []string
	for obj := range mc.ListObjects(ctx, e.s.S3Bucket(), minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			return obj.Err
		}
		if !known[obj.Key] {
			orphans = append(orphans, fmt.Sprintf("%s (age %s)", obj.Key, time.Since(obj.LastModified).Round(time.Second)))
		}
	}
	for up := range mc.ListIncompleteUploads(ctx, e.s.S3Bucket(), "", true) {
		if up.Err != nil {
			return up.Err
		}
		orphans = append(orphans, fmt.Sprintf("incomplete upload of %s (age %s)", up.Key, time.Since(up.Initiated).Round(time.Second)))
	}
	if len(orphans) > 0 {
		return fmt.Errorf("%d objects without a visible row (clean-up window %s): %v", len(orphans), window, orphans)
	}
	return nil
}

// markerNeedles are the markers as text and as the hex digits Postgres prints bytea in.
func (e *env) markerNeedles() []string {
	var out []string
	for _, m := range e.markers {
		out = append(out, m, hex.EncodeToString([]byte(m)))
	}
	return out
}

// checkMarkersInDB looks for the markers in every row of every table of every schema (a row
// cast to text shows text, arrays and json as they are and bytea as hex).
func (e *env) checkMarkersInDB(ctx context.Context) error {
	rows, err := e.db.Query(ctx, `SELECT table_schema, table_name FROM information_schema.tables
		WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')`)
	if err != nil {
		return err
	}
	type table struct{ schema, name string }
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (table, error) {
		var t table
		return t, r.Scan(&t.schema, &t.name)
	})
	if err != nil {
		return err
	}
	needles := e.markerNeedles()
	var errs []error
	for _, tb := range tables {
		var n int
		conds := make([]string, len(needles))
		args := make([]any, len(needles))
		for i, nd := range needles {
			conds[i] = fmt.Sprintf("strpos(x::text, $%d) > 0", i+1)
			args[i] = nd
		}
		q := `SELECT count(*) FROM ` + pgx.Identifier{tb.schema, tb.name}.Sanitize() + ` x WHERE ` + strings.Join(conds, " OR ")
		if err := e.db.QueryRow(ctx, q, args...).Scan(&n); err != nil {
			return fmt.Errorf("scan %s.%s: %w", tb.schema, tb.name, err)
		}
		if n > 0 {
			errs = append(errs, fmt.Errorf("%s.%s: %d rows hold a plaintext marker", tb.schema, tb.name, n))
		}
	}
	if len(tables) == 0 {
		return errors.New("no tables found")
	}
	return errors.Join(errs...)
}

// checkMarkersInBucket reads every object raw (ciphertext as stored) and looks for markers.
func (e *env) checkMarkersInBucket(ctx context.Context) error {
	mc, err := e.bucket()
	if err != nil {
		return err
	}
	var errs []error
	for obj := range mc.ListObjects(ctx, e.s.S3Bucket(), minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			return obj.Err
		}
		o, err := mc.GetObject(ctx, e.s.S3Bucket(), obj.Key, minio.GetObjectOptions{})
		if err != nil {
			return err
		}
		data, err := io.ReadAll(o)
		_ = o.Close()
		if err != nil {
			return fmt.Errorf("read object %s: %w", obj.Key, err)
		}
		if m := e.leak(data); m != "" {
			errs = append(errs, fmt.Errorf("object %s holds marker %s in plaintext", obj.Key, m))
		}
	}
	return errors.Join(errs...)
}

// checkMarkersInFiles walks every file of the private stack: Postgres's data files and WAL,
// the JetStream store, MinIO's disks, mailpit's database and every log.
func (e *env) checkMarkersInFiles() error {
	var errs []error
	err := filepath.WalkDir(e.s.Dir(), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a temp file went away while we walked
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path) //nolint:gosec // G122: the walk is of the test's own temp dir, which nothing else writes
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if m := e.leak(data); m != "" {
			rel, _ := filepath.Rel(e.s.Dir(), path)
			errs = append(errs, fmt.Errorf("%s holds marker %s in plaintext", rel, m))
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// leak returns the first marker found in data, or "".
func (e *env) leak(data []byte) string {
	for _, m := range e.markers {
		if bytes.Contains(data, []byte(m)) {
			return m
		}
	}
	return ""
}

// checkGrowth compares each service's goroutines and descriptors with the baseline.
func (e *env) checkGrowth(ctx context.Context) error {
	var errs []error
	for svc, base := range e.baseline {
		now, err := e.usage(svc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if now.goroutines > base.goroutines+goroutineSlack {
			errs = append(errs, fmt.Errorf("%s goroutines = %d, want <= %d (baseline %d + %d)", svc, now.goroutines, base.goroutines+goroutineSlack, base.goroutines, goroutineSlack))
		}
		if now.fds > base.fds+fdSlack {
			errs = append(errs, fmt.Errorf("%s fds = %d, want <= %d (baseline %d + %d)", svc, now.fds, base.fds+fdSlack, base.fds, fdSlack))
		}
	}
	return errors.Join(errs...)
}

// consumerReport describes every JetStream consumer's progress, for a failed drain.
func (e *env) consumerReport(ctx context.Context) string {
	nc, err := nats.Connect(e.s.NATSURL())
	if err != nil {
		return "consumers: " + err.Error()
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return "consumers: " + err.Error()
	}
	var out []string
	for _, stream := range []string{"SECUREMSG_EVENTS", "SECUREMSG_AUDIT"} {
		st, err := js.Stream(ctx, stream)
		if err != nil {
			out = append(out, stream+": "+err.Error())
			continue
		}
		for ci := range st.ListConsumers(ctx).Info() {
			if ci.Config.Durable == "" {
				continue // this test's own ordered consumers
			}
			out = append(out, fmt.Sprintf("%s/%s: pending %d, ack pending %d, redelivered %d, ack floor %d, delivered %d, waiting pulls %d",
				stream, ci.Name, ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.AckFloor.Stream, ci.Delivered.Stream, ci.NumWaiting))
		}
	}
	return "consumers: " + strings.Join(out, "; ")
}
