// Package memstore is an in-memory implementation of the messaging repositories, for tests of
// the use cases that need no database. It keeps the Postgres adapter's semantics — one commit
// per method, nothing written when any part fails, row locks for UpdateThread, unique request
// ids — and the contract tests in adapters/repotest hold the two to the same behaviour. It
// also keeps every committed outbox row, so tests can read the events and audit records a use
// case wrote.
package memstore

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// Store implements every messaging repository of the domain (repotest.Store, which the
// contract tests hold it to) in memory. It is safe for concurrent use.
type Store struct {
	// rows serialises writes to one thread, as its row lock does in Postgres; taken before mu.
	rows sync.Map // thread id → *sync.Mutex

	mu           sync.Mutex
	threads      map[string]*domain.Thread
	messages     map[string][]*domain.Message // by thread id, in seq order
	viewers      map[viewerKey]viewerState
	receipts     map[string][]domain.ReadReceipt // by thread id, in write order
	breakGlass   []breakGlassRow
	settings     map[string]domain.PoolSettings
	patientHolds map[string]domain.LegalHold // patient id → the hold over their threads
	outbox       []outbox.Event
	purgeLocks   map[string]bool
	failWrites   error
	pools        map[string]domain.Pool
	members      map[string]map[string]domain.PoolMember // pool id → subject → member
	apps         map[string]domain.ClientApp
	grants       map[string]domain.ProxyGrant
	people       map[string]domain.Person

	// threadHolds says who placed each thread's own hold and when (the flag and case are the
	// thread's), by thread id.
	threadHolds map[string]domain.LegalHold
}

type viewerKey struct{ thread, subject string }

type viewerState struct {
	readSeq  int32
	archived time.Time
}

type breakGlassRow struct {
	threadID string
	bg       domain.BreakGlass
}

// New returns an empty Store.
func New() *Store {
	return &Store{
		threads: map[string]*domain.Thread{}, messages: map[string][]*domain.Message{},
		viewers: map[viewerKey]viewerState{}, settings: map[string]domain.PoolSettings{},
		patientHolds: map[string]domain.LegalHold{}, threadHolds: map[string]domain.LegalHold{}, purgeLocks: map[string]bool{},
		pools: map[string]domain.Pool{}, members: map[string]map[string]domain.PoolMember{}, apps: map[string]domain.ClientApp{},
		grants: map[string]domain.ProxyGrant{}, receipts: map[string][]domain.ReadReceipt{},
		people: map[string]domain.Person{},
	}
}

// Outbox returns a copy of every outbox row committed so far, in write order.
func (s *Store) Outbox() []outbox.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.outbox)
}

// FailWrites makes every later write fail with err, writing nothing, as a database that stopped
// taking commits would (nil heals it). Reads still work.
func (s *Store) FailWrites(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failWrites = err
}

// BreakGlassCount is how many break-the-glass reasons are stored for a thread.
func (s *Store) BreakGlassCount(threadID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.breakGlass {
		if r.threadID == threadID {
			n++
		}
	}
	return n
}

