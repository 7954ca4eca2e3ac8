// Package memstore is an in-memory fake of the notification service's repositories
// (domain.PreferencesRepository, DeliveryRepository and TemplateRepository), for fast tests of
// the use cases without Postgres or Vault. It passes the same contract as adapters/pgstore
// (adapters/repotest) and keeps the outbox events committed with each change, so tests can read
// the audit records.
//
// One mutex stands for the database's locks and transactions: a method holds it for its whole
// run, and a change commits entirely or not at all. The functions a method is given
// (UpdatePreferences' update, RecoverStaleClaims' settle, …) run while it is held, so they
// must not call back into the store — the use cases never do. Contact points are kept in
// memory unsealed: this is a fake.
package memstore

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/notification/internal/domain"
)

// Reminder states, as pgstore keeps them.
const (
	reminderPending   = 1
	reminderCancelled = 2
	reminderFired     = 3
)

// Store is the in-memory fake of all three repositories.
type Store struct {
	mu        sync.Mutex
	now       func() time.Time
	prefs     map[string]domain.Preferences
	grants    map[string]map[string]time.Time // proxy → patient → expiry
	templates map[string]domain.Template
	// deliveries by id, with the idempotency keys taken and each claim's lease end.
	deliveries map[string]*delivery
	keys       map[string]string
	reminders  map[string]*reminder
	outbox     []outbox.Event
}

type delivery struct {
	d            domain.Delivery
	claimedUntil time.Time
}

type reminder struct {
	r      domain.Reminder
	status int
}

var (
	_ domain.PreferencesRepository = (*Store)(nil)
	_ domain.DeliveryRepository    = (*Store)(nil)
	_ domain.TemplateRepository    = (*Store)(nil)
)

// Option configures a Store.
type Option func(*Store)

// WithClock replaces time.Now as the store's clock, the one Postgres' now() stands for: what is
// due, when a lease ends, when a row was created. Tests run it ahead to make retries due.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// New returns an empty store.
func New(opts ...Option) *Store {
	s := &Store{
		now: time.Now, prefs: map[string]domain.Preferences{}, grants: map[string]map[string]time.Time{},
		templates: map[string]domain.Template{}, deliveries: map[string]*delivery{}, keys: map[string]string{},
		reminders: map[string]*reminder{},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Outbox returns the outbox events committed so far (audit records), oldest first.
func (s *Store) Outbox() []outbox.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.outbox)
}

// Deliveries returns every stored delivery, oldest first, with its attempts: what a test would
// read from the deliveries table.
func (s *Store) Deliveries() []domain.Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]domain.Delivery, 0, len(s.deliveries))
	for _, d := range s.deliveries {
		out = append(out, copyDelivery(d.d))
	}
	slices.SortFunc(out, func(a, b domain.Delivery) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// ExpireClaims makes every current claim's lease end now, as if its worker had died.
func (s *Store) ExpireClaims() {
	s.mu.Lock()
	defer s.mu.Unlock()
	past := s.now().Add(-time.Nanosecond)
	for _, d := range s.deliveries {
		if d.d.Status == domain.StatusSending {
			d.claimedUntil = past
		}
	}
}

func copyPrefs(p domain.Preferences) domain.Preferences {
	p.Channels = maps.Clone(p.Channels)
	if p.Channels == nil {
		p.Channels = map[domain.Channel]domain.ChannelSetting{}
	}
	p.PoolSubscriptions = slices.Clone(p.PoolSubscriptions)
	return p
}

// sealed is p as a read that does not open contact points sees it.
func sealed(p domain.Preferences) domain.Preferences {
	p = copyPrefs(p)
	for c, set := range p.Channels {
		set.Address = ""
		p.Channels[c] = set
	}
	return p
}

func copyDelivery(d domain.Delivery) domain.Delivery {
	d.Log = slices.Clone(d.Log)
	return d
}

// OwnPreferences implements domain.PreferencesRepository.
func (s *Store) OwnPreferences(_ context.Context, who domain.Identity) (domain.Preferences, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, grants := s.withIdentity(who)
	s.prefs[who.Subject], s.grants = p, grants
	return copyPrefs(p), nil
}

// withIdentity returns who's preferences and the grants as recording who's identity leaves
// them, without storing either.
func (s *Store) withIdentity(who domain.Identity) (domain.Preferences, map[string]map[string]time.Time) {
	p, ok := s.prefs[who.Subject]
	if !ok {
		p = domain.DefaultPreferences(who.Subject)
		p.Version, p.UpdateTime = 1, s.now()
	}
	p = copyPrefs(p)
	p.Role = who.Role
	grants := s.grants
	if who.NotifyGrants != nil {
		grants = maps.Clone(s.grants)
		grants[who.Subject] = maps.Clone(who.NotifyGrants)
	}
	return p, grants
}

// UpdatePreferences implements domain.PreferencesRepository.
func (s *Store) UpdatePreferences(_ context.Context, who domain.Identity, update func(*domain.Preferences) ([]outbox.Event, error)) (domain.Preferences, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, grants := s.withIdentity(who)
	audit, err := update(&cur)
	if err != nil {
		return domain.Preferences{}, err
	}
	cur = copyPrefs(cur)
	if cur.PoolSubscriptions == nil {
		cur.PoolSubscriptions = []string{}
	}
	for c, set := range cur.Channels {
		set.HasAddress = set.Address != ""
		cur.Channels[c] = set
	}
	cur.Version++
	cur.UpdateTime = s.now()
	s.prefs[who.Subject], s.grants = cur, grants
	s.outbox = append(s.outbox, audit...)
	return copyPrefs(cur), nil
}

// Preferences implements domain.PreferencesRepository.
func (s *Store) Preferences(_ context.Context, subject string) (domain.Preferences, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.prefs[subject]; ok {
		return sealed(p), nil
	}
	return domain.DefaultPreferences(subject), nil
}

// PreferencesOf implements domain.PreferencesRepository.
func (s *Store) PreferencesOf(_ context.Context, subjects []string) (map[string]domain.Preferences, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.preferencesOf(subjects), nil
}

func (s *Store) preferencesOf(subjects []string) map[string]domain.Preferences {
	out := map[string]domain.Preferences{}
	for _, sub := range subjects {
		if p, ok := s.prefs[sub]; ok {
			out[sub] = sealed(p)
		}
	}
	return out
}

// ContactPoint implements domain.PreferencesRepository.
func (s *Store) ContactPoint(_ context.Context, subject string, ch domain.Channel) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.prefs[subject].Channels[ch].Address, nil
}

