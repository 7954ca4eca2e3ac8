package wire_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	notificationv1 "github.com/securemsg/securemsg/gen/securemsg/notification/v1"
	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
)

func TestDigestPerThread(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	pat := person(t, "patient")
	addr := mailbox(t, "digest")
	e.setPrefs(t, pat, &notificationv1.Preferences{Email: emailOn(addr), DigestWindow: durationpb.New(1500 * time.Millisecond)}, "email", "digest_window")

	threadA := ""
	var last *eventsv1.MessageCreated
	for i := range 5 {
		last = e.created(t, threadA, pat.Subject)
		threadA = last.GetThreadId()
		if i == 0 {
			// the same event again, as a JetStream redelivery would bring it: must not count
			e.publish(t, "message.created."+testPool, last, "dup-"+last.GetMeta().GetEventId())
		}
	}
	e.created(t, "", pat.Subject) // one message in a second thread: a digest of its own
	got := waitMails(t, addr, 2, 20*time.Second)
	subjects := map[string]bool{}
	for _, m := range got {
		subjects[m.Subject] = true
	}
	for _, want := range []string{"5 new secure messages from " + testOrg, "1 new secure message from " + testOrg} {
		if !subjects[want] {
			t.Errorf("digest subjects = %v, want %q", subjects, want)
		}
	}
	// The sink shows a mail as soon as its DATA is accepted, a moment before the dispatcher
	// records the delivery as sent: wait for the record.
	testkit.WaitFor(t, 10*time.Second, "both digests recorded as sent", func() bool {
		return e.countDeliveries(t, pat.Subject, domain.StatusSent) >= 2
	})
	var latest string
	if err := e.h.Proc.Pool.QueryRow(t.Context(), `SELECT message_id FROM deliveries WHERE thread_id = $1 AND kind = 2 AND status = 2`, threadA).Scan(&latest); err != nil || latest != last.GetMessageId() {
		t.Errorf("digest message_id = %q, %v; want the latest message %s", latest, err, last.GetMessageId())
	}
	// Nothing else may follow: one alert per thread per window.
	if n := e.countDeliveries(t, pat.Subject, domain.StatusSent); n != 2 {
		t.Errorf("sent deliveries = %d, want 2", n)
	}
	if got := mails(t, addr); len(got) != 2 {
		t.Errorf("mails = %d, want 2", len(got))
	}
}

func TestRemindersCancelledByRead(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	pat := person(t, "patient")
	addr := mailbox(t, "remind")
	e.setPrefs(t, pat, &notificationv1.Preferences{Email: emailOn(addr), RemindersEnabled: true, ReminderAfter: durationpb.New(2 * time.Second)},
		"email", "reminders_enabled", "reminder_after")
	read := e.created(t, "", pat.Subject)
	unread := e.created(t, "", pat.Subject)
	waitMails(t, addr, 2, 20*time.Second) // the two new-message alerts
	e.read(t, pat.Subject, read.GetThreadId(), read.GetMessageId(), 0)
	testkit.WaitFor(t, 10*time.Second, "reminder of the read thread cancelled", func() bool {
		var st int
		_ = e.h.Proc.Pool.QueryRow(t.Context(), `SELECT status FROM reminders WHERE message_id = $1`, read.GetMessageId()).Scan(&st)
		return st == 2
	})
	got := waitMails(t, addr, 3, 20*time.Second)
	var reminders []mail
	for _, m := range got {
		if strings.HasPrefix(m.Subject, "Reminder:") {
			reminders = append(reminders, m)
		}
	}
	if len(reminders) != 1 {
		t.Fatalf("reminder mails = %d, want 1", len(reminders))
	}
	var kind int
	if err := e.h.Proc.Pool.QueryRow(t.Context(), `SELECT kind FROM deliveries WHERE message_id = $1 AND kind = 3 AND status = 2`, unread.GetMessageId()).Scan(&kind); err != nil {
		t.Errorf("reminder delivery for the unread message: %v", err)
	}
}