// lockRow takes a thread's row lock and returns its release.
func (s *Store) lockRow(id string) func() {
	m, _ := s.rows.LoadOrStore(id, &sync.Mutex{})
	mu, _ := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// checkOutbox validates rows as the outbox insert would and fills in missing ids.
func checkOutbox(rows []outbox.Event) ([]outbox.Event, error) {
	if _, err := outbox.NewRows(context.Background(), rows...); err != nil {
		return nil, domain.NotRecorded(err)
	}
	out := slices.Clone(rows)
	for i := range out {
		if out[i].ID == "" {
			out[i].ID = outbox.NewID()
		}
	}
	return out, nil
}

// commit appends rows to the outbox, refusing repeated event ids as the unique index does.
// Callers hold mu and call it last, when nothing else can fail.
func (s *Store) commitOutbox(rows []outbox.Event) error {
	for _, r := range rows {
		for _, o := range s.outbox {
			if o.ID == r.ID {
				return domain.NotRecorded(errors.New("memstore: repeated outbox id " + r.ID))
			}
		}
	}
	s.outbox = append(s.outbox, rows...)
	return nil
}

// writable reports the injected write failure, if any. Callers hold mu.
func (s *Store) writable() error { return s.failWrites }

// cloneThread and cloneMessage copy a value with its slices, so that what the store holds and
// what callers hold never share memory.
func cloneThread(t *domain.Thread) *domain.Thread {
	c := *t
	c.Participants, c.SubjectSealed, c.TransferNoteSealed = slices.Clone(t.Participants), slices.Clone(t.SubjectSealed), slices.Clone(t.TransferNoteSealed)
	return &c
}

func cloneMessage(m *domain.Message) *domain.Message {
	c := *m
	c.AttachmentIDs, c.BodySealed, c.RequestFPSealed = slices.Clone(m.AttachmentIDs), slices.Clone(m.BodySealed), slices.Clone(m.RequestFPSealed)
	return &c
}

// threadOut is a stored thread as a read returns it. Callers hold mu.
func (s *Store) threadOut(t *domain.Thread) *domain.Thread {
	c := cloneThread(t)
	_, c.PatientLegalHold = s.patientHolds[t.PatientID]
	if c.Participants == nil {
		c.Participants = []string{}
	}
	return c
}

// Thread implements domain.ThreadRepository.
func (s *Store) Thread(_ context.Context, id string) (*domain.Thread, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.threads[id]
	if !ok {
		return nil, domain.ErrThreadNotFound
	}
	return s.threadOut(t), nil
}

// Threads implements domain.ThreadRepository.
func (s *Store) Threads(_ context.Context, ids []string) (map[string]*domain.Thread, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]*domain.Thread, len(ids))
	for _, id := range ids {
		if t, ok := s.threads[id]; ok {
			out[id] = s.threadOut(t)
		}
	}
	return out, nil
}

// ThreadAndRequest implements domain.ThreadRepository.
func (s *Store) ThreadAndRequest(_ context.Context, threadID, sender, requestID string) (*domain.Thread, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.threads[threadID]
	if !ok {
		return nil, false, nil
	}
	created, retracted := s.byRequest(sender, requestID)
	return s.threadOut(t), created != nil || retracted != nil, nil
}

// byRequest finds the messages sender's request id created and retracted. Callers hold mu.
func (s *Store) byRequest(sender, requestID string) (created, retracted *domain.Message) {
	if requestID == "" {
		return nil, nil
	}
	for _, msgs := range s.messages {
		for _, m := range msgs {
			if m.SenderSubject == sender && m.ClientRequestID == requestID {
				created = m
			}
			if m.RetractedBySubject == sender && m.RetractRequestID == requestID {
				retracted = m
			}
		}
	}
	return created, retracted
}

// staged is a transaction's working copy of the threads and messages it changes. Callers
// hold mu.
type staged struct {
	s        *Store
	threads  map[string]*domain.Thread
	messages map[string][]*domain.Message
	marks    []threadMark
}

// threadMark is a read mark to raise when a staged change commits.
type threadMark struct {
	thread string
	mark   domain.ReadMark
}

func (s *Store) stage() *staged {
	return &staged{s: s, threads: map[string]*domain.Thread{}, messages: map[string][]*domain.Message{}}
}

func (st *staged) thread(id string) (*domain.Thread, bool) {
	if t, ok := st.threads[id]; ok {
		return t, true
	}
	t, ok := st.s.threads[id]
	if !ok {
		return nil, false
	}
	st.threads[id] = cloneThread(t)
	return st.threads[id], true
}