// PoolSubscribers implements domain.PreferencesRepository.
func (s *Store) PoolSubscribers(_ context.Context, pool string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for sub, p := range s.prefs {
		if slices.Contains(p.PoolSubscriptions, pool) {
			out = append(out, sub)
		}
	}
	slices.Sort(out)
	return out, nil
}

// NotifyProxies implements domain.PreferencesRepository.
func (s *Store) NotifyProxies(_ context.Context, patient string, at time.Time) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for proxy, grants := range s.grants {
		if exp, ok := grants[patient]; ok && exp.After(at) {
			out = append(out, proxy)
		}
	}
	slices.Sort(out)
	return out, nil
}

// AddFanout implements domain.DeliveryRepository.
func (s *Store) AddFanout(_ context.Context, f domain.Fanout) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addFanout(f)
	return nil
}

// addFanout adds f at one instant, as the rows of one Postgres transaction share its now().
func (s *Store) addFanout(f domain.Fanout) {
	now := s.now()
	for _, d := range f.Deliveries {
		s.insertDelivery(d, now)
	}
	for _, e := range f.Digests {
		if !s.insertDelivery(e.Marker, now) {
			continue
		}
		if open := s.openDigest(e.Marker); open != nil {
			open.Count++
			if !e.Marker.MessageTime.Before(open.MessageTime) {
				open.MessageID, open.MessageTime = e.Marker.MessageID, e.Marker.MessageTime
			}
			open.UpdatedAt = now
			continue
		}
		s.insertDelivery(e.Open, now)
	}
	for _, r := range f.Reminders {
		if s.hasReminder(r.RecipientSubject, r.MessageID) {
			continue
		}
		if r.ID == "" {
			r.ID = uuid.Must(uuid.NewV7()).String()
		}
		s.reminders[r.ID] = &reminder{r: r, status: reminderPending}
	}
}

// insertDelivery adds d unless its idempotency key is taken, and reports which.
func (s *Store) insertDelivery(d domain.Delivery, now time.Time) bool {
	if _, taken := s.keys[d.IdempotencyKey]; taken {
		return false
	}
	if d.ID == "" {
		d.ID = uuid.Must(uuid.NewV7()).String()
	}
	d.Count, d.Attempts, d.CreatedAt, d.UpdatedAt, d.Log = max(d.Count, 1), 0, now, now, nil
	s.deliveries[d.ID] = &delivery{d: d}
	s.keys[d.IdempotencyKey] = d.ID
	return true
}

// openDigest is the newest pending digest of marker's recipient, channel and thread.
func (s *Store) openDigest(marker domain.Delivery) *domain.Delivery {
	var open *domain.Delivery
	for _, x := range s.deliveries {
		d := &x.d
		if d.RecipientSubject == marker.RecipientSubject && d.Channel == marker.Channel && d.ThreadID == marker.ThreadID &&
			d.Kind == domain.KindDigest && d.Status == domain.StatusPending && (open == nil || d.CreatedAt.After(open.CreatedAt)) {
			open = d
		}
	}
	return open
}

