package app

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// WatchSettings tune live inbox watches (WatchInbox). Zero values take the defaults.
type WatchSettings struct {
	// Heartbeat is how long a watch may stay silent before a keep-alive is sent (default 15s),
	// so that proxies and load balancers do not close an idle stream.
	Heartbeat time.Duration
	// Buffer is how many changes wait for one watcher before it counts as fallen behind
	// (default 64, the feed's largest batch): the overflow is dropped and the watcher is told to
	// resync, so a slow client costs a bounded amount of memory (about 8 KiB at the default).
	Buffer int
	// MaxPerSubject bounds the watches one person holds open at once on this replica, across
	// their devices and tabs (default 8).
	MaxPerSubject int
	// MaxTokenAge and MaxSessionAge are the token verifier's limits (defaults
	// auth.DefaultMaxTokenAge and auth.DefaultMaxAuthAge): a watch ends when the token it was
	// opened with would no longer be accepted.
	MaxTokenAge, MaxSessionAge time.Duration
	// FeedTimeout is how long a new watch waits for the event feed to be live (default 10s).
	FeedTimeout time.Duration
}

func (w WatchSettings) withDefaults() WatchSettings {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&w.Heartbeat, 15*time.Second)
	def(&w.MaxTokenAge, auth.DefaultMaxTokenAge)
	def(&w.MaxSessionAge, auth.DefaultMaxAuthAge)
	def(&w.FeedTimeout, 10*time.Second)
	if w.Buffer <= 0 {
		w.Buffer = 64
	}
	if w.MaxPerSubject <= 0 {
		w.MaxPerSubject = 8
	}
	return w
}

// Refusals and endings of WatchInbox.
var (
	// ErrWatchExpired ends a watch when the caller's token, or its session, expires. It is no
	// usererr value because usererr has no Unauthenticated kind: the port sends it as
	// UNAUTHENTICATED with reason TOKEN_EXPIRED.
	ErrWatchExpired   = errors.New("watch: the caller's access token expired")
	errTooManyWatches = usererr.New(usererr.ResourceExhausted, "TOO_MANY_WATCHES",
		"too many open watches for this user; close one and try again")
	errWatchUnavailable = usererr.New(usererr.Unavailable, "WATCH_UNAVAILABLE",
		"live updates are unavailable; try again later")
	// errServiceStopping ends every watch of a replica that shuts down, so that its clients
	// reconnect (to another replica) at once instead of being cut off at the shutdown deadline.
	errServiceStopping = usererr.New(usererr.Unavailable, "SERVICE_STOPPING",
		"the service is restarting; reconnect")
)

// NoticeKind is what a watch hands its port next.
type NoticeKind int

// Notices.
const (
	// NoticeHeartbeat: nothing to report; the stream is alive. The first notice of every
	// watch is one, sent once the watch is registered.
	NoticeHeartbeat NoticeKind = iota + 1
	// NoticeChange: Notice.Change happened to one of the watcher's threads.
	NoticeChange
	// NoticeResync: changes were dropped because the watcher fell behind (or could not be
	// checked); the client lists its threads again.
	NoticeResync
)

// Notice is one message of a watch.
type Notice struct {
	Kind   NoticeKind
	Change domain.InboxChange
}

// Watch is one open WatchInbox stream: the principal it serves, the changes queued for it and
// when it must end. Next is called by one goroutine (the stream's); the event feed offers
// changes from another.
type Watch struct {
	hub *watchHub
	p   *auth.Principal
	// ends is when the watch must end, on the monotonic clock its timers run on.
	ends      time.Time
	heartbeat time.Duration
	// patients and pools are the index keys the watch is registered under.
	patients, pools []string

	changes chan domain.InboxChange
	// behind is set when a change did not fit in changes; wake tells Next at once.
	behind   atomic.Bool
	wake     chan struct{}
	greeted  bool
	closeOne sync.Once
}

// Next waits for the watch's next notice: a queued change, a resync once the watcher fell
// behind, or a heartbeat after the configured silence. It returns ErrWatchExpired when the
// caller's token expires and ctx's error when the caller goes away.
func (w *Watch) Next(ctx context.Context) (Notice, error) {
	if !w.greeted {
		w.greeted = true
		return Notice{Kind: NoticeHeartbeat}, nil
	}
	left := time.Until(w.ends)
	if left <= 0 {
		return Notice{}, ErrWatchExpired
	}
	ends := time.NewTimer(left)
	defer ends.Stop()
	idle := time.NewTimer(w.heartbeat)
	defer idle.Stop()
	for {
		if w.behind.Swap(false) {
			// What is queued is older than the resync, which supersedes it: the client's
			// re-read after the resync sees those changes anyway.
			w.discardQueued()
			w.hub.resyncs.Add(1)
			return Notice{Kind: NoticeResync}, nil
		}
		select {
		case <-ctx.Done():
			return Notice{}, ctx.Err()
		case <-w.hub.stopping:
			return Notice{}, errServiceStopping
		case <-ends.C:
			return Notice{}, ErrWatchExpired
		case <-idle.C:
			return Notice{Kind: NoticeHeartbeat}, nil
		case c := <-w.changes:
			if w.behind.Load() {
				continue // the resync at the top of the loop covers it
			}
			w.hub.sent.Add(1)
			return Notice{Kind: NoticeChange, Change: c}, nil
		case <-w.wake:
		}
	}
}