func (st *staged) threadMessages(id string) []*domain.Message {
	if msgs, ok := st.messages[id]; ok {
		return msgs
	}
	msgs := make([]*domain.Message, len(st.s.messages[id]))
	for i, m := range st.s.messages[id] {
		msgs[i] = cloneMessage(m)
	}
	st.messages[id] = msgs
	return msgs
}

// requestTaken reports whether a unique index of messages already holds m's id or request id.
func (st *staged) requestTaken(m *domain.Message) bool {
	seen := map[string]bool{}
	check := func(msgs []*domain.Message) bool {
		for _, o := range msgs {
			if o.ID == m.ID || (m.ClientRequestID != "" && o.SenderSubject == m.SenderSubject && o.ClientRequestID == m.ClientRequestID) {
				return true
			}
		}
		return false
	}
	for id, msgs := range st.messages {
		seen[id] = true
		if check(msgs) {
			return true
		}
	}
	for id, msgs := range st.s.messages {
		if !seen[id] && check(msgs) {
			return true
		}
	}
	return false
}

// appendMessage appends m to its thread by the domain's rule.
func (st *staged) appendMessage(m *domain.Message, markAutoReplied bool) (domain.Appended, error) {
	t, ok := st.thread(m.ThreadID)
	if !ok || t.Status == domain.StatusClosed {
		return domain.Appended{}, domain.ErrThreadClosed
	}
	if st.requestTaken(m) {
		return domain.Appended{}, domain.ErrRequestConflict
	}
	if err := t.Append(m, markAutoReplied); err != nil {
		return domain.Appended{}, err
	}
	stored := cloneMessage(m)
	if stored.AttachmentIDs == nil {
		stored.AttachmentIDs = []string{}
	}
	st.messages[t.ID] = append(st.threadMessages(t.ID), stored)
	if m.SenderSubject != "" && !m.AutoReply {
		st.marks = append(st.marks, threadMark{t.ID, domain.ReadMark{Subject: m.SenderSubject, Role: m.SenderRole, OnBehalfOf: m.OnBehalfOf, Seq: m.Seq, At: m.CreatedAt}})
	}
	return domain.Appended{Participants: slices.Clone(t.Participants), Assignee: t.AssigneeSubject}, nil
}

// appendAll appends each message and returns rows followed by their effects' rows.
func (st *staged) appendAll(rows []outbox.Event, appends domain.Appends) ([]outbox.Event, error) {
	return appends.Apply(rows, st.appendMessage)
}

// commit writes the staged changes and rows, or nothing.
func (st *staged) commit(rows []outbox.Event) error {
	if err := st.s.writable(); err != nil {
		return err
	}
	rows, err := checkOutbox(rows)
	if err != nil {
		return err
	}
	if err := st.s.commitOutbox(rows); err != nil {
		return err
	}
	for id, t := range st.threads {
		st.s.threads[id] = t
	}
	for id, msgs := range st.messages {
		st.s.messages[id] = msgs
	}
	for _, m := range st.marks {
		st.s.raise(m.thread, m.mark)
	}
	return nil
}

// raise raises a read mark and records its receipt, when it rises. Callers hold mu.
func (s *Store) raise(threadID string, mark domain.ReadMark) {
	k := viewerKey{threadID, mark.Subject}
	vs := s.viewers[k]
	if mark.Seq <= vs.readSeq {
		return
	}
	vs.readSeq = mark.Seq
	s.viewers[k] = vs
	s.receipts[threadID] = append(s.receipts[threadID], mark)
}

