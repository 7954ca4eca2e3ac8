package wire_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	notificationv1 "github.com/securemsg/securemsg/gen/securemsg/notification/v1"
	"github.com/securemsg/securemsg/services/internal/testkit"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
)

func TestPreferencesAPI(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	ctx := t.Context()
	pat := person(t, "patient")
	addr := mailbox(t, "prefs")
	phone := "+15550001234"

	got, err := e.client.GetPreferences(e.h.As(t, ctx, pat), &notificationv1.GetPreferencesRequest{})
	if err != nil {
		t.Fatalf("GetPreferences() = %v", err)
	}
	if got.GetPreferences().GetEmail().GetEnabled() || got.GetPreferences().GetSubject() != pat.Subject {
		t.Fatalf("GetPreferences() defaults = %v", got.GetPreferences())
	}

	saved := e.setPrefs(t, pat, &notificationv1.Preferences{
		Email: emailOn(addr), Sms: &notificationv1.ChannelPreference{Enabled: true, Address: phone},
		QuietHours:   &notificationv1.QuietHours{Enabled: true, StartMinute: 1320, EndMinute: 420, TimeZone: "America/Chicago"},
		DigestWindow: durationpb.New(10 * time.Minute),
	}, "email", "sms", "quiet_hours", "digest_window")
	if saved.GetEmail().GetAddress() != addr || saved.GetQuietHours().GetTimeZone() != "America/Chicago" || saved.GetEtag() == "" {
		t.Fatalf("UpdatePreferences() = %v", saved)
	}

	t.Run("contact points sealed at rest", func(t *testing.T) {
		var row []byte
		err := e.h.Proc.Pool.QueryRow(ctx, `SELECT convert_to(p::text, 'UTF8') FROM preferences p WHERE subject = $1`, pat.Subject).Scan(&row)
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{addr, phone, "prefs-", "5550001234"} {
			if bytes.Contains(row, []byte(secret)) {
				t.Errorf("preferences row holds %q in clear", secret)
			}
		}
		var wrapped string
		if err := e.h.Proc.Pool.QueryRow(ctx, `SELECT wrapped_dek FROM person_keys WHERE subject = $1`, pat.Subject).Scan(&wrapped); err != nil || !strings.HasPrefix(wrapped, "vault:v") {
			t.Errorf("person key = %q, %v; want a wrapped vault key", wrapped, err)
		}
	})

	t.Run("round trip", func(t *testing.T) {
		got, err := e.client.GetPreferences(e.h.As(t, ctx, pat), &notificationv1.GetPreferencesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		p := got.GetPreferences()
		if p.GetEmail().GetAddress() != addr || p.GetSms().GetAddress() != phone || p.GetDigestWindow().AsDuration() != 10*time.Minute {
			t.Errorf("GetPreferences() = %v", p)
		}
	})

	tests := []struct {
		name  string
		who   servicetest.Persona
		prefs *notificationv1.Preferences
		paths []string
		code  codes.Code
	}{
		{"stale etag", pat, &notificationv1.Preferences{Locale: "fr-FR", Etag: "999"}, []string{"locale"}, codes.Aborted},
		{"no mask", pat, &notificationv1.Preferences{}, nil, codes.InvalidArgument},
		{"output-only field", pat, &notificationv1.Preferences{}, []string{"email.verified"}, codes.InvalidArgument},
		{"unknown field", pat, &notificationv1.Preferences{}, []string{"shoe_size"}, codes.InvalidArgument},
		{"bad email", pat, &notificationv1.Preferences{Email: emailOn("not-an-address")}, []string{"email"}, codes.InvalidArgument},
		{"bad zone", pat, &notificationv1.Preferences{QuietHours: &notificationv1.QuietHours{TimeZone: "Nowhere/Land"}}, []string{"quiet_hours"}, codes.InvalidArgument},
		{"enable without address", pat, &notificationv1.Preferences{Push: &notificationv1.ChannelPreference{Enabled: true}}, []string{"push.enabled"}, codes.FailedPrecondition},
		{"pool not a member", servicetest.Clinician, &notificationv1.Preferences{PoolSubscriptions: []string{"pool-dermatology"}}, []string{"pool_subscriptions"}, codes.FailedPrecondition},
		{"pool member", servicetest.Clinician, &notificationv1.Preferences{PoolSubscriptions: []string{testPool}}, []string{"pool_subscriptions"}, codes.OK},
		{"admin refused", servicetest.Admin, &notificationv1.Preferences{Locale: "en-US"}, []string{"locale"}, codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.client.UpdatePreferences(e.h.As(t, ctx, tt.who), &notificationv1.UpdatePreferencesRequest{Preferences: tt.prefs, UpdateMask: mask(tt.paths...)})
			if status.Code(err) != tt.code {
				t.Fatalf("UpdatePreferences(%s) = %v, want %s", tt.name, err, tt.code)
			}
			if err != nil && strings.Contains(err.Error(), "not-an-address") {
				t.Errorf("error %q echoes the address", err)
			}
		})
	}
	for _, who := range []servicetest.Persona{servicetest.Admin, servicetest.Auditor} {
		if _, err := e.client.GetPreferences(e.h.As(t, ctx, who), &notificationv1.GetPreferencesRequest{}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("GetPreferences(%s) = %v, want PermissionDenied", who.Subject, err)
		}
	}
	if _, err := e.client.ListDeliveries(e.h.As(t, ctx, pat), &notificationv1.ListDeliveriesRequest{RecipientSubject: "someone-else"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("ListDeliveries(other subject) = %v, want PermissionDenied", err)
	}

	t.Run("update audited without contact point", func(t *testing.T) {
		testkit.WaitFor(t, 10*time.Second, "preferences audit record", func() bool {
			recs, raws := auditRecords(t, e.h)
			for i, r := range recs {
				if r.GetRecordType() == eventsv1.RecordType_RECORD_TYPE_NOTIFICATION_PREFERENCES && r.GetAction() == eventsv1.Action_ACTION_UPDATE && r.GetRecordId() == pat.Subject {
					if strings.Contains(raws[i], addr) || strings.Contains(raws[i], phone) {
						t.Fatalf("audit record holds a contact point")
					}
					return true
				}
			}
			return false
		})
	})
}

func TestEmailAlertEndToEnd(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{})
	ctx := t.Context()
	pat := person(t, "patient")
	addr := mailbox(t, "e2e")
	e.setPrefs(t, pat, &notificationv1.Preferences{Email: emailOn(addr)}, "email")
	silent := person(t, "patient") // never set preferences

	ev := e.created(t, "", pat.Subject, silent.Subject, "user-clinician")
	got := waitMails(t, addr, 1, 20*time.Second)
	if len(got) != 1 {
		t.Fatalf("mails to %s = %d, want 1", addr, len(got))
	}
	m := got[0]
	if want := "New secure message from " + testOrg; m.Subject != want {
		t.Errorf("subject = %q, want %q", m.Subject, want)
	}
	if !strings.Contains(m.Raw, testPortal) {
		t.Errorf("mail does not contain the portal link")
	}

	resp, err := e.client.ListDeliveries(e.h.As(t, ctx, pat), &notificationv1.ListDeliveriesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var sent *notificationv1.Delivery
	testkit.WaitFor(t, 5*time.Second, "delivery marked sent", func() bool {
		resp, err = e.client.ListDeliveries(e.h.As(t, ctx, pat), &notificationv1.ListDeliveriesRequest{})
		if err != nil || len(resp.GetDeliveries()) != 1 {
			return false
		}
		sent = resp.GetDeliveries()[0]
		return sent.GetStatus() == notificationv1.DeliveryStatus_DELIVERY_STATUS_SENT
	})
	if sent.GetMessageId() != ev.GetMessageId() || len(sent.GetAttempts()) != 1 || sent.GetChannel() != notificationv1.Channel_CHANNEL_EMAIL {
		t.Errorf("delivery = %v", sent)
	}
	if n := e.countDeliveries(t, silent.Subject, domain.StatusSuppressed); n != 1 {
		t.Errorf("suppressed deliveries for a person without channels = %d, want 1", n)
	}
	if n := e.countDeliveries(t, "user-clinician", 0); n != 0 {
		t.Errorf("deliveries to the sender = %d, want 0", n)
	}

	testkit.WaitFor(t, 10*time.Second, "ALERT_SENT audit record", func() bool {
		recs, raws := auditRecords(t, e.h)
		for i, r := range recs {
			if r.GetAction() == eventsv1.Action_ACTION_ALERT_SENT && r.GetRecordId() == ev.GetMessageId() {
				if r.GetActor().GetOnBehalfOf() != pat.Subject || r.GetReasonCode() != "email.new_message" {
					t.Errorf("audit record = %v", r)
				}
				if strings.Contains(raws[i], addr) {
					t.Errorf("audit record holds the address")
				}
				return true
			}
		}
		return false
	})
}

func mask(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }
