package e2e_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/minio/minio-go/v7"

	auditv1 "github.com/securemsg/securemsg/gen/securemsg/audit/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"

	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/privstack"
)

// drillThreads is small by default, so the drill runs in every `go test` (make test) in
// bounded time; `make drill` writes more.
var drillThreads = flag.Int("drill.threads", 2, "threads (each with an attachment and replies) written before the backup (make drill: more)")

// The schemas the drill backs up: one per service (each holds its outbox and goose tables).
var drillSchemas = []string{"messaging", "attachment", "notification", "audit"}

const (
	restoredDB     = "securemsg_restored"
	restoredBucket = "securemsg-attachments-restored"
)

// TestDrill is the backup and restore drill, whole: the databases, the bucket and the key
// store. It runs in every `go test` of this package (so in `make test`) with -drill.threads 2,
// and bigger through `make drill` (scripts/drill.sh). On a private stack it writes threads with
// attachments, rotating every Transit key after the first thread so the data spans key
// versions; backs up the service schemas (pg_dump), the bucket (mirrored through minio-go) and
// the key store (a Transit snapshot through the vault api's Sys().RaftSnapshot, the call an
// operator makes against Vault or OpenBao); then loses the key store: the original Transit
// server is stopped and a fresh, empty one started on another port and data dir, on which a
// stored wrapped DEK does not unwrap (the proof that the key store has to be restored). It
// restores the dump into a fresh database and the snapshot into the fresh Transit
// (RaftSnapshotRestore with force, as into a rebuilt Vault cluster), checks every key kept its
// versions and bounds and the sampled DEKs unwrap to the same keys, restarts the four services
// on the restored database, bucket and Transit, reads every thread and attachment back through
// the services byte-exact, and checks that the audit log continues across the restore: the old
// range verifies, and new records append to it and chain on.
func TestDrill(t *testing.T) {
	began := time.Now()
	n := 0
	step := func(format string, args ...any) {
		n++
		fmt.Printf("\n%2d. %s\n", n, fmt.Sprintf(format, args...))
	}
	ok := func(format string, args ...any) { fmt.Printf("    ✓ %s\n", fmt.Sprintf(format, args...)) }
	fail := func(format string, args ...any) {
		t.Helper()
		fmt.Printf("    ✗ %s\n", fmt.Sprintf(format, args...))
		t.Fatalf(format, args...)
	}

	step("start a private stack (Postgres, NATS, Transit, MinIO, clamd, mailpit, four services)")
	e := newEnv(t, privstack.Options{Services: privstack.AllServices})
	ctx := t.Context()
	ok("stack in %s", e.s.Dir())

	// The pool's settings say whether each new thread gets its automatic reply (a system
	// message right after the patient's first); the drill reads it back like any other.
	var autoReplyOn bool
	if err := e.db.QueryRow(ctx, `SELECT coalesce((SELECT auto_reply_enabled FROM messaging.pool_settings WHERE pool_id = $1), false)`,
		pool).Scan(&autoReplyOn); err != nil {
		fail("read %s's settings: %v", pool, err)
	}
	step("write %d threads, each with a scanned attachment and two replies (auto-reply enabled in %s: %t)", *drillThreads, pool, autoReplyOn)
	type sample struct {
		subject    string
		messages   []drillMessage
		attachment string
		file       []byte
	}
	samples := map[string]*sample{}
	autoReplies := 0
	vc, err := newVaultClient(e.s.VaultAddr(), e.s.VaultToken())
	if err != nil {
		fail("%v", err)
	}
	var rotated []string
	for i := range *drillThreads {
		if i == 1 {
			// Every key gets a second version: the threads from here on are wrapped under v2, the
			// first under v1, and the restored key store must unwrap both.
			if rotated, err = rotateTransitKeys(ctx, vc); err != nil {
				fail("%v", err)
			}
		}
		file := samplePDF(fmt.Sprintf("%s-%d", e.markers[3], i), (i+1)*24<<10)
		a, err := e.upload(ctx, file, 16<<10, nil)
		if err != nil {
			fail("UploadAttachment: %v", err)
		}
		if err := e.waitClean(ctx, a.GetAttachmentId()); err != nil {
			fail("%v", err)
		}
		thread, _, err := e.createThread(ctx, a.GetAttachmentId())
		if err != nil {
			fail("CreateThread: %v", err)
		}
		sm := &sample{subject: "question " + e.markers[0], messages: []drillMessage{{body: "body " + e.markers[1]}}, attachment: a.GetAttachmentId(), file: file}
		switch auto := e.ackedThreads()[thread]; {
		case autoReplyOn && auto == nil:
			fail("CreateThread(%s) answered no auto-reply; want one, as %s's settings enable it", thread, pool)
		case !autoReplyOn && auto != nil:
			fail("CreateThread(%s) answered auto-reply %s; want none, as %s's settings disable it", thread, auto.GetMessageId(), pool)
		case auto != nil:
			if !auto.GetAutoReply() || auto.GetBody() == "" {
				fail("CreateThread(%s) answered auto-reply %s with auto_reply %t and %d bytes of body; want a flagged, non-empty one",
					thread, auto.GetMessageId(), auto.GetAutoReply(), len(auto.GetBody()))
			}
			sm.messages = append(sm.messages, drillMessage{body: auto.GetBody(), autoReply: true})
			autoReplies++
		}
		for _, user := range []string{"clinician", "patient"} {
			if _, err := e.send(ctx, user, thread, uuid.NewString()); err != nil {
				fail("SendMessage as %s: %v", user, err)
			}
			sm.messages = append(sm.messages, drillMessage{body: "reply " + e.markers[1]})
		}
		samples[thread] = sm
	}
	if err := eventually(ctx, 45*time.Second, 250*time.Millisecond, e.outboxDrained); err != nil {
		fail("events and audit records did not drain: %v", err)
	}
	oldVerify, err := e.audit.VerifyRange(e.as(ctx, "auditor"), &auditv1.VerifyRangeRequest{FromSequence: 1})
	if err != nil || !oldVerify.GetOk() {
		fail("VerifyRange before the backup = %v, %v; want ok", oldVerify, err)
	}
	oldSize := oldVerify.GetVerifiedCount()
	ok("%d threads, %d attachments, %d auto-replies; audit log of %d records verifies", len(samples), len(samples), autoReplies, oldSize)
	if len(rotated) > 0 {
		ok("Transit keys rotated after the first thread: %v", rotated)
	}

	step("back up: pg_dump of schemas %v, mirror the bucket, snapshot the key store", drillSchemas)
	bin, err := privstack.PostgresBinDir()
	if err != nil {
		fail("%v", err)
	}
	dump := filepath.Join(t.TempDir(), "securemsg.dump")
	args := []string{"--format=custom", "--file=" + dump, "--dbname=" + e.s.PostgresURL()}
	for _, s := range drillSchemas {
		args = append(args, "--schema="+s)
	}
	if out, err := exec.CommandContext(ctx, filepath.Join(bin, "pg_dump"), args...).CombinedOutput(); err != nil {
		fail("pg_dump: %v\n%s", err, out)
	}
	ok("pg_dump wrote %s", dump)
	// The dump is taken first: every object a dumped row names exists by the time the bucket
	// is copied (objects added since have no row in the dump, and are not restored).
	mc, err := e.bucket()
	if err != nil {
		fail("%v", err)
	}
	copied, bytesCopied, err := mirrorBucket(ctx, mc, e.s.S3Bucket(), restoredBucket)
	if err != nil {
		fail("mirror the bucket: %v", err)
	}
	ok("mirrored %d objects (%d bytes) into %s", copied, bytesCopied, restoredBucket)
	// The key store last: every wrapped DEK in the dump was made under a key version the
	// snapshot holds (a key rotated after the dump only adds versions).
	snapFile := filepath.Join(t.TempDir(), "transit.snap")
	snapSize, err := saveVaultSnapshot(ctx, vc, snapFile)
	if err != nil {
		fail("take the Transit snapshot: %v", err)
	}
	keysBefore, err := transitKeyStates(ctx, vc)
	if err != nil || len(keysBefore) == 0 {
		fail("read the Transit keys: %d keys, %v; want the services' keys", len(keysBefore), err)
	}
	// Stored wrapped DEKs to follow across the restore: the oldest thread's (v1) and the
	// newest's (after the rotation), and an attachment's. What each unwraps to now is the
	// reference (kept as a fingerprint only).
	samplesDEK, err := drillWrappedDEKs(ctx, e.db)
	if err != nil {
		fail("%v", err)
	}
	dekBefore := map[int][32]byte{}
	versions := map[string]bool{}
	for i, w := range samplesDEK {
		if dekBefore[i], err = unwrapFingerprint(ctx, vc, w); err != nil {
			fail("unwrap the %s on the original Transit: %v", w.what, err)
		}
		versions[w.version()] = true
	}
	if *drillThreads > 1 && len(versions) < 2 {
		fail("sampled wrapped DEKs are all under %v; want two key versions (the rotation after the first thread)", slices.Sorted(maps.Keys(versions)))
	}
	ok("Transit snapshot of %d bytes (%d keys) in %s; %d stored wrapped DEKs sampled, key versions %v",
		snapSize, len(keysBefore), snapFile, len(samplesDEK), slices.Sorted(maps.Keys(versions)))

	step("lose the key store: stop the original Transit, start a fresh, empty one")
	if err := e.s.Vault.Stop(); err != nil {
		fail("stop the original Transit: %v", err)
	}
	fresh := testkit.StartTransit(t)
	fc, err := newVaultClient(fresh.Addr(), fresh.Token())
	if err != nil {
		fail("%v", err)
	}
	if keys, err := transitKeyStates(ctx, fc); err != nil || len(keys) != 0 {
		fail("keys on the fresh Transit = %d, %v; want none", len(keys), err)
	}
	// Without the restore the data is lost: the fresh key store unwraps none of it.
	for _, w := range samplesDEK {
		if _, err := unwrapFingerprint(ctx, fc, w); err == nil {
			fail("the %s unwrapped on the fresh, empty Transit; want an error (the drill would not need the key store)", w.what)
		}
	}
	ok("fresh Transit at %s (original at %s stopped); none of the %d sampled wrapped DEKs unwraps on it", fresh.Addr(), e.s.VaultAddr(), len(samplesDEK))

	step("restore into a fresh database %s", restoredDB)
	if _, err := e.db.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{restoredDB}.Sanitize()); err != nil {
		fail("create database: %v", err)
	}
	restoredURL := e.s.PostgresDatabaseURL(restoredDB)
	if out, err := exec.CommandContext(ctx, filepath.Join(bin, "pg_restore"), "--exit-on-error", "--no-owner",
		"--dbname="+restoredURL, dump).CombinedOutput(); err != nil {
		fail("pg_restore: %v\n%s", err, out)
	}
	rdb, err := pgxpool.New(ctx, restoredURL)
	if err != nil {
		fail("%v", err)
	}
	t.Cleanup(rdb.Close)
	var restoredMessages int
	if err := rdb.QueryRow(ctx, `SELECT count(*) FROM messaging.messages`).Scan(&restoredMessages); err != nil {
		fail("count restored messages: %v", err)
	}
	ok("pg_restore done; %d messages in the restored schema", restoredMessages)

	step("restore the key store into the fresh Transit (Sys().RaftSnapshotRestore, force)")
	if err := restoreVaultSnapshot(ctx, fc, snapFile); err != nil {
		fail("%v", err)
	}
	keysAfter, err := transitKeyStates(ctx, fc)
	if err != nil {
		fail("read the restored Transit keys: %v", err)
	}
	if d := diffKeyStates(keysBefore, keysAfter); d != "" {
		fail("restored Transit keys differ from the backed-up ones: %s", d)
	}
	// The DEKs are read from the restored database: the pair the services will use.
	restoredDEK, err := drillWrappedDEKs(ctx, rdb)
	if err != nil {
		fail("%v", err)
	}
	if !slices.Equal(restoredDEK, samplesDEK) {
		fail("wrapped DEKs in the restored database differ from the backed-up ones")
	}
	for i, w := range restoredDEK {
		got, err := unwrapFingerprint(ctx, fc, w)
		if err != nil || got != dekBefore[i] {
			fail("unwrap the %s on the restored Transit: same key %t, %v; want the key it wrapped before", w.what, got == dekBefore[i], err)
		}
	}
	ok("%d keys with every version and bound as backed up; the %d sampled wrapped DEKs unwrap to the same keys", len(keysAfter), len(restoredDEK))

	step("restart the four services against the restored database, bucket and key store")
	for _, svc := range e.s.Services() {
		if err := e.s.Service(svc).Stop(); err != nil {
			fail("stop %s: %v", svc, err)
		}
	}
	for _, svc := range e.s.Services() {
		env := map[string]string{"SECUREMSG_PG_URL": restoredURL, "SECUREMSG_VAULT_ADDR": fresh.Addr(), "SECUREMSG_VAULT_TOKEN": fresh.Token()}
		if svc == "attachment" {
			env["SECUREMSG_S3_BUCKET"] = restoredBucket
		}
		if err := e.s.Service(svc).SetEnv(env); err != nil {
			fail("%v", err)
		}
		if err := e.s.Service(svc).Start(); err != nil {
			fail("start %s: %v", svc, err)
		}
	}
	// From here on the checks read the restored database.
	e.db = rdb
	ok("all SERVING on %s, bucket %s and the restored Transit", restoredDB, restoredBucket)

	step("read back every thread and attachment through the services (byte-exact)")
	for thread, want := range samples {
		var got *messagingv1.GetThreadResponse
		err := eventually(ctx, 30*time.Second, 250*time.Millisecond, func(ctx context.Context) error {
			got, err = e.messaging.GetThread(e.as(ctx, "patient"), &messagingv1.GetThreadRequest{ThreadId: thread})
			return err
		})
		if err != nil {
			fail("GetThread(%s) after restore: %v", thread, err)
		}
		var messages []drillMessage
		for _, m := range got.GetMessages() {
			messages = append(messages, drillMessage{body: m.GetBody(), autoReply: m.GetAutoReply()})
		}
		if got.GetThread().GetSubject() != want.subject || !slices.Equal(messages, want.messages) {
			fail("GetThread(%s) after restore: subject %q, messages %+v; want %q, %+v", thread, got.GetThread().GetSubject(), messages, want.subject, want.messages)
		}
		file, err := e.download(ctx, "patient", want.attachment)
		if err != nil || !bytes.Equal(file, want.file) {
			fail("DownloadAttachment(%s) after restore = %d bytes, %v; want the %d bytes uploaded", want.attachment, len(file), err, len(want.file))
		}
	}
	ok("%d threads (subject and every body, %d auto-replies among them) and %d attachments read back identical", len(samples), autoReplies, len(samples))

	step("the audit log continues across the restore")
	old, err := e.audit.VerifyRange(e.as(ctx, "auditor"), &auditv1.VerifyRangeRequest{FromSequence: 1, ToSequence: oldSize})
	if err != nil || !old.GetOk() || old.GetVerifiedCount() != oldSize {
		fail("VerifyRange(1..%d) on the restored log = %v, %v; want ok over %d records", oldSize, old, err, oldSize)
	}
	ok("old range 1..%d verifies", oldSize)
	// The reads above were audited: they append after the restored records.
	var all *auditv1.VerifyRangeResponse
	err = eventually(ctx, 30*time.Second, 250*time.Millisecond, func(ctx context.Context) error {
		all, err = e.audit.VerifyRange(e.as(ctx, "auditor"), &auditv1.VerifyRangeRequest{FromSequence: 1})
		if err != nil {
			return err
		}
		if all.GetVerifiedCount() <= oldSize {
			return fmt.Errorf("%d records, no new ones yet", all.GetVerifiedCount())
		}
		return nil
	})
	if err != nil || !all.GetOk() {
		fail("VerifyRange(1..) after new records = %v, %v; want ok over more than %d records", all, err, oldSize)
	}
	var linked bool
	if err := rdb.QueryRow(ctx, `SELECT n.prev_chain_hash = o.chain_hash FROM audit.entries n JOIN audit.entries o ON o.sequence = n.sequence - 1
		WHERE n.sequence = $1`, int64(oldSize)+1).Scan(&linked); err != nil || !linked {
		fail("entry %d chains on entry %d: %v, %v; want true", oldSize+1, oldSize, linked, err)
	}
	ok("%d new records appended (sequence %d on), entry %d chains on entry %d; 1..%d verifies",
		all.GetVerifiedCount()-oldSize, oldSize+1, oldSize+1, oldSize, all.GetVerifiedCount())

	step("the restored data holds no plaintext")
	if err := e.checkMarkersInDB(ctx); err != nil {
		fail("%v", err)
	}
	ok("no PHI marker in any column of %s", restoredDB)
	fmt.Printf("\ndrill passed in %s.\n", time.Since(began).Round(time.Millisecond))
}