// CreateThread implements domain.ThreadRepository.
func (s *Store) CreateThread(_ context.Context, t *domain.Thread, rows []outbox.Event, appends domain.Appends) error {
	defer s.lockRow(t.ID)()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.threads[t.ID]; ok {
		return domain.ErrRequestConflict
	}
	st := s.stage()
	stored := cloneThread(t)
	stored.MessageCount, stored.UpdatedAt, stored.LastMessageAt, stored.LastSenderRole = 0, t.CreatedAt, t.CreatedAt, t.CreatedByRole
	stored.AssigneeSubject, stored.Participants, stored.AutoReplied, stored.HasAttachments = "", []string{}, false, false
	stored.LegalHold, stored.LegalHoldCase, stored.TransferNoteSealed, stored.ClosedAt = false, "", nil, time.Time{}
	st.threads[t.ID], st.messages[t.ID] = stored, nil
	rows, err := st.appendAll(rows, appends)
	if err != nil {
		return err
	}
	return st.commit(rows)
}

// AppendMessageIfUnchanged implements domain.ThreadRepository.
func (s *Store) AppendMessageIfUnchanged(_ context.Context, t *domain.Thread, m *domain.Message, rows []outbox.Event) error {
	if _, err := checkOutbox(rows); err != nil {
		return err
	}
	defer s.lockRow(t.ID)()
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.threads[m.ThreadID]
	if !ok || cur.Status == domain.StatusClosed || cur.PoolID != t.PoolID || cur.Sensitivity != t.Sensitivity ||
		cur.AssigneeSubject != t.AssigneeSubject || !slices.Equal(cur.Participants, t.Participants) {
		return domain.ErrThreadChanged
	}
	st := s.stage()
	if _, err := st.appendMessage(m, false); err != nil {
		return err
	}
	return st.commit(rows)
}

// UpdateThread implements domain.ThreadRepository.
func (s *Store) UpdateThread(_ context.Context, id string, change func(*domain.Thread, domain.PoolSettingsReader) (domain.ThreadChange, error)) (*domain.Thread, error) {
	defer s.lockRow(id)()
	s.mu.Lock()
	t, ok := s.threads[id]
	var cur *domain.Thread
	if ok {
		cur = s.threadOut(t)
	}
	s.mu.Unlock()
	if !ok {
		return nil, domain.ErrThreadNotFound
	}
	// The callback runs without mu, as the use case's own reads and denials need the store.
	c, err := change(cur, s)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stage()
	if _, ok := st.thread(id); !ok {
		return nil, domain.ErrThreadNotFound
	}
	if c.Triage != nil {
		t, _ := st.thread(id)
		t.Status, t.AssigneeSubject, t.PoolID, t.ClosedAt, t.UpdatedAt = c.Triage.Status, c.Triage.Assignee, c.Triage.PoolID, c.Triage.ClosedAt, c.Triage.UpdatedAt
		if c.Triage.TransferNoteSealed != nil {
			t.TransferNoteSealed = slices.Clone(c.Triage.TransferNoteSealed)
		}
	}
	rows, err := st.appendAll(c.Rows, c.Appends)
	if err != nil {
		return nil, err
	}
	if err := st.commit(rows); err != nil {
		return nil, err
	}
	if c.Triage != nil {
		return s.threadOut(s.threads[id]), nil
	}
	return cur, nil
}

// SetThreadHold implements domain.ThreadRepository.
func (s *Store) SetThreadHold(_ context.Context, threadID string, on bool, caseRef, by string, at time.Time, rows []outbox.Event) (bool, error) {
	defer s.lockRow(threadID)()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stage()
	changed := false
	if t, ok := st.thread(threadID); ok && t.LegalHold != on {
		t.LegalHold, t.LegalHoldCase, changed = on, caseRef, true
	}
	if err := st.commit(rows); err != nil {
		return false, err
	}
	if changed && on {
		s.threadHolds[threadID] = domain.LegalHold{ThreadID: threadID, CaseReference: caseRef, CreatedBySubject: by, CreatedAt: at.UTC().Truncate(time.Microsecond)}
	} else if changed {
		delete(s.threadHolds, threadID)
	}
	return changed, nil
}

