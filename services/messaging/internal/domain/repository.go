package domain

import (
	"context"
	"slices"
	"time"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
)

// The repositories the use cases store threads, messages, viewer state, pool settings and the
// retention purge through. Each hides its transactions: a change that must commit together
// with its outbox rows (domain events and audit records, as outbox.Event values) takes them as
// values, or, where they depend on what the write found, as a function the repository calls
// inside the transaction. Nothing is written unless everything is (fail closed).
//
// Errors: the refusals of errors.go (ErrThreadNotFound, ErrThreadClosed, …), the signals
// ErrThreadChanged and ErrRequestConflict, DatabaseUnavailable and NotRecorded; anything else
// is an internal failure. Only sealed PHI ever reaches a repository.
//
// adapters/pgstore implements them over Postgres, adapters/memstore in memory for tests; the
// contract tests in adapters/repotest hold both to the same behaviour.

// ThreadRepository stores threads and appends messages to them.
type ThreadRepository interface {
	// Thread loads a thread; ErrThreadNotFound when there is none.
	Thread(ctx context.Context, id string) (*Thread, error)
	// Threads loads the threads among ids that exist, in one round trip, keyed by id; ids that
	// name no thread (or are no UUIDs) are absent from the map.
	Threads(ctx context.Context, ids []string) (map[string]*Thread, error)
	// ThreadAndRequest loads a thread and, in the same round trip, whether sender's client
	// request id was used before (by a message or a retraction: what
	// MessageRepository.MessageByRequest would find). t is nil when the thread does not exist.
	ThreadAndRequest(ctx context.Context, threadID, sender, requestID string) (t *Thread, used bool, err error)
	// CreateThread stores t, a new thread, and appends its first messages, with rows and then
	// each appended message's rows, in one commit. ErrRequestConflict when t's id (or a
	// message's id or request id) was taken concurrently.
	CreateThread(ctx context.Context, t *Thread, rows []outbox.Event, appends Appends) error
	// AppendMessageIfUnchanged appends m to t with rows in one statement (one round trip),
	// provided the thread still has the pool, sensitivity, assignee and participants of t and is
	// open; otherwise it writes nothing and returns ErrThreadChanged. Rows built from t
	// (recipients, pool subject) therefore describe the thread as it was when m landed. m.Seq is
	// set. ErrRequestConflict when m's request id was used concurrently.
	AppendMessageIfUnchanged(ctx context.Context, t *Thread, m *Message, rows []outbox.Event) error
	// UpdateThread loads the thread under its row lock, lets change decide what to do with it
	// (settings reads the thread's pool settings in the same transaction), writes the change
	// with its rows, and commits; it returns the thread after the change. A zero ThreadChange
	// writes nothing. ErrThreadNotFound when there is no such thread; change's error rolls back
	// and is returned as it is.
	UpdateThread(ctx context.Context, id string, change func(t *Thread, settings PoolSettingsReader) (ThreadChange, error)) (*Thread, error)
	// SetThreadHold places or lifts a thread's own legal hold and writes rows, in one commit;
	// changed reports whether the hold flipped.
	// by and at record who placed the hold and when (cleared when it is lifted).
	SetThreadHold(ctx context.Context, threadID string, on bool, caseRef, by string, at time.Time, rows []outbox.Event) (changed bool, err error)
	// SetPatientHold places or lifts the hold over all of a patient's threads and writes rows,
	// in one commit. It returns how many of the patient's threads changed effective state
	// (those without a hold of their own): 0 when the patient hold already was as asked. by and
	// at record who placed the hold and when.
	SetPatientHold(ctx context.Context, patientID string, on bool, caseRef, by string, at time.Time, rows []outbox.Event) (int64, error)
}