func (s *Store) hasReminder(recipient, messageID string) bool {
	for _, r := range s.reminders {
		if r.r.RecipientSubject == recipient && r.r.MessageID == messageID {
			return true
		}
	}
	return false
}

// ClaimDue implements domain.DeliveryRepository.
func (s *Store) ClaimDue(_ context.Context, limit int, lease time.Duration) ([]domain.Delivery, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var due []*delivery
	for _, x := range s.deliveries {
		d := x.d
		if (d.Status == domain.StatusPending || d.Status == domain.StatusRetrying) && !d.NextAttemptAt.IsZero() && !d.NextAttemptAt.After(now) {
			due = append(due, x)
		}
	}
	slices.SortFunc(due, func(a, b *delivery) int { return a.d.NextAttemptAt.Compare(b.d.NextAttemptAt) })
	out := make([]domain.Delivery, 0, min(limit, len(due)))
	for _, x := range due[:min(limit, len(due))] {
		x.d.Status, x.d.Attempts, x.d.UpdatedAt = domain.StatusSending, x.d.Attempts+1, now
		x.claimedUntil = now.Add(lease)
		out = append(out, copyDelivery(x.d))
	}
	return out, nil
}

// Release implements domain.DeliveryRepository.
func (s *Store) Release(_ context.Context, id string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if x, ok := s.deliveries[id]; ok && x.d.Status == domain.StatusSending {
		x.d.Status, x.d.Attempts, x.d.NextAttemptAt, x.d.UpdatedAt = domain.StatusPending, x.d.Attempts-1, at, s.now()
		x.claimedUntil = time.Time{}
	}
	return nil
}

// Suppress implements domain.DeliveryRepository.
func (s *Store) Suppress(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if x, ok := s.deliveries[id]; ok {
		x.d.Status, x.d.SuppressionCode, x.d.NextAttemptAt, x.d.UpdatedAt = domain.StatusSuppressed, code, time.Time{}, s.now()
		x.claimedUntil = time.Time{}
	}
	return nil
}

// FinishAttempt implements domain.DeliveryRepository.
func (s *Store) FinishAttempt(_ context.Context, id string, a domain.Attempt, audit []outbox.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkClaimed(id); err != nil {
		return err
	}
	s.finishAttempt(id, a)
	s.outbox = append(s.outbox, audit...)
	return nil
}

func (s *Store) checkClaimed(id string) error {
	if x, ok := s.deliveries[id]; !ok || x.d.Status != domain.StatusSending {
		return fmt.Errorf("finish delivery %s: %w", id, domain.ErrNotClaimed)
	}
	return nil
}

func (s *Store) finishAttempt(id string, a domain.Attempt) {
	x := s.deliveries[id]
	x.d.Status, x.d.NextAttemptAt, x.d.UpdatedAt = a.Status, a.NextAttempt, s.now()
	x.claimedUntil = time.Time{}
	if !slices.ContainsFunc(x.d.Log, func(l domain.Attempt) bool { return l.Attempt == a.Attempt }) {
		x.d.Log = append(x.d.Log, a)
		slices.SortFunc(x.d.Log, func(p, q domain.Attempt) int { return cmp.Compare(p.Attempt, q.Attempt) })
	}
}

// RecoverStaleClaims implements domain.DeliveryRepository.
func (s *Store) RecoverStaleClaims(_ context.Context, limit int, settle func(domain.Delivery) (domain.Attempt, []outbox.Event, error)) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var stale []*delivery
	for _, x := range s.deliveries {
		if x.d.Status == domain.StatusSending && x.claimedUntil.Before(now) {
			stale = append(stale, x)
		}
	}
	slices.SortFunc(stale, func(a, b *delivery) int { return a.claimedUntil.Compare(b.claimedUntil) })
	stale = stale[:min(limit, len(stale))]
	// Decide every outcome before changing anything, so a failing settle commits nothing.
	attempts := make([]domain.Attempt, len(stale))
	var audit []outbox.Event
	for i, x := range stale {
		a, rows, err := settle(copyDelivery(x.d))
		if err != nil {
			return 0, err
		}
		attempts[i], audit = a, append(audit, rows...)
	}
	for i, x := range stale {
		s.finishAttempt(x.d.ID, attempts[i])
	}
	s.outbox = append(s.outbox, audit...)
	return len(stale), nil
}