// SetPatientHold implements domain.ThreadRepository.
func (s *Store) SetPatientHold(_ context.Context, patientID string, on bool, caseRef, by string, at time.Time, rows []outbox.Event) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, held := s.patientHolds[patientID]
	if err := s.stage().commit(rows); err != nil {
		return 0, err
	}
	if held == on {
		return 0, nil
	}
	if on {
		s.patientHolds[patientID] = domain.LegalHold{PatientID: patientID, CaseReference: caseRef, CreatedBySubject: by, CreatedAt: at.UTC().Truncate(time.Microsecond)}
	} else {
		delete(s.patientHolds, patientID)
	}
	var n int64
	for _, t := range s.threads {
		if t.PatientID == patientID && !t.LegalHold {
			n++
		}
	}
	return n, nil
}

// WriteAudit implements domain.AuditWriter.
func (s *Store) WriteAudit(_ context.Context, rows []outbox.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stage().commit(rows)
}

// Message implements domain.MessageRepository.
func (s *Store) Message(_ context.Context, threadID, id string) (*domain.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.messages[threadID] {
		if m.ID == id {
			return cloneMessage(m), nil
		}
	}
	return nil, domain.ErrMessageNotFound
}

// MessageByID implements domain.MessageRepository.
func (s *Store) MessageByID(_ context.Context, id string) (*domain.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, msgs := range s.messages {
		for _, m := range msgs {
			if m.ID == id {
				return cloneMessage(m), nil
			}
		}
	}
	return nil, domain.ErrMessageNotFound
}

// MessageByRequest implements domain.MessageRepository.
func (s *Store) MessageByRequest(_ context.Context, sender, requestID string) (*domain.Message, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	created, retracted := s.byRequest(sender, requestID)
	switch {
	case created != nil:
		return cloneMessage(created), false, nil
	case retracted != nil:
		return cloneMessage(retracted), true, nil
	}
	return nil, false, nil
}

// Messages implements domain.MessageRepository.
func (s *Store) Messages(_ context.Context, threadID string, afterSeq int32, limit int) ([]*domain.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.page(threadID, afterSeq, limit), nil
}

// page is up to limit messages after afterSeq. Callers hold mu.
func (s *Store) page(threadID string, afterSeq int32, limit int) []*domain.Message {
	var out []*domain.Message
	for _, m := range s.messages[threadID] {
		if m.Seq > afterSeq && len(out) < limit {
			out = append(out, cloneMessage(m))
		}
	}
	return out
}

// RetractMessage implements domain.MessageRepository.
func (s *Store) RetractMessage(_ context.Context, m *domain.Message, rows []outbox.Event, appends domain.Appends) error {
	defer s.lockRow(m.ThreadID)()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stage()
	var target *domain.Message
	for _, o := range st.threadMessages(m.ThreadID) {
		if o.ID == m.ID {
			target = o
		}
	}
	if target == nil || target.Retracted() {
		return domain.ErrAlreadyRetracted
	}
	if m.RetractRequestID != "" {
		for _, msgs := range s.messages {
			for _, o := range msgs {
				if o.RetractedBySubject == m.RetractedBySubject && o.RetractRequestID == m.RetractRequestID {
					return domain.ErrRequestConflict
				}
			}
		}
	}
	target.RetractedAt, target.RetractedBySubject, target.RetractedByRole = m.RetractedAt, m.RetractedBySubject, m.RetractedByRole
	target.RetractReasonCode, target.RetractRequestID, target.CorrectionMessageID = m.RetractReasonCode, m.RetractRequestID, m.CorrectionMessageID
	rows, err := st.appendAll(rows, appends)
	if err != nil {
		return err
	}
	return st.commit(rows)
}

// viewer is subject's state in a thread. Callers hold mu.
func (s *Store) viewer(threadID, subject string) domain.Viewer {
	vs := s.viewers[viewerKey{threadID, subject}]
	v := domain.Viewer{ReadSeq: vs.readSeq, ArchivedAt: vs.archived}
	if t, ok := s.threads[threadID]; ok {
		v.Unread = max(t.MessageCount-vs.readSeq, 0)
	}
	return v
}