// MessageRepository reads messages and retracts them.
type MessageRepository interface {
	// Message loads one message of a thread; ErrMessageNotFound when the thread has none such.
	Message(ctx context.Context, threadID, id string) (*Message, error)
	// MessageByID loads a message by id alone; ErrMessageNotFound when there is none.
	MessageByID(ctx context.Context, id string) (*Message, error)
	// MessageByRequest finds what sender's client request id produced: the message it created,
	// or the message it retracted (retracted true); a created message wins. m is nil when the
	// request id is unused.
	MessageByRequest(ctx context.Context, sender, requestID string) (m *Message, retracted bool, err error)
	// Messages returns up to limit messages of a thread after seq afterSeq, oldest first.
	Messages(ctx context.Context, threadID string, afterSeq int32, limit int) ([]*Message, error)
	// RetractMessage stores m's retraction (its Retract* fields and CorrectionMessageID), rows,
	// and appends (the correction, when there is one), in one commit. ErrAlreadyRetracted when
	// m was retracted meanwhile; ErrRequestConflict when its request id was used concurrently.
	RetractMessage(ctx context.Context, m *Message, rows []outbox.Event, appends Appends) error
}

// InboxRepository reads threads as one viewer sees them and keeps each viewer's state.
type InboxRepository interface {
	// ListThreads runs q. Ordering is stable (last message time, then id, both descending), so
	// keyset pages never skip or repeat a thread that did not move.
	ListThreads(ctx context.Context, q ListQuery) ([]ListedThread, error)
	// ReadThreadPage reads up to limit messages of t after seq afterSeq, viewer's state and the
	// pool's settings, and writes the read's audit rows (and bg, when not nil), all in one round
	// trip and one commit. The page is returned only when that commit happened, so nothing is
	// read unless its audit record is stored (fail closed).
	ReadThreadPage(ctx context.Context, t *Thread, viewer string, afterSeq int32, limit int, bg *BreakGlass, audit []outbox.Event) (ThreadPage, error)
	// RecordBreakGlass stores a sealed break-the-glass reason for thread threadID.
	RecordBreakGlass(ctx context.Context, threadID string, bg BreakGlass) error
	// CountThreads counts the threads q selects by queue, leaving out q's assignee, unread and
	// keyset filters (ThreadCounts says what each count is).
	CountThreads(ctx context.Context, q ListQuery) (ThreadCounts, error)
	// MarkRead raises mark.Subject's read mark in a thread to mark.Seq (never lowers it),
	// records a receipt when it rose, and writes the rows effects returns for the viewer state
	// after the change, in one commit.
	MarkRead(ctx context.Context, threadID string, mark ReadMark, effects func(Viewer) ([]outbox.Event, error)) (Viewer, error)
	// SetArchived archives (keeping the first archive time) or unarchives a thread for subject
	// and writes rows, in one commit; it returns the archive time (zero when unarchived).
	SetArchived(ctx context.Context, threadID, subject string, on bool, at time.Time, rows []outbox.Event) (time.Time, error)
}

// PoolSettingsReader reads a care pool's settings: the zero settings (Version 0) when they
// were never stored.
type PoolSettingsReader interface {
	PoolSettings(ctx context.Context, poolID string) (PoolSettings, error)
}

// PoolSettingsRepository stores care pools' settings.
type PoolSettingsRepository interface {
	PoolSettingsReader
	// UpdatePoolSettings reads a pool's settings, lets change return the next settings and
	// their rows, and stores them if no other writer stored a version in between
	// (ErrSettingsChanged otherwise), in one commit. It returns the stored settings with their
	// new Version.
	UpdatePoolSettings(ctx context.Context, poolID string, change func(cur PoolSettings) (PoolSettings, []outbox.Event, error)) (PoolSettings, error)
}