// ListDeliveries implements domain.DeliveryRepository.
func (s *Store) ListDeliveries(_ context.Context, f domain.DeliveryFilter, after *domain.DeliveryCursor, limit int) ([]domain.Delivery, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []domain.Delivery
	for _, x := range s.deliveries {
		d := x.d
		shown := d.Status
		if shown == domain.StatusSending {
			shown = domain.StatusPending
		}
		switch {
		case d.RecipientSubject != f.Recipient,
			f.Channel != domain.ChannelUnspecified && d.Channel != f.Channel,
			f.Status != 0 && shown != f.Status,
			f.MessageID != "" && d.MessageID != f.MessageID,
			!f.Start.IsZero() && d.CreatedAt.Before(f.Start),
			!f.End.IsZero() && !d.CreatedAt.Before(f.End),
			after != nil && newerFirst(d, after.CreatedAt, after.ID) <= 0:
			continue
		}
		out = append(out, copyDelivery(d))
	}
	slices.SortFunc(out, func(a, b domain.Delivery) int { return newerFirst(a, b.CreatedAt, b.ID) })
	return out[:min(limit, len(out))], nil
}

// newerFirst orders the delivery log newest first, as (created, id) descending: it is
// positive when d comes after the key (created, id), that is when d's key is smaller.
func newerFirst(d domain.Delivery, created time.Time, id string) int {
	return cmp.Or(created.Compare(d.CreatedAt), cmp.Compare(id, d.ID))
}

// MessageTime implements domain.DeliveryRepository.
func (s *Store) MessageTime(_ context.Context, reader, messageID string) (time.Time, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.reminders {
		if r.r.RecipientSubject == reader && r.r.MessageID == messageID {
			return r.r.MessageTime, true, nil
		}
	}
	for _, x := range s.deliveries {
		if x.d.RecipientSubject == reader && x.d.MessageID == messageID {
			return x.d.MessageTime, true, nil
		}
	}
	return time.Time{}, false, nil
}

// CancelForRead implements domain.DeliveryRepository.
func (s *Store) CancelForRead(_ context.Context, reader, thread string, cutoff time.Time) (reminders, deliveries int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.reminders {
		if r.r.RecipientSubject == reader && r.r.ThreadID == thread && r.status == reminderPending && !r.r.MessageTime.After(cutoff) {
			r.status = reminderCancelled
			reminders++
		}
	}
	for _, x := range s.deliveries {
		d := &x.d
		if d.RecipientSubject == reader && d.ThreadID == thread && (d.Status == domain.StatusPending || d.Status == domain.StatusRetrying) && !d.MessageTime.After(cutoff) {
			d.Status, d.SuppressionCode, d.NextAttemptAt, d.UpdatedAt = domain.StatusSuppressed, domain.SuppressAlreadyRead, time.Time{}, s.now()
			deliveries++
		}
	}
	return reminders, deliveries, nil
}

// FireDueReminders implements domain.DeliveryRepository.
func (s *Store) FireDueReminders(_ context.Context, limit int, plan func([]domain.Reminder, map[string]domain.Preferences) (domain.Fanout, error)) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var due []*reminder
	for _, r := range s.reminders {
		if r.status == reminderPending && !r.r.DueAt.After(now) {
			due = append(due, r)
		}
	}
	if len(due) == 0 {
		return 0, nil
	}
	slices.SortFunc(due, func(a, b *reminder) int { return a.r.DueAt.Compare(b.r.DueAt) })
	due = due[:min(limit, len(due))]
	fired := make([]domain.Reminder, len(due))
	subjects := make([]string, len(due))
	for i, r := range due {
		fired[i], subjects[i] = r.r, r.r.RecipientSubject
	}
	f, err := plan(fired, s.preferencesOf(subjects))
	if err != nil {
		return 0, err
	}
	for _, r := range due {
		r.status = reminderFired
	}
	s.addFanout(f)
	return len(due), nil
}

// Template implements domain.TemplateRepository.
func (s *Store) Template(_ context.Context, kind domain.Kind, ch domain.Channel, locale string) (domain.Template, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := domain.Template{Kind: kind, Channel: ch, Locale: locale}
	if t, ok := s.templates[key.Key()]; ok {
		return t, true, nil
	}
	return key, false, nil
}

// Templates implements domain.TemplateRepository.
func (s *Store) Templates(context.Context) ([]domain.Template, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Collect(maps.Values(s.templates))
	slices.SortFunc(out, func(a, b domain.Template) int { return cmp.Compare(a.Key(), b.Key()) })
	return out, nil
}

// UpdateTemplate implements domain.TemplateRepository.
func (s *Store) UpdateTemplate(_ context.Context, key domain.Template, update func(*domain.Template) ([]outbox.Event, error)) (domain.Template, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.templates[key.Key()]
	if !ok {
		cur = domain.Template{Kind: key.Kind, Channel: key.Channel, Locale: key.Locale}
	}
	stored := cur.Version
	audit, err := update(&cur)
	if err != nil {
		return domain.Template{}, err
	}
	cur.Kind, cur.Channel, cur.Locale = key.Kind, key.Channel, key.Locale
	cur.Version, cur.UpdateTime, cur.Default = stored+1, s.now(), false
	s.templates[key.Key()] = cur
	s.outbox = append(s.outbox, audit...)
	return cur, nil
}