// ListThreads implements domain.InboxRepository with the Postgres adapter's filters.
func (s *Store) ListThreads(_ context.Context, q domain.ListQuery) ([]domain.ListedThread, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []domain.ListedThread
	for _, lt := range s.selected(q) {
		t, v := lt.Thread, lt.Viewer
		switch q.Assignee {
		case domain.AssigneeMe:
			if t.AssigneeSubject != q.Viewer {
				continue
			}
		case domain.AssigneeUnassigned:
			if t.AssigneeSubject != "" {
				continue
			}
		case domain.AssigneeMember:
			if t.AssigneeSubject != q.AssigneeSubject {
				continue
			}
		}
		if q.UnreadOnly && v.Unread == 0 {
			continue
		}
		if q.AfterID != "" && !before(t, q.AfterTime, q.AfterID) {
			continue
		}
		out = append(out, domain.ListedThread{Thread: s.threadOut(t), Viewer: v})
	}
	slices.SortFunc(out, func(a, b domain.ListedThread) int {
		if c := b.Thread.LastMessageAt.Compare(a.Thread.LastMessageAt); c != 0 {
			return c
		}
		return cmp.Compare(b.Thread.ID, a.Thread.ID)
	})
	return out[:min(len(out), q.Limit)], nil
}

// CountThreads implements domain.InboxRepository.
func (s *Store) CountThreads(_ context.Context, q domain.ListQuery) (domain.ThreadCounts, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var c domain.ThreadCounts
	for _, lt := range s.selected(q) {
		c.Total++
		if lt.Viewer.Unread > 0 {
			c.Unread++
			c.UnreadMessages += int64(lt.Viewer.Unread)
		}
		switch lt.Thread.AssigneeSubject {
		case "":
			c.Unassigned++
		case q.Viewer:
			c.AssignedToMe++
		}
	}
	return c, nil
}

// selected is the threads q's visibility, box, pool, patient, status and category select (the
// stored threads, not copies). Callers hold mu.
func (s *Store) selected(q domain.ListQuery) []domain.ListedThread {
	if q.OwnPatientID == "" && len(q.ProxyPatientIDs) == 0 && len(q.PoolIDs) == 0 {
		return nil
	}
	var out []domain.ListedThread
	for _, t := range s.threads {
		visible := (q.OwnPatientID != "" && t.PatientID == q.OwnPatientID) ||
			(slices.Contains(q.ProxyPatientIDs, t.PatientID) && t.Sensitivity != commonv1.Sensitivity_SENSITIVITY_ADOLESCENT_CONFIDENTIAL) ||
			slices.Contains(q.PoolIDs, t.PoolID)
		if !visible || (q.FilterPatientID != "" && t.PatientID != q.FilterPatientID) ||
			(len(q.FilterPoolIDs) > 0 && !slices.Contains(q.FilterPoolIDs, t.PoolID)) ||
			(len(q.Statuses) > 0 && !slices.Contains(q.Statuses, t.Status)) ||
			(len(q.Categories) > 0 && !slices.Contains(q.Categories, t.Category)) {
			continue
		}
		v := s.viewer(t.ID, q.Viewer)
		switch q.Box {
		case domain.BoxArchived:
			if v.ArchivedAt.IsZero() {
				continue
			}
		case domain.BoxSent:
			careTeam := t.CreatedByRole == commonv1.Role_ROLE_CLINICIAN || t.CreatedByRole == commonv1.Role_ROLE_STAFF
			sentByViewerOrTeam := t.CreatedBySubject == q.Viewer || (careTeam && slices.Contains(q.PoolIDs, t.PoolID))
			if !v.ArchivedAt.IsZero() || !sentByViewerOrTeam {
				continue
			}
		default:
			if !v.ArchivedAt.IsZero() {
				continue
			}
		}
		out = append(out, domain.ListedThread{Thread: t, Viewer: v})
	}
	return out
}

