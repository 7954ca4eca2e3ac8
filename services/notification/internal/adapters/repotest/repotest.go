// Package repotest is the contract of the notification service's repositories: one test suite
// per domain repository interface, run against every implementation (adapters/pgstore over a
// real Postgres schema, adapters/memstore in memory), in the style of wild-workouts'
// TestRepository. A behaviour the use cases rely on belongs here, so the fake cannot drift from
// the database.
package repotest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
)

// Repos are the repositories of one new, empty store.
type Repos struct {
	Preferences domain.PreferencesRepository
	Deliveries  domain.DeliveryRepository
	Templates   domain.TemplateRepository
	// Committed returns the ids of the outbox events the store has committed, oldest first.
	Committed func(t *testing.T) []string
}

// Factory returns the repositories of a new, empty store that lives as long as t.
type Factory func(t *testing.T) Repos

// Run runs every suite against stores from newRepos.
func Run(t *testing.T, newRepos Factory) {
	t.Run("Preferences", func(t *testing.T) { Preferences(t, newRepos) })
	t.Run("Deliveries", func(t *testing.T) { Deliveries(t, newRepos) })
	t.Run("Templates", func(t *testing.T) { Templates(t, newRepos) })
}

// auditEvent is an outbox event standing in for an audit record.
func auditEvent() outbox.Event {
	return outbox.Event{ID: outbox.NewID(), Subject: "securemsg.audit.notification", Payload: []byte{0x08, 0x01}}
}

var errRefused = errors.New("refused by the use case")

// timestamp is now at the precision every store keeps (Postgres: microseconds).
func timestamp() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