// Close unregisters the watch; further changes are not queued for it.
func (w *Watch) Close() { w.closeOne.Do(func() { w.hub.remove(w) }) }

// offer queues c without ever blocking the feed: when the watcher's buffer is full, the change
// is dropped and the watcher will get a resync instead.
func (w *Watch) offer(c domain.InboxChange) {
	select {
	case w.changes <- c:
	default:
		w.fallBehind()
	}
}

func (w *Watch) fallBehind() {
	w.behind.Store(true)
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *Watch) discardQueued() {
	for {
		select {
		case <-w.changes:
		default:
			return
		}
	}
}

// watchHub holds this replica's open watches, indexed by the patients and care pools whose
// threads each may hear of, so that a change is checked against the few watches it could
// concern rather than all of them.
type watchHub struct {
	cfg WatchSettings

	mu        sync.RWMutex
	count     int
	bySubject map[string]int
	byPatient map[string]map[*Watch]struct{}
	byPool    map[string]map[*Watch]struct{}

	// live is closed once the event feed follows the stream.
	live     chan struct{}
	liveOnce sync.Once
	// stopping is closed when the replica shuts down: every watch ends.
	stopping chan struct{}
	stopOnce sync.Once

	// sent and resyncs count the changes and resyncs handed to watchers (WatchStats).
	sent, resyncs atomic.Uint64
}

func newWatchHub(cfg WatchSettings) *watchHub {
	return &watchHub{
		cfg: cfg, bySubject: map[string]int{}, byPatient: map[string]map[*Watch]struct{}{},
		byPool: map[string]map[*Watch]struct{}{}, live: make(chan struct{}), stopping: make(chan struct{}),
	}
}

// visibleKeys are the patients and pools whose threads p may hear of at most: its own patient
// record, the patients it holds a proxy grant for and its care pools. The policy decides
// each change; these keys only narrow which watches are asked.
func visibleKeys(p *auth.Principal) (patients, pools []string) {
	if p.HasRole(auth.RolePatient) && p.PatientID != "" {
		patients = append(patients, p.PatientID)
	}
	if p.HasRole(auth.RoleProxy) {
		for _, g := range p.ProxyGrants {
			if !contains(patients, g.PatientID) {
				patients = append(patients, g.PatientID)
			}
		}
	}
	if p.HasRole(auth.RoleClinician) || p.HasRole(auth.RoleStaff) {
		pools = append(pools, p.CarePools...)
	}
	return patients, pools
}

// add registers a watch for p that lasts for the given time.
func (h *watchHub) add(p *auth.Principal, lasts time.Duration) (*Watch, error) {
	w := &Watch{
		hub: h, p: p, ends: time.Now().Add(lasts), heartbeat: h.cfg.Heartbeat,
		changes: make(chan domain.InboxChange, h.cfg.Buffer), wake: make(chan struct{}, 1),
	}
	w.patients, w.pools = visibleKeys(p)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.bySubject[p.Subject] >= h.cfg.MaxPerSubject {
		return nil, errTooManyWatches
	}
	h.bySubject[p.Subject]++
	h.count++
	for _, id := range w.patients {
		index(h.byPatient, id, w)
	}
	for _, id := range w.pools {
		index(h.byPool, id, w)
	}
	return w, nil
}

func (h *watchHub) remove(w *Watch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.bySubject[w.p.Subject]--; h.bySubject[w.p.Subject] <= 0 {
		delete(h.bySubject, w.p.Subject)
	}
	h.count--
	for _, id := range w.patients {
		unindex(h.byPatient, id, w)
	}
	for _, id := range w.pools {
		unindex(h.byPool, id, w)
	}
}

func index(m map[string]map[*Watch]struct{}, key string, w *Watch) {
	if m[key] == nil {
		m[key] = map[*Watch]struct{}{}
	}
	m[key][w] = struct{}{}
}

func unindex(m map[string]map[*Watch]struct{}, key string, w *Watch) {
	delete(m[key], w)
	if len(m[key]) == 0 {
		delete(m, key)
	}
}

func (h *watchHub) empty() bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.count == 0
}

// candidates are the watches that may hear of a thread about patientID in poolID.
func (h *watchHub) candidates(patientID, poolID string) []*Watch {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]*Watch, 0, len(h.byPatient[patientID])+len(h.byPool[poolID]))
	for w := range h.byPatient[patientID] {
		out = append(out, w)
	}
	for w := range h.byPool[poolID] {
		if _, dup := h.byPatient[patientID][w]; !dup {
			out = append(out, w)
		}
	}
	return out
}

// resyncAll tells every watch to resync (a change could not be checked).
func (h *watchHub) resyncAll() {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, set := range []map[string]map[*Watch]struct{}{h.byPatient, h.byPool} {
		for _, ws := range set {
			for w := range ws {
				w.fallBehind()
			}
		}
	}
}