// RetentionRepository finds and deletes threads past retention.
type RetentionRepository interface {
	// WithPurgeLock runs purge while holding the lock called name, which keeps purges (the rpc
	// and the job, on every replica) apart; ErrPurgeRunning when another holds it. expired reads
	// on the lock's own connection.
	WithPurgeLock(ctx context.Context, name string, purge func(ctx context.Context, expired ExpiredThreads) error) error
	// DeleteExpiredThread crypto-shreds and deletes a thread (its messages, viewer state and
	// break-glass rows with it) if it is still past cutoff and not held, and then writes rows,
	// in one commit; deleted reports whether it did. The wrapped DEK is cleared before the row is
	// deleted, so that no copy of it survives in the row's last version either.
	DeleteExpiredThread(ctx context.Context, id string, cutoff time.Time, rows []outbox.Event) (deleted bool, err error)
	// LegalHolds lists up to limit holds in force that sort after the cursor: patient holds by
	// patient id, then thread holds by thread id.
	LegalHolds(ctx context.Context, after LegalHoldCursor, limit int) ([]LegalHold, error)
	// CountLegalHolds counts the holds in force and the threads they keep.
	CountLegalHolds(ctx context.Context) (LegalHoldCounts, error)
}

// ExpiredThreads reads the threads a retention purge considers.
type ExpiredThreads interface {
	// CountHeldExpired counts threads of category past cutoff that a legal hold keeps.
	CountHeldExpired(ctx context.Context, category commonv1.ThreadCategory, cutoff time.Time) (int64, error)
	// ExpiredThreads lists up to limit threads of category whose last message is before cutoff
	// and that no legal hold covers, oldest first.
	ExpiredThreads(ctx context.Context, category commonv1.ThreadCategory, cutoff time.Time, limit int) ([]PurgeCandidate, error)
}

// AuditWriter writes outbox rows that accompany no change: the audit records of denials and of
// list reads. They commit on their own, in one statement.
type AuditWriter interface {
	WriteAudit(ctx context.Context, rows []outbox.Event) error
}

// MessageAppend is one message to add at a thread's end.
type MessageAppend struct {
	Message *Message
	// MarkAutoReplied records that the pool's auto-reply answers the thread (set on a thread's
	// first patient-side message, whether or not the pool has one).
	MarkAutoReplied bool
}

// Appended is the thread as it stood right after a message was appended: whom the message's
// MessageCreated event is addressed from.
type Appended struct {
	Participants []string
	Assignee     string
}

// Appends are messages added, in order, in the commit of another change. Effects, when not
// nil, returns each appended message's outbox rows from the thread as it stood right after
// that message (its Seq is set by then); the repository writes them after the change's own
// rows.
type Appends struct {
	Messages []MessageAppend
	Effects  func(m *Message, after Appended) ([]outbox.Event, error)
}

// Apply appends each message with appendOne, in order, and returns rows followed by each
// appended message's rows; the first error stops it. Repositories call it inside the
// transaction of the change.
func (a Appends) Apply(rows []outbox.Event, appendOne func(m *Message, markAutoReplied bool) (Appended, error)) ([]outbox.Event, error) {
	for _, ma := range a.Messages {
		after, err := appendOne(ma.Message, ma.MarkAutoReplied)
		if err != nil {
			return nil, err
		}
		if a.Effects == nil {
			continue
		}
		more, err := a.Effects(ma.Message, after)
		if err != nil {
			return nil, err
		}
		rows = append(rows, more...)
	}
	return rows, nil
}

// ThreadChange is what a use case decides to do to a thread it holds locked
// (ThreadRepository.UpdateThread).
type ThreadChange struct {
	// Triage, when not nil, is the thread's new routing state.
	Triage *Triage
	// Rows are written first, then Appends.
	Rows    []outbox.Event
	Appends Appends
}

// Triage is a thread's routing state after a triage change.
type Triage struct {
	Status             Status
	Assignee           string
	PoolID             string
	ClosedAt           time.Time // zero: open
	TransferNoteSealed []byte    // nil keeps the current note
	UpdatedAt          time.Time
}

// Box values for ListQuery (they match messagingv1.Box).
const (
	BoxInbox    = 1
	BoxSent     = 2
	BoxArchived = 3
)