// drillWrappedDEKs picks stored wrapped DEKs to follow across the restore: the first and the
// last thread's (under v1 and, after the rotation, v2) and the first attachment's.
func drillWrappedDEKs(ctx context.Context, db *pgxpool.Pool) ([]wrappedDEK, error) {
	var out []wrappedDEK
	for _, q := range []struct{ what, key, sql string }{
		{"first thread's DEK", "securemsg-messaging", `SELECT wrapped_dek FROM messaging.threads WHERE wrapped_dek IS NOT NULL ORDER BY created_at, id LIMIT 1`},
		{"last thread's DEK", "securemsg-messaging", `SELECT wrapped_dek FROM messaging.threads WHERE wrapped_dek IS NOT NULL ORDER BY created_at DESC, id DESC LIMIT 1`},
		{"first attachment's DEK", "securemsg-attachment", `SELECT wrapped_dek FROM attachment.attachments WHERE wrapped_dek IS NOT NULL ORDER BY create_time, id LIMIT 1`},
	} {
		w := wrappedDEK{what: q.what, key: q.key}
		if err := db.QueryRow(ctx, q.sql).Scan(&w.wrapped); err != nil {
			return nil, fmt.Errorf("read the %s: %w", q.what, err)
		}
		out = append(out, w)
	}
	return out, nil
}