func TestRetriesBackoffAndDeadLetter(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	ctx := t.Context()
	e.hook.status = func(n int) int {
		if n <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	e.sms.status = func(int) int { return http.StatusInternalServerError }
	flaky, dead := person(t, "clinician"), person(t, "patient")
	e.setPrefs(t, flaky, &notificationv1.Preferences{Webhook: &notificationv1.ChannelPreference{Enabled: true, Address: e.hook.srv.URL + "/care-team"}}, "webhook")
	e.setPrefs(t, dead, &notificationv1.Preferences{Sms: &notificationv1.ChannelPreference{Enabled: true, Address: "+15550009999"}}, "sms")
	ev := e.created(t, "", flaky.Subject, dead.Subject)

	list := func(who servicetest.Persona) *notificationv1.Delivery {
		resp, err := e.client.ListDeliveries(e.h.As(t, ctx, who), &notificationv1.ListDeliveriesRequest{MessageId: ev.GetMessageId()})
		if err != nil || len(resp.GetDeliveries()) != 1 {
			return nil
		}
		return resp.GetDeliveries()[0]
	}
	var d *notificationv1.Delivery
	testkit.WaitFor(t, 20*time.Second, "webhook delivery sent after retries", func() bool {
		d = list(flaky)
		return d.GetStatus() == notificationv1.DeliveryStatus_DELIVERY_STATUS_SENT
	})
	wantStatuses := []notificationv1.DeliveryStatus{notificationv1.DeliveryStatus_DELIVERY_STATUS_RETRYING, notificationv1.DeliveryStatus_DELIVERY_STATUS_RETRYING, notificationv1.DeliveryStatus_DELIVERY_STATUS_SENT}
	if len(d.GetAttempts()) != 3 {
		t.Fatalf("attempts = %v, want 3", d.GetAttempts())
	}
	for i, a := range d.GetAttempts() {
		if a.GetStatus() != wantStatuses[i] || a.GetAttempt() != int32(i+1) {
			t.Errorf("attempt %d = %v, want status %s", i+1, a, wantStatuses[i])
		}
		if i < 2 && (a.GetErrorCode() != "webhook_status_503" || a.GetNextAttemptTime() == nil) {
			t.Errorf("attempt %d error = %q next = %v, want webhook_status_503 with a next attempt", i+1, a.GetErrorCode(), a.GetNextAttemptTime())
		}
	}
	// The backoff doubles: the second wait is at least the base doubled.
	if gap := d.GetAttempts()[2].GetStartTime().AsTime().Sub(d.GetAttempts()[1].GetFinishTime().AsTime()); gap < 100*time.Millisecond {
		t.Errorf("second retry after %s, want >= 100ms (exponential backoff)", gap)
	}
	keys := map[string]bool{}
	for _, r := range e.hook.all() {
		keys[r.Headers.Get("Idempotency-Key")] = true
	}
	if len(keys) != 1 || !keys[d.GetDeliveryId()] {
		t.Errorf("webhook Idempotency-Keys = %v, want only %s", keys, d.GetDeliveryId())
	}

	testkit.WaitFor(t, 20*time.Second, "sms delivery dead-lettered", func() bool {
		d = list(dead)
		return d.GetStatus() == notificationv1.DeliveryStatus_DELIVERY_STATUS_FAILED
	})
	if len(d.GetAttempts()) != 4 || d.GetAttempts()[3].GetErrorCode() != "sms_status_500" {
		t.Errorf("dead-lettered attempts = %v, want 4 ending in sms_status_500", d.GetAttempts())
	}
	testkit.WaitFor(t, 10*time.Second, "ALERT_ABANDONED audit record", func() bool {
		recs, _ := auditRecords(t, e.h)
		for _, r := range recs {
			if r.GetAction() == eventsv1.Action_ACTION_ALERT_ABANDONED && r.GetActor().GetOnBehalfOf() == dead.Subject {
				return r.GetReasonCode() == "sms.sms_status_500" && r.GetRecordId() == ev.GetMessageId()
			}
		}
		return false
	})
}

// TestCrashBetweenSendAndRecord covers the one window claim-then-send leaves open: a worker
// that dies after the provider accepted but before the outcome was recorded. Email is not
// resent (at most once); the webhook is resent with the same Idempotency-Key.
func TestCrashBetweenSendAndRecord(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	ctx := t.Context()
	pat, care := person(t, "patient"), person(t, "clinician")
	addr := mailbox(t, "crash")
	e.setPrefs(t, pat, &notificationv1.Preferences{Email: emailOn(addr)}, "email")
	e.setPrefs(t, care, &notificationv1.Preferences{Webhook: &notificationv1.ChannelPreference{Enabled: true, Address: e.hook.srv.URL + "/hook"}}, "webhook")
	// Quiet hours spanning the whole day keep the new deliveries pending, so the test can turn
	// them into crashed claims before any worker sends them.
	allDay := &notificationv1.QuietHours{Enabled: true, StartMinute: 0, EndMinute: 1439, TimeZone: "UTC"}
	e.setPrefs(t, pat, &notificationv1.Preferences{QuietHours: allDay}, "quiet_hours")
	e.setPrefs(t, care, &notificationv1.Preferences{QuietHours: allDay}, "quiet_hours")
	ev := e.created(t, "", pat.Subject, care.Subject)
	// Wait until the dispatcher has deferred both deliveries past the quiet hours: from then on
	// it leaves them alone, so turning them into crashed claims cannot race with its own
	// claim-and-release of the same rows.
	testkit.WaitFor(t, 10*time.Second, "deliveries created and deferred by quiet hours", func() bool {
		var n int
		err := e.h.Proc.Pool.QueryRow(ctx, `SELECT count(*) FROM deliveries WHERE message_id = $1 AND status = 1
			AND next_attempt_at > now() + interval '1 minute'`, ev.GetMessageId()).Scan(&n)
		return err == nil && n == 2
	})
	// End the quiet hours before the claims go stale: the deferred rows stay untouched until
	// they fall due, and the recovered webhook retry is not deferred again by a quiet window
	// the test has not cleared yet.
	e.setPrefs(t, pat, &notificationv1.Preferences{QuietHours: &notificationv1.QuietHours{}}, "quiet_hours")
	e.setPrefs(t, care, &notificationv1.Preferences{QuietHours: &notificationv1.QuietHours{}}, "quiet_hours")
	tag, err := e.h.Proc.Pool.Exec(ctx, `UPDATE deliveries SET status = 100, attempts = 1, claimed_until = now() - interval '1 second'
		WHERE message_id = $1 AND status = 1`, ev.GetMessageId())
	if err != nil || tag.RowsAffected() != 2 {
		t.Fatalf("simulate crashed claims: %v, %d rows, want 2", err, tag.RowsAffected())
	}
	testkit.WaitFor(t, 15*time.Second, "stale claims recovered", func() bool {
		return e.countDeliveries(t, pat.Subject, domain.StatusFailed) == 1 && e.countDeliveries(t, care.Subject, domain.StatusSent) == 1
	})
	if got := mails(t, addr); len(got) != 0 {
		t.Errorf("mails after a crashed email claim = %d, want 0 (at most once)", len(got))
	}
	if got := e.hook.all(); len(got) != 1 {
		t.Errorf("webhook posts after a crashed claim = %d, want 1 (retried once)", len(got))
	}
}

func TestTemplatesAPI(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	ctx := t.Context()
	admin := e.h.As(t, ctx, servicetest.Admin)
	bad := &notificationv1.Template{Kind: notificationv1.NotificationKind_NOTIFICATION_KIND_NEW_MESSAGE, Channel: notificationv1.Channel_CHANNEL_EMAIL,
		Locale: "en-US", SubjectTemplate: "Message about {{.PatientName}}", BodyTemplate: "{{.MessageBody}}"}
	_, err := e.client.UpdateTemplate(admin, &notificationv1.UpdateTemplateRequest{Template: bad})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), ".PatientName") || !strings.Contains(err.Error(), ".MessageBody") {
		t.Fatalf("UpdateTemplate(forbidden fields) = %v, want InvalidArgument naming the fields", err)
	}
	good := &notificationv1.Template{Kind: notificationv1.NotificationKind_NOTIFICATION_KIND_NEW_MESSAGE, Channel: notificationv1.Channel_CHANNEL_EMAIL,
		Locale: "en-US", SubjectTemplate: "Custom alert from {{.OrganisationName}}", BodyTemplate: "Log in at {{.PortalLink}}"}
	if _, err := e.client.UpdateTemplate(e.h.As(t, ctx, servicetest.Patient), &notificationv1.UpdateTemplateRequest{Template: good}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("UpdateTemplate(patient) = %v, want PermissionDenied", err)
	}
	resp, err := e.client.UpdateTemplate(admin, &notificationv1.UpdateTemplateRequest{Template: good})
	if err != nil || resp.GetTemplate().GetVersion() != 1 || resp.GetTemplate().GetUpdatedBySubject() != servicetest.Admin.Subject {
		t.Fatalf("UpdateTemplate(admin) = %v, %v", resp, err)
	}
	stale := proto.CloneOf(good)
	stale.Etag = "7"
	if _, err := e.client.UpdateTemplate(admin, &notificationv1.UpdateTemplateRequest{Template: stale}); status.Code(err) != codes.Aborted {
		t.Errorf("UpdateTemplate(stale etag) = %v, want Aborted", err)
	}
	list, err := e.client.ListTemplates(admin, &notificationv1.ListTemplatesRequest{Channel: notificationv1.Channel_CHANNEL_EMAIL})
	if err != nil || len(list.GetTemplates()) != 3 {
		t.Fatalf("ListTemplates(email) = %v, %v; want 3", list, err)
	}
	pat := person(t, "patient")
	addr := mailbox(t, "tmpl")
	e.setPrefs(t, pat, &notificationv1.Preferences{Email: emailOn(addr)}, "email")
	e.created(t, "", pat.Subject)
	got := waitMails(t, addr, 1, 20*time.Second)
	if got[0].Subject != "Custom alert from "+testOrg {
		t.Errorf("subject = %q, want the updated template", got[0].Subject)
	}
}
