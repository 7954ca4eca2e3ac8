package wire_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	notificationv1 "github.com/securemsg/securemsg/gen/securemsg/notification/v1"
	"github.com/securemsg/securemsg/services/internal/testkit"
)

// TestNoPHIInAlerts puts marker strings wherever an event or a preference can carry text —
// the stand-ins for a message's subject, body, file names and the patient's name — and proves
// that no email, SMS, push or webhook payload contains any of them, while every channel did
// deliver. Contact points are markers too: none may reach another channel's payload, a raw
// database row or an audit record.
func TestNoPHIInAlerts(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	const (
		subjectMarker = "PHIMARKERSUBJECTq7"
		bodyMarker    = "PHIMARKERBODYw3"
		fileMarker    = "PHIMARKERFILEk9"
		nameMarker    = "PHIMARKERNAMEz5"
	)
	markers := []string{subjectMarker, bodyMarker, fileMarker, nameMarker}
	pat := person(t, "patient")
	addr := mailbox(t, "phimarkeraddr")
	phone, token := "+15557770123", "fcm:PHIMARKERTOKENx1abcdef"
	e.setPrefs(t, pat, &notificationv1.Preferences{
		Email: emailOn(addr), Sms: &notificationv1.ChannelPreference{Enabled: true, Address: phone},
		Push:    &notificationv1.ChannelPreference{Enabled: true, Address: token},
		Webhook: &notificationv1.ChannelPreference{Enabled: true, Address: e.hook.srv.URL + "/PHIMARKERURLp2"},
	}, "email", "sms", "push", "webhook")

	// Free-text and id fields of the event carry the markers (a producer bug, or an attack).
	ev := &eventsv1.MessageCreated{
		Meta: &eventsv1.EventMeta{EventId: uuid.NewString(), OccurredAt: timestamppb.Now(), Producer: commonv1.Component_COMPONENT_MESSAGING,
			RequestId: subjectMarker},
		ThreadId: uuid.NewString(), MessageId: uuid.NewString(), PoolId: testPool, PatientId: nameMarker,
		SenderSubject: "sender-" + bodyMarker, CorrectsMessageId: fileMarker, AttachmentCount: 2,
		RecipientSubjects: []string{pat.Subject},
	}
	e.publish(t, "message.created."+testPool, ev, ev.Meta.EventId)
	// An event whose ids are text is refused outright.
	bad := &eventsv1.MessageCreated{Meta: &eventsv1.EventMeta{EventId: uuid.NewString(), OccurredAt: timestamppb.Now()},
		ThreadId: subjectMarker, MessageId: bodyMarker, PoolId: testPool, RecipientSubjects: []string{pat.Subject}}
	e.publish(t, "message.created."+testPool, bad, bad.Meta.EventId)

	got := waitMails(t, addr, 1, 20*time.Second)
	testkit.WaitFor(t, 20*time.Second, "sms, push and webhook alerts", func() bool {
		return len(e.sms.all()) >= 1 && len(e.push.all()) >= 1 && len(e.hook.all()) >= 1
	})
	payloads := map[string]string{}
	for _, m := range got {
		payloads["email "+m.ID] = m.Raw
	}
	for name, r := range map[string]*receiver{"sms": e.sms, "push": e.push, "webhook": e.hook} {
		for i, q := range r.all() {
			payloads[name+" "+string(rune('0'+i))] = q.Body + "\n" + strings.Join(headerLines(q), "\n")
		}
	}
	for name, p := range payloads {
		for _, m := range markers {
			if strings.Contains(p, m) {
				t.Errorf("%s payload contains marker %s", name, m)
			}
		}
	}
	// Contact points appear only where they address the alert.
	for name, p := range payloads {
		if !strings.HasPrefix(name, "email") && strings.Contains(p, addr) {
			t.Errorf("%s payload contains the email address", name)
		}
		if !strings.HasPrefix(name, "sms") && strings.Contains(p, phone) {
			t.Errorf("%s payload contains the phone number", name)
		}
		if strings.Contains(p, "PHIMARKERURL") {
			t.Errorf("%s payload contains the webhook URL", name)
		}
	}
	if got := len(mails(t, addr)); got != 1 {
		t.Errorf("mails = %d, want 1 (the malformed event must not alert)", got)
	}
	var rows string
	if err := e.h.Proc.Pool.QueryRow(t.Context(), `SELECT coalesce(string_agg(t::text, '|'), '') FROM (
		SELECT p::text AS t FROM preferences p UNION ALL SELECT d::text FROM deliveries d UNION ALL SELECT a::text FROM delivery_attempts a
		UNION ALL SELECT encode(o.payload, 'escape') FROM outbox o) x`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{addr, phone, "PHIMARKERTOKEN", "PHIMARKERURL", subjectMarker, bodyMarker, fileMarker} {
		if strings.Contains(rows, secret) {
			t.Errorf("database rows or outbox hold %q", secret)
		}
	}
}

func headerLines(r recorded) []string {
	var out []string
	for k, vs := range r.Headers {
		for _, v := range vs {
			out = append(out, k+": "+v)
		}
	}
	return out
}