// Preferences is the contract of domain.PreferencesRepository.
func Preferences(t *testing.T, newRepos Factory) {
	t.Run("nobody stored reads as the defaults", func(t *testing.T) {
		t.Parallel()
		r := newRepos(t).Preferences
		ctx := t.Context()
		p, err := r.Preferences(ctx, "u-nobody")
		if err != nil || p.Subject != "u-nobody" || p.Version != 0 || p.Channel(domain.ChannelEmail).Enabled || p.ReminderAfter != domain.DefaultReminderWait {
			t.Fatalf("Preferences(unknown) = %+v, %v; want the defaults", p, err)
		}
		if m, err := r.PreferencesOf(ctx, []string{"u-nobody"}); err != nil || len(m) != 0 {
			t.Errorf("PreferencesOf(unknown) = %v, %v; want none", m, err)
		}
		if addr, err := r.ContactPoint(ctx, "u-nobody", domain.ChannelEmail); err != nil || addr != "" {
			t.Errorf("ContactPoint(unknown) = %q, %v; want none", addr, err)
		}
	})

	t.Run("reading own preferences records the role", func(t *testing.T) {
		t.Parallel()
		r := newRepos(t).Preferences
		ctx := t.Context()
		p, err := r.OwnPreferences(ctx, domain.Identity{Subject: "u-1", Role: domain.RolePatient})
		if err != nil || p.Subject != "u-1" || p.Role != domain.RolePatient || p.Version != 1 {
			t.Fatalf("OwnPreferences() = %+v, %v; want u-1 as patient at version 1", p, err)
		}
		if _, err := r.OwnPreferences(ctx, domain.Identity{Subject: "u-1", Role: domain.RoleClinician}); err != nil {
			t.Fatal(err)
		}
		got, err := r.Preferences(ctx, "u-1")
		if err != nil || got.Role != domain.RoleClinician || got.Version != 1 {
			t.Errorf("Preferences() after a role change = %+v, %v; want clinician, version unchanged", got, err)
		}
	})

	t.Run("update stores and opens contact points and commits its audit", func(t *testing.T) {
		t.Parallel()
		repos := newRepos(t)
		r := repos.Preferences
		ctx := t.Context()
		who := domain.Identity{Subject: "u-2", Role: domain.RolePatient}
		ev := auditEvent()
		saved, err := r.UpdatePreferences(ctx, who, func(p *domain.Preferences) ([]outbox.Event, error) {
			if p.Subject != "u-2" || p.Version != 1 {
				t.Errorf("update saw %+v, want u-2 at version 1", p)
			}
			p.Channels[domain.ChannelEmail] = domain.ChannelSetting{Enabled: true, Address: "a@example.org"}
			p.Channels[domain.ChannelSMS] = domain.ChannelSetting{Address: "+15550001234"}
			p.Quiet = domain.QuietHours{Enabled: true, StartMinute: 1320, EndMinute: 420, TimeZone: "America/Chicago"}
			p.DigestWindow, p.Locale, p.PoolSubscriptions = 10*time.Minute, "fr-FR", []string{"pool-a"}
			return []outbox.Event{ev}, nil
		})
		if err != nil {
			t.Fatalf("UpdatePreferences() = %v", err)
		}
		if saved.Version != 2 || saved.UpdateTime.IsZero() || !saved.Channel(domain.ChannelEmail).HasAddress || saved.Channel(domain.ChannelPush).HasAddress {
			t.Errorf("UpdatePreferences() = %+v; want version 2 with email stored, push not", saved)
		}
		if got := repos.Committed(t); !slices.Contains(got, ev.ID) {
			t.Errorf("committed events = %v, want the update's audit event %s", got, ev.ID)
		}
		sealed, err := r.Preferences(ctx, "u-2")
		if err != nil {
			t.Fatal(err)
		}
		email := sealed.Channel(domain.ChannelEmail)
		if !email.Enabled || !email.HasAddress || email.Address != "" || sealed.Quiet.TimeZone != "America/Chicago" ||
			sealed.DigestWindow != 10*time.Minute || sealed.Locale != "fr-FR" || sealed.Version != 2 {
			t.Errorf("Preferences() = %+v; want the update, contact points not opened", sealed)
		}
		many, err := r.PreferencesOf(ctx, []string{"u-2", "u-nobody"})
		if err != nil || len(many) != 1 || many["u-2"].Channel(domain.ChannelSMS).Address != "" || !many["u-2"].Channel(domain.ChannelSMS).HasAddress {
			t.Errorf("PreferencesOf() = %+v, %v; want u-2 only, sealed", many, err)
		}
		for ch, want := range map[domain.Channel]string{domain.ChannelEmail: "a@example.org", domain.ChannelSMS: "+15550001234", domain.ChannelPush: ""} {
			if got, err := r.ContactPoint(ctx, "u-2", ch); err != nil || got != want {
				t.Errorf("ContactPoint(%s) = %q, %v; want %q", ch, got, err, want)
			}
		}
		own, err := r.OwnPreferences(ctx, who)
		if err != nil || own.Channel(domain.ChannelEmail).Address != "a@example.org" || own.Version != 2 {
			t.Errorf("OwnPreferences() = %+v, %v; want the address opened", own, err)
		}
		subs, err := r.PoolSubscribers(ctx, "pool-a")
		if err != nil || !slices.Equal(subs, []string{"u-2"}) {
			t.Errorf("PoolSubscribers(pool-a) = %v, %v; want [u-2]", subs, err)
		}
		if subs, err := r.PoolSubscribers(ctx, "pool-b"); err != nil || len(subs) != 0 {
			t.Errorf("PoolSubscribers(pool-b) = %v, %v; want none", subs, err)
		}
	})

	t.Run("update sees the stored value and can clear an address", func(t *testing.T) {
		t.Parallel()
		r := newRepos(t).Preferences
		ctx := t.Context()
		who := domain.Identity{Subject: "u-3", Role: domain.RolePatient}
		set := func(addr string) func(*domain.Preferences) ([]outbox.Event, error) {
			return func(p *domain.Preferences) ([]outbox.Event, error) {
				p.Channels[domain.ChannelEmail] = domain.ChannelSetting{Enabled: addr != "", Address: addr}
				return nil, nil
			}
		}
		if _, err := r.UpdatePreferences(ctx, who, set("b@example.org")); err != nil {
			t.Fatal(err)
		}
		_, err := r.UpdatePreferences(ctx, who, func(p *domain.Preferences) ([]outbox.Event, error) {
			if p.Version != 2 || p.Channel(domain.ChannelEmail).Address != "b@example.org" {
				t.Errorf("second update saw %+v, want version 2 with the address opened", p)
			}
			return set("")(p)
		})
		if err != nil {
			t.Fatal(err)
		}
		p, err := r.Preferences(ctx, "u-3")
		if err != nil || p.Version != 3 || p.Channel(domain.ChannelEmail).HasAddress {
			t.Errorf("Preferences() = %+v, %v; want version 3 without an address", p, err)
		}
	})

	t.Run("a refused update commits nothing", func(t *testing.T) {
		t.Parallel()
		repos := newRepos(t)
		r := repos.Preferences
		_, err := r.UpdatePreferences(t.Context(), domain.Identity{Subject: "u-4", Role: domain.RolePatient},
			func(p *domain.Preferences) ([]outbox.Event, error) {
				p.Locale = "de-DE"
				return []outbox.Event{auditEvent()}, errRefused
			})
		if !errors.Is(err, errRefused) {
			t.Fatalf("UpdatePreferences(refused) = %v, want the use case's error", err)
		}
		p, err := r.Preferences(t.Context(), "u-4")
		if err != nil || p.Version != 0 || p.Role != domain.RoleOther || p.Locale != "" {
			t.Errorf("Preferences() after a refused update = %+v, %v; want nothing stored, not even the role", p, err)
		}
		if got := repos.Committed(t); len(got) != 0 {
			t.Errorf("committed events = %v, want none", got)
		}
	})

	t.Run("proxy grants are replaced and expire", func(t *testing.T) {
		t.Parallel()
		r := newRepos(t).Preferences
		ctx := t.Context()
		now := timestamp()
		proxies := func(patient string) []string {
			t.Helper()
			got, err := r.NotifyProxies(ctx, patient, now)
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		grants := map[string]time.Time{"p-1": now.Add(time.Hour), "p-2": now.Add(-time.Minute)}
		if _, err := r.OwnPreferences(ctx, domain.Identity{Subject: "proxy-1", Role: domain.RoleProxy, NotifyGrants: grants}); err != nil {
			t.Fatal(err)
		}
		if got := proxies("p-1"); !slices.Equal(got, []string{"proxy-1"}) {
			t.Errorf("NotifyProxies(p-1) = %v, want [proxy-1]", got)
		}
		if got := proxies("p-2"); len(got) != 0 {
			t.Errorf("NotifyProxies(p-2, expired grant) = %v, want none", got)
		}
		if _, err := r.OwnPreferences(ctx, domain.Identity{Subject: "proxy-1", Role: domain.RoleProxy}); err != nil {
			t.Fatal(err)
		}
		if got := proxies("p-1"); len(got) != 1 {
			t.Errorf("NotifyProxies(p-1) after an identity without grants = %v, want the grant kept", got)
		}
		if _, err := r.OwnPreferences(ctx, domain.Identity{Subject: "proxy-1", Role: domain.RoleProxy, NotifyGrants: map[string]time.Time{}}); err != nil {
			t.Fatal(err)
		}
		if got := proxies("p-1"); len(got) != 0 {
			t.Errorf("NotifyProxies(p-1) after the grants were replaced by none = %v, want none", got)
		}
	})
}

// delivery is a pending delivery due now for recipient, about message in thread.
func delivery(recipient, thread, message string, ch domain.Channel, at time.Time) domain.Delivery {
	return domain.Delivery{
		EventID: "ev-" + message, RecipientSubject: recipient, Channel: ch, Kind: domain.KindNewMessage,
		MessageID: message, ThreadID: thread, PatientID: "p-1", MessageTime: at, Count: 1,
		Status: domain.StatusPending, NextAttemptAt: at, IdempotencyKey: domain.IdempotencyKey("ev-"+message, recipient, ch),
	}
}

func list(t *testing.T, r domain.DeliveryRepository, f domain.DeliveryFilter) []domain.Delivery {
	t.Helper()
	got, err := r.ListDeliveries(t.Context(), f, nil, 100)
	if err != nil {
		t.Fatalf("ListDeliveries(%+v) = %v", f, err)
	}
	return got
}

func byMessage(ds []domain.Delivery, message string) (domain.Delivery, bool) {
	i := slices.IndexFunc(ds, func(d domain.Delivery) bool { return d.MessageID == message })
	if i < 0 {
		return domain.Delivery{}, false
	}
	return ds[i], true
}

// Deliveries is the contract of domain.DeliveryRepository.
func Deliveries(t *testing.T, newRepos Factory) {
	t.Run("a fanout is added once", func(t *testing.T) {
		t.Parallel()
		r := newRepos(t).Deliveries
		now := timestamp()
		off := delivery("r-1", "t-1", "m-2", domain.ChannelUnspecified, now)
		off.Status, off.SuppressionCode, off.NextAttemptAt = domain.StatusSuppressed, domain.SuppressChannelDisabled, time.Time{}
		f := domain.Fanout{
			Deliveries: []domain.Delivery{delivery("r-1", "t-1", "m-1", domain.ChannelEmail, now), off},
			Reminders:  []domain.Reminder{{RecipientSubject: "r-1", ThreadID: "t-1", MessageID: "m-1", MessageTime: now, DueAt: now.Add(time.Hour)}},
		}
		for range 2 {
			if err := r.AddFanout(t.Context(), f); err != nil {
				t.Fatalf("AddFanout() = %v", err)
			}
		}
		got := list(t, r, domain.DeliveryFilter{Recipient: "r-1"})
		if len(got) != 2 {
			t.Fatalf("deliveries after the same fanout twice = %d, want 2", len(got))
		}
		for _, d := range got {
			if !domain.IsUUID(d.ID) || d.Count != 1 || d.Attempts != 0 || d.CreatedAt.IsZero() {
				t.Errorf("stored delivery = %+v; want an assigned id, count 1, no attempts", d)
			}
		}
		if d, _ := byMessage(got, "m-2"); d.Status != domain.StatusSuppressed || d.SuppressionCode != domain.SuppressChannelDisabled {
			t.Errorf("suppressed delivery = %+v", d)
		}
		if at, ok, err := r.MessageTime(t.Context(), "r-1", "m-1"); err != nil || !ok || !at.Equal(now) {
			t.Errorf("MessageTime(m-1) = %v, %v, %v; want %v", at, ok, err, now)
		}
		if _, ok, err := r.MessageTime(t.Context(), "r-1", "m-unknown"); err != nil || ok {
			t.Errorf("MessageTime(unknown) = %v, %v; want not found", ok, err)
		}
		if err := r.AddFanout(t.Context(), domain.Fanout{}); err != nil {
			t.Errorf("AddFanout(empty) = %v", err)
		}
	})

	t.Run("digest entries fold into one open digest per thread", func(t *testing.T) {
		t.Parallel()
		r := newRepos(t).Deliveries
		now := timestamp()
		entry := func(message string, at time.Time) domain.DigestEntry {
			d := delivery("r-1", "t-1", message, domain.ChannelEmail, at)
			d.Kind = domain.KindDigest
			marker, open := d, d
			marker.Status, marker.SuppressionCode, marker.NextAttemptAt = domain.StatusSuppressed, domain.SuppressDigested, time.Time{}
			open.IdempotencyKey = domain.IdempotencyKey("digest:ev-"+message, "r-1", domain.ChannelEmail)
			open.NextAttemptAt = at.Add(time.Hour)
			return domain.DigestEntry{Marker: marker, Open: open}
		}
		for _, e := range []domain.DigestEntry{entry("m-1", now), entry("m-2", now.Add(time.Second)), entry("m-2", now.Add(time.Second)), entry("m-0", now.Add(-time.Second))} {
			if err := r.AddFanout(t.Context(), domain.Fanout{Digests: []domain.DigestEntry{e}}); err != nil {
				t.Fatalf("AddFanout(digest %s) = %v", e.Marker.MessageID, err)
			}
		}
		open := list(t, r, domain.DeliveryFilter{Recipient: "r-1", Status: domain.StatusPending})
		if len(open) != 1 || open[0].Count != 3 || open[0].MessageID != "m-2" || open[0].Kind != domain.KindDigest {
			t.Fatalf("open digests = %+v; want one of 3 messages naming the latest, m-2", open)
		}
		if markers := list(t, r, domain.DeliveryFilter{Recipient: "r-1", Status: domain.StatusSuppressed}); len(markers) != 3 {
			t.Errorf("digested markers = %d, want 3 (one per distinct message)", len(markers))
		}
		if err := r.AddFanout(t.Context(), domain.Fanout{Digests: []domain.DigestEntry{entry("m-9", now)}}); err != nil {
			t.Fatal(err)
		}
		other := entry("m-8", now)
		other.Marker.ThreadID, other.Open.ThreadID = "t-2", "t-2"
		if err := r.AddFanout(t.Context(), domain.Fanout{Digests: []domain.DigestEntry{other}}); err != nil {
			t.Fatal(err)
		}
		if open := list(t, r, domain.DeliveryFilter{Recipient: "r-1", Status: domain.StatusPending}); len(open) != 2 {
			t.Errorf("open digests after a message in another thread = %d, want 2", len(open))
		}
	})

	t.Run("claim, release and finish an attempt", func(t *testing.T) {
		t.Parallel()
		repos := newRepos(t)
		r := repos.Deliveries
		ctx := t.Context()
		now := timestamp()
		later := delivery("r-1", "t-1", "m-later", domain.ChannelSMS, now)
		later.NextAttemptAt = now.Add(time.Hour)
		if err := r.AddFanout(ctx, domain.Fanout{Deliveries: []domain.Delivery{delivery("r-1", "t-1", "m-1", domain.ChannelEmail, now), later}}); err != nil {
			t.Fatal(err)
		}
		claimed, err := r.ClaimDue(ctx, 10, time.Minute)
		if err != nil || len(claimed) != 1 || claimed[0].MessageID != "m-1" || claimed[0].Status != domain.StatusSending || claimed[0].Attempts != 1 {
			t.Fatalf("ClaimDue() = %+v, %v; want m-1 claimed for its first attempt", claimed, err)
		}
		d := claimed[0]
		if again, err := r.ClaimDue(ctx, 10, time.Minute); err != nil || len(again) != 0 {
			t.Errorf("ClaimDue() while claimed = %+v, %v; want nothing", again, err)
		}
		if shown := list(t, r, domain.DeliveryFilter{Recipient: "r-1", Status: domain.StatusPending}); len(shown) != 2 {
			t.Errorf("pending deliveries with one claimed = %d, want 2 (a claim is shown as pending)", len(shown))
		}
		if err := r.Release(ctx, d.ID, now.Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		claimed, err = r.ClaimDue(ctx, 10, time.Minute)
		if err != nil || len(claimed) != 1 || claimed[0].ID != d.ID || claimed[0].Attempts != 1 {
			t.Fatalf("ClaimDue() after Release = %+v, %v; want the same delivery, the attempt not counted twice", claimed, err)
		}
		ev := auditEvent()
		a := domain.Attempt{Attempt: 1, Status: domain.StatusRetrying, StartTime: now, FinishTime: now, ErrorCode: "smtp_4xx", NextAttempt: now.Add(time.Hour)}
		if err := r.FinishAttempt(ctx, d.ID, a, []outbox.Event{ev}); err != nil {
			t.Fatalf("FinishAttempt() = %v", err)
		}
		if err := r.FinishAttempt(ctx, d.ID, a, nil); !errors.Is(err, domain.ErrNotClaimed) {
			t.Errorf("FinishAttempt() of an unclaimed delivery = %v, want ErrNotClaimed", err)
		}
		if got := repos.Committed(t); !slices.Equal(got, []string{ev.ID}) {
			t.Errorf("committed events = %v, want only the attempt's %s", got, ev.ID)
		}
		got, _ := byMessage(list(t, r, domain.DeliveryFilter{Recipient: "r-1"}), "m-1")
		if got.Status != domain.StatusRetrying || !got.NextAttemptAt.Equal(a.NextAttempt) || len(got.Log) != 1 ||
			got.Log[0].ErrorCode != "smtp_4xx" || got.Log[0].Status != domain.StatusRetrying || !got.Log[0].NextAttempt.Equal(a.NextAttempt) {
			t.Errorf("delivery after a failed attempt = %+v", got)
		}
		if claimed, err := r.ClaimDue(ctx, 10, time.Minute); err != nil || len(claimed) != 0 {
			t.Errorf("ClaimDue() before the retry is due = %+v, %v; want nothing", claimed, err)
		}
		l, _ := byMessage(list(t, r, domain.DeliveryFilter{Recipient: "r-1"}), "m-later")
		if err := r.Suppress(ctx, l.ID, domain.SuppressChannelDisabled); err != nil {
			t.Fatal(err)
		}
		if l, _ := byMessage(list(t, r, domain.DeliveryFilter{Recipient: "r-1"}), "m-later"); l.Status != domain.StatusSuppressed ||
			l.SuppressionCode != domain.SuppressChannelDisabled || !l.NextAttemptAt.IsZero() {
			t.Errorf("suppressed delivery = %+v", l)
		}
	})

	t.Run("claims are handed out at most limit at a time, oldest due first", func(t *testing.T) {
		t.Parallel()
		r := newRepos(t).Deliveries
		now := timestamp()
		var f domain.Fanout
		for m, dueAgo := range map[string]time.Duration{"m-c": time.Minute, "m-a": 3 * time.Minute, "m-b": 2 * time.Minute} {
			d := delivery("r-1", "t-1", m, domain.ChannelEmail, now)
			d.NextAttemptAt = now.Add(-dueAgo)
			f.Deliveries = append(f.Deliveries, d)
		}
		if err := r.AddFanout(t.Context(), f); err != nil {
			t.Fatal(err)
		}
		var order []string
		for range 3 {
			claimed, err := r.ClaimDue(t.Context(), 1, time.Minute)
			if err != nil || len(claimed) != 1 {
				t.Fatalf("ClaimDue(1) = %+v, %v; want one", claimed, err)
			}
			order = append(order, claimed[0].MessageID)
		}
		if !slices.Equal(order, []string{"m-a", "m-b", "m-c"}) {
			t.Errorf("claim order = %v, want oldest due first", order)
		}
	})

	t.Run("stale claims are settled together with their audit", func(t *testing.T) {
		t.Parallel()
		repos := newRepos(t)
		r := repos.Deliveries
		ctx := t.Context()
		now := timestamp()
		if err := r.AddFanout(ctx, domain.Fanout{Deliveries: []domain.Delivery{delivery("r-1", "t-1", "m-1", domain.ChannelEmail, now)}}); err != nil {
			t.Fatal(err)
		}
		// A lease that has already run out: the worker is as good as dead.
		if claimed, err := r.ClaimDue(ctx, 10, -time.Second); err != nil || len(claimed) != 1 {
			t.Fatalf("ClaimDue() = %+v, %v", claimed, err)
		}
		if n, err := r.RecoverStaleClaims(ctx, 10, func(domain.Delivery) (domain.Attempt, []outbox.Event, error) {
			return domain.Attempt{}, nil, errRefused
		}); !errors.Is(err, errRefused) || n != 0 {
			t.Errorf("RecoverStaleClaims(failing settle) = %d, %v; want 0 and the error", n, err)
		}
		ev := auditEvent()
		var seen []domain.Delivery
		n, err := r.RecoverStaleClaims(ctx, 10, func(d domain.Delivery) (domain.Attempt, []outbox.Event, error) {
			seen = append(seen, d)
			return domain.Attempt{Attempt: d.Attempts, Status: domain.StatusFailed, StartTime: now, FinishTime: now, ErrorCode: "outcome_unknown"}, []outbox.Event{ev}, nil
		})
		if err != nil || n != 1 || len(seen) != 1 || seen[0].MessageID != "m-1" || seen[0].Attempts != 1 {
			t.Fatalf("RecoverStaleClaims() = %d, %v, saw %+v; want m-1 settled", n, err, seen)
		}
		got, _ := byMessage(list(t, r, domain.DeliveryFilter{Recipient: "r-1"}), "m-1")
		if got.Status != domain.StatusFailed || len(got.Log) != 1 || got.Log[0].ErrorCode != "outcome_unknown" {
			t.Errorf("settled delivery = %+v", got)
		}
		if got := repos.Committed(t); !slices.Equal(got, []string{ev.ID}) {
			t.Errorf("committed events = %v, want only %s", got, ev.ID)
		}
		if n, err := r.RecoverStaleClaims(ctx, 10, nil); err != nil || n != 0 {
			t.Errorf("RecoverStaleClaims() with nothing stale = %d, %v", n, err)
		}
	})

	t.Run("the delivery log filters and pages newest first", func(t *testing.T) {
		t.Parallel()
		r := newRepos(t).Deliveries
		ctx := t.Context()
		now := timestamp()
		var f domain.Fanout
		for i := range 5 {
			ch := domain.ChannelEmail
			if i%2 == 1 {
				ch = domain.ChannelSMS
			}
			f.Deliveries = append(f.Deliveries, delivery("r-1", "t-1", "m-"+string(rune('a'+i)), ch, now))
		}
		f.Deliveries = append(f.Deliveries, delivery("r-2", "t-1", "m-other", domain.ChannelEmail, now))
		if err := r.AddFanout(ctx, f); err != nil {
			t.Fatal(err)
		}
		var pages [][]domain.Delivery
		var after *domain.DeliveryCursor
		for {
			page, err := r.ListDeliveries(ctx, domain.DeliveryFilter{Recipient: "r-1"}, after, 2)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			pages = append(pages, page)
			last := page[len(page)-1]
			after = &domain.DeliveryCursor{CreatedAt: last.CreatedAt, ID: last.ID}
		}
		var all []domain.Delivery
		for _, p := range pages {
			all = append(all, p...)
		}
		if len(pages) != 3 || len(all) != 5 {
			t.Fatalf("pages of 2 = %d holding %d deliveries, want 3 pages of the 5", len(pages), len(all))
		}
		for i := 1; i < len(all); i++ {
			a, b := all[i-1], all[i]
			if a.CreatedAt.Before(b.CreatedAt) || a.CreatedAt.Equal(b.CreatedAt) && a.ID <= b.ID {
				t.Errorf("delivery log out of order at %d: %s then %s", i, a.ID, b.ID)
			}
		}
		if got := list(t, r, domain.DeliveryFilter{Recipient: "r-1", Channel: domain.ChannelSMS}); len(got) != 2 {
			t.Errorf("sms deliveries = %d, want 2", len(got))
		}
		if got := list(t, r, domain.DeliveryFilter{Recipient: "r-1", MessageID: "m-c"}); len(got) != 1 || got[0].MessageID != "m-c" {
			t.Errorf("deliveries of m-c = %+v", got)
		}
		if got := list(t, r, domain.DeliveryFilter{Recipient: "r-1", Status: domain.StatusSent}); len(got) != 0 {
			t.Errorf("sent deliveries = %d, want 0", len(got))
		}
		if got := list(t, r, domain.DeliveryFilter{Recipient: "r-1", Start: now.Add(-time.Hour), End: now.Add(time.Hour)}); len(got) != 5 {
			t.Errorf("deliveries created within the hour around now = %d, want 5", len(got))
		}
		if got := list(t, r, domain.DeliveryFilter{Recipient: "r-1", End: now.Add(-time.Hour)}); len(got) != 0 {
			t.Errorf("deliveries created before an hour ago = %d, want 0", len(got))
		}
	})

	t.Run("reading cancels reminders and unsent alerts up to the cutoff", func(t *testing.T) {
		t.Parallel()
		r := newRepos(t).Deliveries
		ctx := t.Context()
		t1 := timestamp().Add(-time.Minute)
		t2 := t1.Add(30 * time.Second)
		f := domain.Fanout{
			Deliveries: []domain.Delivery{
				delivery("r-1", "t-1", "m-1", domain.ChannelEmail, t1),
				delivery("r-1", "t-1", "m-2", domain.ChannelEmail, t2),
				delivery("r-1", "t-2", "m-3", domain.ChannelEmail, t1),
			},
			Reminders: []domain.Reminder{
				{RecipientSubject: "r-1", ThreadID: "t-1", MessageID: "m-1", MessageTime: t1, DueAt: t1.Add(time.Hour)},
				{RecipientSubject: "r-1", ThreadID: "t-1", MessageID: "m-2", MessageTime: t2, DueAt: t2.Add(time.Hour)},
			},
		}
		if err := r.AddFanout(ctx, f); err != nil {
			t.Fatal(err)
		}
		if at, ok, err := r.MessageTime(ctx, "r-1", "m-1"); err != nil || !ok || !at.Equal(t1) {
			t.Fatalf("MessageTime(m-1) = %v, %v, %v; want %v", at, ok, err, t1)
		}
		reminders, deliveries, err := r.CancelForRead(ctx, "r-1", "t-1", t1)
		if err != nil || reminders != 1 || deliveries != 1 {
			t.Fatalf("CancelForRead(up to m-1) = %d, %d, %v; want 1 reminder and 1 delivery", reminders, deliveries, err)
		}
		got := list(t, r, domain.DeliveryFilter{Recipient: "r-1"})
		for m, want := range map[string]domain.Status{"m-1": domain.StatusSuppressed, "m-2": domain.StatusPending, "m-3": domain.StatusPending} {
			if d, _ := byMessage(got, m); d.Status != want || want == domain.StatusSuppressed && d.SuppressionCode != domain.SuppressAlreadyRead {
				t.Errorf("delivery of %s = status %d %q, want %d", m, d.Status, d.SuppressionCode, want)
			}
		}
		if reminders, deliveries, err := r.CancelForRead(ctx, "r-1", "t-1", t1); err != nil || reminders != 0 || deliveries != 0 {
			t.Errorf("CancelForRead() again = %d, %d, %v; want nothing left to cancel", reminders, deliveries, err)
		}
	})

	t.Run("due reminders fire once, with the fanout their plan returns", func(t *testing.T) {
		t.Parallel()
		repos := newRepos(t)
		r := repos.Deliveries
		ctx := t.Context()
		now := timestamp()
		who := domain.Identity{Subject: "r-1", Role: domain.RolePatient}
		if _, err := repos.Preferences.UpdatePreferences(ctx, who, func(p *domain.Preferences) ([]outbox.Event, error) {
			p.Channels[domain.ChannelEmail] = domain.ChannelSetting{Enabled: true, Address: "r1@example.org"}
			p.RemindersEnabled = true
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
		f := domain.Fanout{Reminders: []domain.Reminder{
			{RecipientSubject: "r-1", ThreadID: "t-1", MessageID: "m-1", MessageTime: now.Add(-time.Hour), DueAt: now.Add(-time.Minute)},
			{RecipientSubject: "r-2", ThreadID: "t-1", MessageID: "m-1", MessageTime: now.Add(-time.Hour), DueAt: now.Add(time.Hour)},
		}}
		if err := r.AddFanout(ctx, f); err != nil {
			t.Fatal(err)
		}
		if n, err := r.FireDueReminders(ctx, 10, func([]domain.Reminder, map[string]domain.Preferences) (domain.Fanout, error) {
			return domain.Fanout{}, errRefused
		}); !errors.Is(err, errRefused) || n != 0 {
			t.Errorf("FireDueReminders(failing plan) = %d, %v; want 0 and the error", n, err)
		}
		n, err := r.FireDueReminders(ctx, 10, func(due []domain.Reminder, prefs map[string]domain.Preferences) (domain.Fanout, error) {
			if len(due) != 1 || due[0].RecipientSubject != "r-1" || !domain.IsUUID(due[0].ID) || !due[0].MessageTime.Equal(now.Add(-time.Hour)) {
				t.Errorf("plan got reminders %+v; want r-1's, which is due", due)
			}
			email := prefs["r-1"].Channel(domain.ChannelEmail)
			if len(prefs) != 1 || !prefs["r-1"].RemindersEnabled || !email.HasAddress || email.Address != "" {
				t.Errorf("plan got preferences %+v; want r-1's, contact points not opened", prefs)
			}
			d := delivery("r-1", "t-1", "m-1", domain.ChannelEmail, now)
			d.Kind, d.IdempotencyKey = domain.KindUnreadReminder, domain.IdempotencyKey("reminder:"+due[0].ID, "r-1", domain.ChannelEmail)
			return domain.Fanout{Deliveries: []domain.Delivery{d}}, nil
		})
		if err != nil || n != 1 {
			t.Fatalf("FireDueReminders() = %d, %v; want 1", n, err)
		}
		if got := list(t, r, domain.DeliveryFilter{Recipient: "r-1"}); len(got) != 1 || got[0].Kind != domain.KindUnreadReminder {
			t.Errorf("deliveries after the reminder fired = %+v; want its alert", got)
		}
		if n, err := r.FireDueReminders(ctx, 10, func(due []domain.Reminder, _ map[string]domain.Preferences) (domain.Fanout, error) {
			t.Errorf("plan called again with %+v", due)
			return domain.Fanout{}, nil
		}); err != nil || n != 0 {
			t.Errorf("FireDueReminders() again = %d, %v; want nothing due", n, err)
		}
		// A fired or cancelled reminder is never cancelled again (CancelForRead counts only pending ones).
		if reminders, _, err := r.CancelForRead(ctx, "r-1", "t-1", now); err != nil || reminders != 0 {
			t.Errorf("CancelForRead() of a fired reminder = %d, %v; want 0", reminders, err)
		}
	})
}

// Templates is the contract of domain.TemplateRepository.
func Templates(t *testing.T, newRepos Factory) {
	key := domain.Template{Kind: domain.KindNewMessage, Channel: domain.ChannelEmail, Locale: "en-US"}

	t.Run("nothing stored", func(t *testing.T) {
		t.Parallel()
		r := newRepos(t).Templates
		got, ok, err := r.Template(t.Context(), key.Kind, key.Channel, key.Locale)
		if err != nil || ok || got.Key() != key.Key() {
			t.Errorf("Template() = %+v, %v, %v; want not found", got, ok, err)
		}
		if all, err := r.Templates(t.Context()); err != nil || len(all) != 0 {
			t.Errorf("Templates() = %+v, %v; want none", all, err)
		}
	})

	t.Run("updates store new versions with their audit", func(t *testing.T) {
		t.Parallel()
		repos := newRepos(t)
		r := repos.Templates
		ctx := t.Context()
		write := func(subject, by string, wantVersion int64) domain.Template {
			t.Helper()
			ev := auditEvent()
			got, err := r.UpdateTemplate(ctx, key, func(cur *domain.Template) ([]outbox.Event, error) {
				if cur.Version != wantVersion-1 || cur.Key() != key.Key() {
					t.Errorf("update saw %+v, want %s at version %d", cur, key.Key(), wantVersion-1)
				}
				cur.Subject, cur.Body, cur.UpdatedBy = subject, "Log in at {{.PortalLink}}", by
				return []outbox.Event{ev}, nil
			})
			if err != nil || got.Version != wantVersion || got.Subject != subject || got.UpdatedBy != by || got.UpdateTime.IsZero() || got.Default {
				t.Fatalf("UpdateTemplate() = %+v, %v; want version %d by %s", got, err, wantVersion, by)
			}
			if !slices.Contains(repos.Committed(t), ev.ID) {
				t.Errorf("the update's audit event %s was not committed", ev.ID)
			}
			return got
		}
		write("First", "admin-1", 1)
		write("Second", "admin-2", 2)
		got, ok, err := r.Template(ctx, key.Kind, key.Channel, key.Locale)
		if err != nil || !ok || got.Version != 2 || got.Subject != "Second" || got.Body != "Log in at {{.PortalLink}}" || got.UpdatedBy != "admin-2" {
			t.Errorf("Template() = %+v, %v, %v; want the second version", got, ok, err)
		}
		if all, err := r.Templates(ctx); err != nil || len(all) != 1 || all[0].Key() != key.Key() {
			t.Errorf("Templates() = %+v, %v; want the one override", all, err)
		}
	})

	t.Run("a refused update stores nothing", func(t *testing.T) {
		t.Parallel()
		repos := newRepos(t)
		r := repos.Templates
		_, err := r.UpdateTemplate(t.Context(), key, func(cur *domain.Template) ([]outbox.Event, error) {
			cur.Subject = "Never"
			return []outbox.Event{auditEvent()}, errRefused
		})
		if !errors.Is(err, errRefused) {
			t.Fatalf("UpdateTemplate(refused) = %v", err)
		}
		if _, ok, err := r.Template(t.Context(), key.Kind, key.Channel, key.Locale); err != nil || ok {
			t.Errorf("Template() after a refused update = %v, %v; want nothing stored", ok, err)
		}
		if got := repos.Committed(t); len(got) != 0 {
			t.Errorf("committed events = %v, want none", got)
		}
	})
}