// before reports whether t sorts strictly after the keyset (at, id) in (last message time
// DESC, id DESC). Ids are canonical UUIDs, whose text order is their byte order.
func before(t *domain.Thread, at time.Time, id string) bool {
	if c := t.LastMessageAt.Compare(at); c != 0 {
		return c < 0
	}
	return t.ID < id
}

// ReadThreadPage implements domain.InboxRepository.
func (s *Store) ReadThreadPage(_ context.Context, t *domain.Thread, viewer string, afterSeq int32, limit int, bg *domain.BreakGlass, audit []outbox.Event) (domain.ThreadPage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stage().commit(audit); err != nil {
		return domain.ThreadPage{}, err
	}
	if bg != nil {
		s.breakGlass = append(s.breakGlass, breakGlassRow{threadID: t.ID, bg: *bg})
	}
	return domain.ThreadPage{Messages: s.page(t.ID, afterSeq, limit), Viewer: s.viewer(t.ID, viewer), Settings: s.poolSettings(t.PoolID),
		Receipts: s.receiptsAfter(t.ID, afterSeq)}, nil
}

// receiptsAfter is a thread's receipts past seq, by subject then seq (as Postgres reads them).
// Callers hold mu.
func (s *Store) receiptsAfter(threadID string, seq int32) []domain.ReadReceipt {
	var out []domain.ReadReceipt
	for _, r := range s.receipts[threadID] {
		if r.Seq > seq {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b domain.ReadReceipt) int {
		return cmp.Or(cmp.Compare(a.Subject, b.Subject), cmp.Compare(a.Seq, b.Seq))
	})
	return out
}

// RecordBreakGlass implements domain.InboxRepository.
func (s *Store) RecordBreakGlass(_ context.Context, threadID string, bg domain.BreakGlass) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	s.breakGlass = append(s.breakGlass, breakGlassRow{threadID: threadID, bg: bg})
	return nil
}

// MarkRead implements domain.InboxRepository.
func (s *Store) MarkRead(_ context.Context, threadID string, mark domain.ReadMark, effects func(domain.Viewer) ([]outbox.Event, error)) (domain.Viewer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := viewerKey{threadID, mark.Subject}
	before, receipts := s.viewers[k], s.receipts[threadID]
	s.raise(threadID, mark)
	v := s.viewer(threadID, mark.Subject)
	rows, err := effects(v)
	if err == nil {
		err = s.stage().commit(rows)
	}
	if err != nil {
		s.viewers[k], s.receipts[threadID] = before, receipts
		return domain.Viewer{}, err
	}
	return v, nil
}

// SetArchived implements domain.InboxRepository.
func (s *Store) SetArchived(_ context.Context, threadID, subject string, on bool, at time.Time, rows []outbox.Event) (time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stage().commit(rows); err != nil {
		return time.Time{}, err
	}
	k := viewerKey{threadID, subject}
	vs, ok := s.viewers[k]
	switch {
	case on && vs.archived.IsZero():
		vs.archived = at
	case !on:
		vs.archived = time.Time{}
	}
	if on || ok {
		s.viewers[k] = vs
	}
	return vs.archived, nil
}

// poolSettings is a pool's settings. Callers hold mu.
func (s *Store) poolSettings(poolID string) domain.PoolSettings {
	if st, ok := s.settings[poolID]; ok {
		return st
	}
	return domain.PoolSettings{PoolID: poolID}
}

// PoolSettings implements domain.PoolSettingsReader.
func (s *Store) PoolSettings(_ context.Context, poolID string) (domain.PoolSettings, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.poolSettings(poolID), nil
}