// WatchInbox opens a live watch of the threads p may read; it ends at tokenExpires, or
// earlier when the verifier's token-age or session-age limit would refuse the token. The
// caller must Close it.
func (s *Service) WatchInbox(ctx context.Context, p *auth.Principal, tokenExpires time.Time) (*Watch, error) {
	cfg := s.watches.cfg
	ends := tokenExpires
	if !p.IssuedAt.IsZero() {
		ends = earliest(ends, p.IssuedAt.Add(cfg.MaxTokenAge))
	}
	if !p.AuthTime.IsZero() {
		ends = earliest(ends, p.AuthTime.Add(cfg.MaxSessionAge))
	}
	if ends.IsZero() || !ends.After(s.Now()) {
		return nil, ErrWatchExpired
	}
	// A watch is answered only once the feed follows the stream, so that its first heartbeat
	// can promise every later change.
	wait := time.NewTimer(cfg.FeedTimeout)
	defer wait.Stop()
	select {
	case <-s.watches.stopping:
		return nil, errServiceStopping
	default:
	}
	select {
	case <-s.watches.live:
	case <-s.watches.stopping:
		return nil, errServiceStopping
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-wait.C:
		return nil, errWatchUnavailable
	}
	lasts := ends.Sub(s.Now())
	if lasts <= 0 {
		return nil, ErrWatchExpired
	}
	return s.watches.add(p, lasts)
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// WatchStats are this replica's live-watch figures, for its metrics.
type WatchStats struct {
	// Open is the number of open watches.
	Open int
	// ChangesSent and Resyncs count the change notices and resyncs handed to watchers.
	ChangesSent, Resyncs uint64
}

// WatchStats returns the replica's live-watch figures.
func (s *Service) WatchStats() WatchStats {
	h := s.watches
	h.mu.RLock()
	open := h.count
	h.mu.RUnlock()
	return WatchStats{Open: open, ChangesSent: h.sent.Load(), Resyncs: h.resyncs.Load()}
}

// EndWatches ends every open watch with UNAVAILABLE (reason SERVICE_STOPPING) and refuses new
// ones: the replica is shutting down, and its watchers should reconnect elsewhere now rather
// than hold the graceful stop up until its deadline.
func (s *Service) EndWatches() { s.watches.stopOnce.Do(func() { close(s.watches.stopping) }) }

// InboxFeedLive tells the service that the event feed follows the stream: watches may open.
func (s *Service) InboxFeedLive() { s.watches.liveOnce.Do(func() { close(s.watches.live) }) }

// DeliverChange hands one committed change to the open watches that may hear of it
// (DeliverChanges of one).
func (s *Service) DeliverChange(ctx context.Context, c domain.InboxChange) {
	s.DeliverChanges(ctx, []domain.InboxChange{c})
}

// DeliverChanges hands committed changes, in stream order, to the open watches that may hear
// of them: each watch is asked the policy's record-level GetThread question on the thread as
// it stands now (loaded without decrypting anything, all of a batch's threads in one round
// trip), so a watcher hears only of threads it could open. The feed calls it with whatever
// events have arrived, so a burst costs one load rather than one per event.
func (s *Service) DeliverChanges(ctx context.Context, cs []domain.InboxChange) {
	if len(cs) == 0 || s.watches.empty() {
		return
	}
	ids := make([]string, 0, len(cs))
	for _, c := range cs {
		if !contains(ids, c.ThreadID) {
			ids = append(ids, c.ThreadID)
		}
	}
	threads, err := s.Threads.Threads(ctx, ids)
	if err != nil {
		// The changes cannot be checked, so they are sent to nobody; the watchers that might
		// have heard of them re-read instead of missing them silently.
		s.Logger.WarnContext(ctx, "inbox changes not checked; watchers resync",
			slog.Int("changes", len(cs)), slog.String("error", err.Error()))
		s.watches.resyncAll()
		return
	}
	for _, c := range cs {
		t, ok := threads[c.ThreadID]
		if !ok {
			continue // purged since: nobody may open it
		}
		res := threadResource(t)
		// Only a transfer has a second audience to keep apart from the first; every other
		// change (the hot path) allocates nothing for it.
		var told map[*Watch]bool
		if c.FromPoolID != "" && c.FromPoolID != t.PoolID {
			told = map[*Watch]bool{}
		}
		for _, w := range s.watches.candidates(t.PatientID, t.PoolID) {
			if c.OnlyFor != "" && c.OnlyFor != w.p.Subject {
				continue
			}
			if s.Policy.Evaluate(w.p, actGetThread, res, policy.Context{}).Allowed {
				w.offer(c)
				if told != nil {
					told[w] = true
				}
			}
		}
		if told != nil {
			// The pool the thread left: whoever could open it there until the transfer hears
			// that it went (ids only), and can no longer open it.
			before := *t
			before.PoolID = c.FromPoolID
			resBefore := threadResource(&before)
			for _, w := range s.watches.candidates(t.PatientID, c.FromPoolID) {
				if !told[w] && s.Policy.Evaluate(w.p, actGetThread, resBefore, policy.Context{}).Allowed {
					w.offer(c)
				}
			}
		}
	}
}