// drillMessage is what the drill compares of a message across the restore: its body, byte for
// byte, and whether it is the pool's automatic reply (whose body the CreateThread answer gave).
type drillMessage struct {
	body      string
	autoReply bool
}

// mirrorBucket copies every object of src into dst (created if missing) through the client,
// as a backup to another store would: read and write, not a server-side copy.
func mirrorBucket(ctx context.Context, mc *minio.Client, src, dst string) (objects int, size int64, err error) {
	exists, err := mc.BucketExists(ctx, dst)
	if err != nil {
		return 0, 0, err
	}
	if !exists {
		if err := mc.MakeBucket(ctx, dst, minio.MakeBucketOptions{}); err != nil {
			return 0, 0, err
		}
	}
	for obj := range mc.ListObjects(ctx, src, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			return objects, size, obj.Err
		}
		r, err := mc.GetObject(ctx, src, obj.Key, minio.GetObjectOptions{})
		if err != nil {
			return objects, size, err
		}
		info, err := mc.PutObject(ctx, dst, obj.Key, r, obj.Size, minio.PutObjectOptions{ContentType: obj.ContentType})
		_ = r.Close()
		if err != nil {
			return objects, size, fmt.Errorf("copy %s: %w", obj.Key, err)
		}
		if info.Size != obj.Size {
			return objects, size, fmt.Errorf("copy %s: %d of %d bytes", obj.Key, info.Size, obj.Size)
		}
		objects++
		size += obj.Size
	}
	return objects, size, nil
}