// UpdatePoolSettings implements domain.PoolSettingsRepository.
func (s *Store) UpdatePoolSettings(_ context.Context, poolID string, change func(domain.PoolSettings) (domain.PoolSettings, []outbox.Event, error)) (domain.PoolSettings, error) {
	s.mu.Lock()
	cur := s.poolSettings(poolID)
	s.mu.Unlock()
	next, rows, err := change(cur)
	if err != nil {
		return domain.PoolSettings{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.poolSettings(poolID).Version != cur.Version {
		return domain.PoolSettings{}, domain.ErrSettingsChanged
	}
	if err := s.stage().commit(rows); err != nil {
		return domain.PoolSettings{}, err
	}
	next.PoolID, next.Version = poolID, cur.Version+1
	stored := next
	stored.Turnaround = max(stored.Turnaround.Truncate(time.Second), 0) // stored in whole seconds
	s.settings[poolID] = stored
	return next, nil
}

// WithPurgeLock implements domain.RetentionRepository.
func (s *Store) WithPurgeLock(ctx context.Context, name string, purge func(context.Context, domain.ExpiredThreads) error) error {
	s.mu.Lock()
	if s.purgeLocks[name] {
		s.mu.Unlock()
		return domain.ErrPurgeRunning
	}
	s.purgeLocks[name] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.purgeLocks, name)
		s.mu.Unlock()
	}()
	return purge(ctx, s)
}

// expired reports whether t is past cutoff, and held whether a legal hold keeps it. Callers
// hold mu.
func (s *Store) expired(t *domain.Thread, category commonv1.ThreadCategory, cutoff time.Time) (expired, held bool) {
	_, patientHeld := s.patientHolds[t.PatientID]
	return t.Category == category && t.LastMessageAt.Before(cutoff), t.LegalHold || patientHeld
}

// CountHeldExpired implements domain.ExpiredThreads.
func (s *Store) CountHeldExpired(_ context.Context, category commonv1.ThreadCategory, cutoff time.Time) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, t := range s.threads {
		if expired, held := s.expired(t, category, cutoff); expired && held {
			n++
		}
	}
	return n, nil
}

// ExpiredThreads implements domain.ExpiredThreads.
func (s *Store) ExpiredThreads(_ context.Context, category commonv1.ThreadCategory, cutoff time.Time, limit int) ([]domain.PurgeCandidate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ts []*domain.Thread
	for _, t := range s.threads {
		if expired, held := s.expired(t, category, cutoff); expired && !held {
			ts = append(ts, t)
		}
	}
	slices.SortFunc(ts, func(a, b *domain.Thread) int {
		if c := a.LastMessageAt.Compare(b.LastMessageAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	var out []domain.PurgeCandidate
	for _, t := range ts[:min(len(ts), limit)] {
		c := domain.PurgeCandidate{ID: t.ID, PatientID: t.PatientID, PoolID: t.PoolID, Category: t.Category,
			Sensitivity: t.Sensitivity, WrappedDEK: t.WrappedDEK, Messages: int64(t.MessageCount)}
		for _, m := range s.messages[t.ID] {
			c.Attachments += int64(len(m.AttachmentIDs))
		}
		out = append(out, c)
	}
	return out, nil
}

// DeleteExpiredThread implements domain.RetentionRepository.
func (s *Store) DeleteExpiredThread(_ context.Context, id string, cutoff time.Time, rows []outbox.Event) (bool, error) {
	defer s.lockRow(id)()
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.threads[id]
	if !ok {
		return false, nil
	}
	if expired, held := s.expired(t, t.Category, cutoff); !expired || held {
		return false, nil
	}
	if err := s.stage().commit(rows); err != nil {
		return false, err
	}
	delete(s.threads, id)
	delete(s.messages, id)
	delete(s.receipts, id)
	for k := range s.viewers {
		if k.thread == id {
			delete(s.viewers, k)
		}
	}
	s.breakGlass = slices.DeleteFunc(s.breakGlass, func(r breakGlassRow) bool { return r.threadID == id })
	return true, nil
}