// ListQuery selects the threads one viewer may see. The visibility fields (OwnPatientID,
// ProxyPatientIDs, PoolIDs) come from the caller's verified principal, never from the request.
type ListQuery struct {
	Viewer string
	// OwnPatientID: the viewer's own threads as a patient (every sensitivity).
	OwnPatientID string
	// ProxyPatientIDs: patients the viewer holds an active read grant for; adolescent-
	// confidential threads are never selected through them.
	ProxyPatientIDs []string
	// PoolIDs: the care pools whose threads the viewer works.
	PoolIDs []string
	// Filters from the request, already checked against the visibility above.
	FilterPatientID string
	FilterPoolIDs   []string
	Box             int
	UnreadOnly      bool
	Statuses        []Status
	Categories      []commonv1.ThreadCategory
	Assignee        AssigneeFilter
	// AssigneeSubject is the member whose queue AssigneeMember lists.
	AssigneeSubject string
	// Keyset: only threads strictly after (AfterTime, AfterID) in (last message time DESC, id
	// DESC).
	AfterTime time.Time
	AfterID   string
	Limit     int
}

// AssigneeFilter selects threads by assignee (it matches messagingv1.AssigneeFilter).
type AssigneeFilter int

// AssigneeFilter values.
const (
	AssigneeAny        AssigneeFilter = 0
	AssigneeMe         AssigneeFilter = 1
	AssigneeUnassigned AssigneeFilter = 2
	AssigneeMember     AssigneeFilter = 3
)

// ThreadCounts are the sizes of the queues one ListQuery's other filters select.
type ThreadCounts struct {
	Total int32
	// Unread: threads with messages the viewer has not read; UnreadMessages: those messages.
	Unread         int32
	UnreadMessages int64
	Unassigned     int32
	AssignedToMe   int32
}

// ReadMark is a person's read mark rising to Seq: who read, in which role, and when. Writing a
// message sets the writer's mark to it, so unread is always message count minus read mark.
type ReadMark struct {
	Subject    string
	Role       commonv1.Role
	OnBehalfOf string
	Seq        int32
	At         time.Time
}

// ReadReceipt is one rise of a person's read mark: every message up to Seq that they had not
// read before was read At.
type ReadReceipt = ReadMark

// ListedThread is a thread with the viewer's state in it.
type ListedThread struct {
	Thread *Thread
	Viewer Viewer
}

// Viewer is one person's state in a thread. Messages the person wrote count as read.
type Viewer struct {
	ReadSeq    int32
	ArchivedAt time.Time
	Unread     int32
}

// BreakGlass is a break-the-glass access, its reason sealed under the thread's DEK.
type BreakGlass struct {
	ID           string
	Subject      string
	ReasonSealed []byte
	At           time.Time
}

// ThreadPage is what a thread read returns.
type ThreadPage struct {
	Messages []*Message
	Viewer   Viewer
	Settings PoolSettings
	// Receipts are the thread's receipts past the page's first message, by subject then seq.
	Receipts []ReadReceipt
}

// FirstReads returns, for a message at seq, each reader's receipt: their first at or past it.
// receipts are ordered by subject then seq, as ThreadPage holds them.
func FirstReads(receipts []ReadReceipt, seq int32) []ReadReceipt {
	var out []ReadReceipt
	for i := 0; i < len(receipts); {
		j := i
		for j < len(receipts) && receipts[j].Subject == receipts[i].Subject {
			j++
		}
		for _, r := range receipts[i:j] {
			if r.Seq >= seq {
				out = append(out, r)
				break
			}
		}
		i = j
	}
	slices.SortStableFunc(out, func(a, b ReadReceipt) int { return a.At.Compare(b.At) })
	return out
}

// PurgeCandidate is a thread past retention.
type PurgeCandidate struct {
	ID          string
	PatientID   string
	PoolID      string
	Category    commonv1.ThreadCategory
	Sensitivity commonv1.Sensitivity
	WrappedDEK  string
	Messages    int64
	Attachments int64
}
