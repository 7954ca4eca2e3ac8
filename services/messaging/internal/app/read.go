package app

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/platform/auditlog"
	"github.com/securemsg/securemsg/services/internal/platform/auth"
	"github.com/securemsg/securemsg/services/internal/platform/crypto"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/internal/platform/policy"
	"github.com/securemsg/securemsg/services/internal/platform/protoenum"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// GetThreadCmd reads a thread.
type GetThreadCmd struct {
	ThreadID         string
	PageSize         int
	PageToken        string
	BreakGlassReason string
}

// GetThreadResult is a thread with one page of messages.
type GetThreadResult struct {
	Thread              ThreadView
	Messages            []MessageView
	NextPageToken       string
	BreakGlass          bool
	EmergencyDisclaimer string
	// Names are the display names of the thread's creator and of the senders, readers and
	// retracters on the page, by subject, when the caller may read the thread's content;
	// people without a name are left out.
	Names map[string]string
}

// GetThread returns a thread and a page of its messages. The access is audited in the same
// transaction that reads the messages, and nothing is decrypted or returned unless that
// transaction commits: a read that cannot be audited is refused (fail closed).
func (s *Service) GetThread(ctx context.Context, p *auth.Principal, c GetThreadCmd) (*GetThreadResult, error) {
	threadID, err := domain.CheckID("thread_id", c.ThreadID)
	if err != nil {
		return nil, err
	}
	limit, err := domain.PageLimit(c.PageSize, 200)
	if err != nil {
		return nil, err
	}
	var after int32
	if c.PageToken != "" {
		if after, err = parseMessageToken(c.PageToken, threadID); err != nil {
			return nil, err
		}
	}
	if err := domain.CheckText("break_glass_reason", c.BreakGlassReason, domain.MaxBreakGlassChars, false); err != nil {
		return nil, err
	}
	t, err := s.loadThread(ctx, threadID)
	if err != nil {
		return nil, err
	}
	res := threadResource(t)
	// Break-the-glass is considered only when the normal rules refuse and a reason was given,
	// so a routine read is never flagged; either way exactly one decision is recorded.
	rc0 := policy.Context{}
	if strings.TrimSpace(c.BreakGlassReason) != "" && !s.Policy.Evaluate(p, actGetThread, res, rc0).Allowed {
		rc0.BreakGlassReason = c.BreakGlassReason
	}
	d, err := s.authorize(ctx, p, actGetThread, res, rc0, t)
	if err != nil {
		return nil, err
	}
	rc := policy.Context{}
	if d.BreakGlass {
		rc.BreakGlassReason = c.BreakGlassReason
	}
	content := s.Policy.Evaluate(p, actReadContent, res, rc).Allowed
	sl, err := s.sealer(ctx, t)
	if err != nil {
		return nil, err
	}
	a := actorFor(p, t.PatientID, t.PoolID)
	out := &GetThreadResult{Thread: ThreadView{Thread: t}, BreakGlass: d.BreakGlass}
	b := s.newBatch(ctx)
	action, opts := eventsv1.Action_ACTION_READ, []auditlog.RecordOption{auditlog.Reason(reasonCode(d))}
	var bg *domain.BreakGlass
	if d.BreakGlass {
		action, opts = eventsv1.Action_ACTION_BREAK_GLASS, append(opts, auditlog.BreakGlass())
		bg = &domain.BreakGlass{ID: uuid.NewString(), Subject: p.Subject, At: s.Now()}
		if bg.ReasonSealed, err = sl.SealRecord([]byte(c.BreakGlassReason), crypto.MessageFieldAAD(t.ID, bg.ID, fieldBreakGlass)); err != nil {
			return nil, err
		}
	}
	b.audit(a, action, threadTarget(t), opts...)
	audit, err := b.rows()
	if err != nil {
		return nil, err
	}
	// One round trip reads the page and commits its audit record (and break-glass row).
	page, err := s.Inbox.ReadThreadPage(ctx, t, p.Subject, after, limit+1, bg, audit)
	if err != nil {
		return nil, readError(err)
	}
	msgs, settings := page.Messages, page.Settings
	out.Thread.Viewer = page.Viewer
	// Only now that the access is on record is anything decrypted.
	if len(msgs) > limit {
		msgs = msgs[:limit]
		out.NextPageToken = messageToken(t.ID, msgs[len(msgs)-1].Seq)
	}
	out.EmergencyDisclaimer = settings.EmergencyDisclaimer
	if content {
		if out.Thread.Subject, err = open(sl, t.SubjectSealed, crypto.MessageFieldAAD(t.ID, "", fieldSubject)); err != nil {
			return nil, err
		}
	}
	rv := s.receiptViewer(p, t, page.Receipts)
	for _, m := range msgs {
		v := MessageView{Message: m, Read: m.Seq <= out.Thread.Viewer.ReadSeq || m.SenderSubject == p.Subject, Receipts: rv.of(m)}
		if content && !m.Retracted() {
			if v.Body, err = open(sl, m.BodySealed, crypto.MessageFieldAAD(t.ID, m.ID, fieldBody)); err != nil {
				return nil, err
			}
		}
		out.Messages = append(out.Messages, v)
	}
	if content {
		subjects := []string{t.CreatedBySubject}
		for _, v := range out.Messages {
			subjects = append(subjects, v.participants()...)
		}
		if out.Names, err = s.displayNames(ctx, subjects); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// GetMessage returns one message of a thread with the receipts p may see. Its read is
// audited in the commit that reads it, as GetThread's is; nothing is decrypted before.
func (s *Service) GetMessage(ctx context.Context, p *auth.Principal, threadID, messageID string) (*MessageView, error) {
	threadID, err := domain.CheckID("thread_id", threadID)
	if err != nil {
		return nil, err
	}
	msgID, err := domain.CheckID("message_id", messageID)
	if err != nil {
		return nil, err
	}
	t, err := s.loadThread(ctx, threadID)
	if err != nil {
		return nil, err
	}
	res := threadResource(t)
	d, err := s.authorize(ctx, p, actGetMessage, res, policy.Context{}, t)
	if err != nil {
		return nil, err
	}
	m, err := s.Messages.Message(ctx, t.ID, msgID)
	if err != nil {
		return nil, storeError("load message", err)
	}
	b := s.newBatch(ctx)
	b.audit(actorFor(p, t.PatientID, t.PoolID), eventsv1.Action_ACTION_READ, messageTarget(t, m.ID), auditlog.Reason(reasonCode(d)))
	audit, err := b.rows()
	if err != nil {
		return nil, err
	}
	page, err := s.Inbox.ReadThreadPage(ctx, t, p.Subject, m.Seq-1, 1, nil, audit)
	if err != nil {
		return nil, readError(err)
	}
	if len(page.Messages) == 0 || page.Messages[0].ID != m.ID {
		return nil, domain.ErrMessageNotFound
	}
	m = page.Messages[0]
	v := &MessageView{Message: m, Read: m.Seq <= page.Viewer.ReadSeq || m.SenderSubject == p.Subject,
		Receipts: s.receiptViewer(p, t, page.Receipts).of(m)}
	if !s.Policy.Evaluate(p, actReadContent, res, policy.Context{}).Allowed {
		return v, nil
	}
	if !m.Retracted() {
		sl, err := s.sealer(ctx, t)
		if err != nil {
			return nil, err
		}
		if v.Body, err = open(sl, m.BodySealed, crypto.MessageFieldAAD(t.ID, m.ID, fieldBody)); err != nil {
			return nil, err
		}
	}
	if v.Names, err = s.displayNames(ctx, v.participants()); err != nil {
		return nil, err
	}
	return v, nil
}

// receiptViewer picks, for one viewer, the receipts of a thread's messages the policy lets
// them see (messaging.ViewReadReceipt), asking once per reader.
type receiptViewer struct {
	s        *Service
	p        *auth.Principal
	t        *domain.Thread
	receipts []domain.ReadReceipt
	allowed  map[domain.ReadReceipt]bool
}

func (s *Service) receiptViewer(p *auth.Principal, t *domain.Thread, receipts []domain.ReadReceipt) *receiptViewer {
	return &receiptViewer{s: s, p: p, t: t, receipts: receipts, allowed: map[domain.ReadReceipt]bool{}}
}

// of is m's receipts the viewer may see, earliest first: never the viewer's own read, nor the
// sender's (writing is not reading one's own message).
func (rv *receiptViewer) of(m *domain.Message) []domain.ReadReceipt {
	var out []domain.ReadReceipt
	for _, r := range domain.FirstReads(rv.receipts, m.Seq) {
		if r.Subject == rv.p.Subject || r.Subject == m.SenderSubject {
			continue
		}
		key := domain.ReadReceipt{Subject: r.Subject, Role: r.Role, OnBehalfOf: r.OnBehalfOf}
		ok, seen := rv.allowed[key]
		if !seen {
			res := threadResource(rv.t)
			res.Type, res.ID, res.Owner = "ReadReceipt", rv.t.ID+"/"+r.Subject, r.Subject
			ok = rv.s.Policy.Evaluate(rv.p, actViewReceipt, res, policy.Context{ReaderRole: auditlog.RoleName(r.Role)}).Allowed
			rv.allowed[key] = ok
		}
		if ok {
			out = append(out, r)
		}
	}
	return out
}

// readError turns a failed read-and-record into a refusal: any failure to record the access
// means the read does not happen. (An unreachable database is already a refusal.)
func readError(err error) error {
	if k, _ := usererr.KindOf(err); k != 0 {
		return err
	}
	return usererr.Wrap(usererr.Unavailable, "ACCESS_NOT_RECORDED", "the access could not be recorded; try again later", err)
}

// Refusals of the read use cases.
var (
	errPageToken = usererr.New(usererr.InvalidArgument, "PAGE_TOKEN_INVALID", "page_token is malformed")
)

func messageToken(threadID string, seq int32) string {
	return base64.RawURLEncoding.EncodeToString([]byte("m1|" + threadID + "|" + strconv.Itoa(int(seq))))
}

func parseMessageToken(tok, threadID string) (int32, error) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	parts := strings.Split(string(raw), "|")
	if err != nil || len(parts) != 3 || parts[0] != "m1" || parts[1] != threadID {
		return 0, usererr.New(usererr.InvalidArgument, "PAGE_TOKEN_INVALID", "page_token is malformed or for another thread")
	}
	// ParseInt with bitSize 32: Atoi accepted values beyond int32 that wrapped around.
	n, err := strconv.ParseInt(parts[2], 10, 32)
	if err != nil || n < 0 {
		return 0, errPageToken
	}
	return int32(n), nil
}

// ListThreadsCmd selects threads.
type ListThreadsCmd struct {
	Box             int
	UnreadOnly      bool
	PoolIDs         []string
	PatientID       string
	Statuses        []messagingv1.ThreadStatus
	Categories      []commonv1.ThreadCategory
	Assignee        int
	AssigneeSubject string
	IncludeCounts   bool
	PageSize        int
	PageToken       string
}

// ListThreadsResult is one page of threads, and the queue counts when they were asked for.
type ListThreadsResult struct {
	Threads       []ThreadView
	NextPageToken string
	Counts        *domain.ThreadCounts
}

// listToken is a ListThreads keyset cursor, bound to its filters and valid for a day.
type listToken struct {
	V       int    `json:"v"`
	At      int64  `json:"t"`
	ID      string `json:"i"`
	Filters string `json:"f"`
	Expires int64  `json:"e"`
}

const listTokenTTL = 24 * time.Hour

// parseListToken decodes a client-supplied ListThreads cursor and checks it was issued for the
// filters whose hash is fh and has not expired at now.
func parseListToken(s, fh string, now time.Time) (listToken, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	var tok listToken
	if err != nil || json.Unmarshal(raw, &tok) != nil || tok.V != 1 || tok.ID == "" {
		return listToken{}, errPageToken
	}
	if tok.Filters != fh {
		return listToken{}, usererr.New(usererr.InvalidArgument, "PAGE_TOKEN_INVALID", "page_token was issued for different filters")
	}
	if now.Unix() > tok.Expires {
		return listToken{}, usererr.New(usererr.InvalidArgument, "PAGE_TOKEN_EXPIRED", "page_token has expired")
	}
	// Only the canonical form we issue: uuid.Parse also takes "urn:uuid:…" and "{…}", which
	// Postgres would refuse later as a database error instead of a bad argument.
	if id, err := uuid.Parse(tok.ID); err != nil || id.String() != tok.ID {
		return listToken{}, errPageToken
	}
	return tok, nil
}

// listFilters checks c's filters and returns them in canonical order with their hash, which
// binds a page token to them.
func listFilters(c *ListThreadsCmd) (string, error) {
	if c.Box < 0 || c.Box > 3 {
		return "", usererr.New(usererr.InvalidArgument, "BOX_UNKNOWN", "box is unknown")
	}
	if c.Box == 0 {
		c.Box = domain.BoxInbox
	}
	c.PoolIDs = slices.Clone(c.PoolIDs)
	slices.Sort(c.PoolIDs)
	c.Statuses = slices.Clone(c.Statuses)
	slices.Sort(c.Statuses)
	c.Statuses = slices.Compact(c.Statuses)
	for _, st := range c.Statuses {
		if st < messagingv1.ThreadStatus_THREAD_STATUS_OPEN || st > messagingv1.ThreadStatus_THREAD_STATUS_CLOSED {
			return "", usererr.New(usererr.InvalidArgument, "STATUS_UNKNOWN", "statuses names an unknown status")
		}
	}
	c.Categories = slices.Clone(c.Categories)
	slices.Sort(c.Categories)
	c.Categories = slices.Compact(c.Categories)
	for _, cat := range c.Categories {
		if _, known := commonv1.ThreadCategory_name[int32(cat)]; !known || cat == commonv1.ThreadCategory_THREAD_CATEGORY_UNSPECIFIED {
			return "", usererr.New(usererr.InvalidArgument, "CATEGORY_UNKNOWN", "categories names an unknown category")
		}
	}
	switch {
	case c.Assignee < 0 || c.Assignee > int(domain.AssigneeMember):
		return "", usererr.New(usererr.InvalidArgument, "ASSIGNEE_FILTER_UNKNOWN", "assignee is unknown")
	case c.Assignee == int(domain.AssigneeMember) && c.AssigneeSubject == "":
		return "", usererr.New(usererr.InvalidArgument, "ASSIGNEE_SUBJECT_REQUIRED", "assignee_subject is required with ASSIGNEE_FILTER_MEMBER")
	case c.Assignee != int(domain.AssigneeMember) && c.AssigneeSubject != "":
		return "", usererr.New(usererr.InvalidArgument, "ASSIGNEE_SUBJECT_UNEXPECTED", "assignee_subject is only for ASSIGNEE_FILTER_MEMBER")
	}
	if len(c.AssigneeSubject) > 255 {
		return "", usererr.New(usererr.InvalidArgument, "FIELD_TOO_LONG", "assignee_subject is too long")
	}
	join := func(vs []int) string {
		out := make([]string, len(vs))
		for i, v := range vs {
			out[i] = strconv.Itoa(v)
		}
		return strings.Join(out, ",")
	}
	sts, cats := make([]int, len(c.Statuses)), make([]int, len(c.Categories))
	for i, v := range c.Statuses {
		sts[i] = int(v)
	}
	for i, v := range c.Categories {
		cats[i] = int(v)
	}
	sum := sha256.Sum256([]byte(strings.Join([]string{"v2", strconv.Itoa(c.Box), strconv.FormatBool(c.UnreadOnly),
		strings.Join(c.PoolIDs, ","), c.PatientID, join(sts), join(cats), strconv.Itoa(c.Assignee), c.AssigneeSubject}, "|")))
	return hex.EncodeToString(sum[:8]), nil
}

// listScope is the ListQuery of what p may see with c's filters, refusing (and auditing) pool
// and patient filters p has no access to.
func (s *Service) listScope(ctx context.Context, p *auth.Principal, c ListThreadsCmd) (domain.ListQuery, error) {
	q := domain.ListQuery{Viewer: p.Subject, FilterPatientID: c.PatientID, FilterPoolIDs: c.PoolIDs, Box: c.Box,
		UnreadOnly: c.UnreadOnly, Categories: c.Categories, Assignee: domain.AssigneeFilter(c.Assignee), AssigneeSubject: c.AssigneeSubject}
	for _, st := range c.Statuses {
		q.Statuses = append(q.Statuses, domain.Status(protoenum.Code(st, 0)))
	}
	if p.HasRole(auth.RolePatient) {
		q.OwnPatientID = p.PatientID
	}
	if p.HasRole(auth.RoleProxy) {
		now := s.Now()
		for _, g := range p.ProxyGrants {
			if g.ActiveAt(now) && slices.Contains(g.Scopes, "read") {
				q.ProxyPatientIDs = append(q.ProxyPatientIDs, g.PatientID)
			}
		}
	}
	if p.HasRole(auth.RoleClinician) || p.HasRole(auth.RoleStaff) {
		q.PoolIDs = p.CarePools
	}
	for _, pool := range c.PoolIDs {
		if !slices.Contains(q.PoolIDs, pool) {
			s.deny(ctx, p, actListThreads, policy.Resource{Type: "Pool", ID: pool, PoolID: pool}, policy.Decision{Reasons: []string{"not_pool_member"}})
			return q, usererr.New(usererr.PermissionDenied, "NOT_POOL_MEMBER", "permission denied: not a member of a requested pool")
		}
	}
	if c.PatientID != "" && c.PatientID != q.OwnPatientID && !slices.Contains(q.ProxyPatientIDs, c.PatientID) && len(q.PoolIDs) == 0 {
		// Recorded against the patient's threads as a whole (the legal-hold rpc names them the
		// same way): the audit trail has no record type for a patient.
		s.deny(ctx, p, actListThreads, policy.Resource{Type: "Thread", ID: "patient:" + c.PatientID, PatientID: c.PatientID}, policy.Decision{Reasons: []string{"no_grant"}})
		return q, usererr.New(usererr.PermissionDenied, "NO_PATIENT_GRANT", "permission denied: you may not act for this patient")
	}
	return q, nil
}

// GetUnreadCount counts the threads and messages of p's inbox that p has not read. Ids and
// counts only: nothing is decrypted, so the count is not recorded as a read.
func (s *Service) GetUnreadCount(ctx context.Context, p *auth.Principal) (domain.ThreadCounts, error) {
	q, err := s.listScope(ctx, p, ListThreadsCmd{Box: domain.BoxInbox})
	if err != nil {
		return domain.ThreadCounts{}, err
	}
	c, err := s.Inbox.CountThreads(ctx, q)
	return c, storeError("count threads", err)
}

// ListThreads lists the threads the caller may see, newest activity first. Visibility comes
// from the caller's verified principal (own patient id, active read grants without adolescent-
// confidential threads, care pools); each row is checked again against the policy, and the
// subject lines shown are audited (one READ record per thread) before they are returned.
func (s *Service) ListThreads(ctx context.Context, p *auth.Principal, c ListThreadsCmd) (*ListThreadsResult, error) {
	limit, err := domain.PageLimit(c.PageSize, 100)
	if err != nil {
		return nil, err
	}
	fh, err := listFilters(&c)
	if err != nil {
		return nil, err
	}
	now := s.Now()
	q, err := s.listScope(ctx, p, c)
	if err != nil {
		return nil, err
	}
	q.Limit = limit + 1
	if c.PageToken != "" {
		tok, err := parseListToken(c.PageToken, fh, now)
		if err != nil {
			return nil, err
		}
		q.AfterTime, q.AfterID = time.Unix(0, tok.At), tok.ID
	}
	rows, err := s.Inbox.ListThreads(ctx, q)
	if err != nil {
		return nil, storeError("list threads", err)
	}
	out := &ListThreadsResult{}
	if c.IncludeCounts {
		counts, err := s.Inbox.CountThreads(ctx, q)
		if err != nil {
			return nil, storeError("count threads", err)
		}
		out.Counts = &counts
	}
	if len(rows) > limit {
		rows = rows[:limit]
		last := rows[len(rows)-1].Thread
		raw, _ := json.Marshal(listToken{V: 1, At: last.LastMessageAt.UnixNano(), ID: last.ID, Filters: fh, Expires: now.Add(listTokenTTL).Unix()})
		out.NextPageToken = base64.RawURLEncoding.EncodeToString(raw)
	}
	// Defence in depth: the SQL scope came from the principal; the policy has the last word.
	type shown struct {
		v       ThreadView
		content bool
	}
	var list []*shown
	for _, r := range rows {
		res := threadResource(r.Thread)
		if !s.Policy.Evaluate(p, actListThreads, res, policy.Context{}).Allowed {
			continue
		}
		list = append(list, &shown{v: ThreadView{Thread: r.Thread, Viewer: r.Viewer}, content: s.Policy.Evaluate(p, actReadContent, res, policy.Context{}).Allowed})
	}
	if len(list) > 0 {
		b := s.newBatch(ctx)
		for _, sh := range list {
			if sh.content {
				b.audit(actorFor(p, sh.v.Thread.PatientID, sh.v.Thread.PoolID), eventsv1.Action_ACTION_READ, threadTarget(sh.v.Thread))
			}
		}
		rows, err := b.rows()
		if err == nil && len(rows) > 0 {
			err = s.AuditTrail.WriteAudit(ctx, rows)
		}
		if err != nil {
			return nil, readError(err)
		}
	}
	// Subjects are decrypted after the audit committed; DEKs for a cold cache are fetched a few
	// at a time.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, sh := range list {
		if !sh.content {
			continue
		}
		g.Go(func() error {
			sl, err := s.sealer(gctx, sh.v.Thread)
			if err != nil {
				return err
			}
			sh.v.Subject, err = open(sl, sh.v.Thread.SubjectSealed, crypto.MessageFieldAAD(sh.v.Thread.ID, "", fieldSubject))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, sh := range list {
		out.Threads = append(out.Threads, sh.v)
	}
	return out, nil
}

// MarkRead moves the caller's read mark and reports the unread count after it.
func (s *Service) MarkRead(ctx context.Context, p *auth.Principal, threadID, upTo string) (int32, error) {
	threadID, err := domain.CheckID("thread_id", threadID)
	if err != nil {
		return 0, err
	}
	msgID, err := domain.CheckID("up_to_message_id", upTo)
	if err != nil {
		return 0, err
	}
	t, err := s.loadThread(ctx, threadID)
	if err != nil {
		return 0, err
	}
	if _, err := s.authorize(ctx, p, actMarkRead, threadResource(t), policy.Context{}, t); err != nil {
		return 0, err
	}
	m, err := s.Messages.Message(ctx, t.ID, msgID)
	if err != nil {
		return 0, storeError("load message", err)
	}
	a := actorFor(p, t.PatientID, t.PoolID)
	mark := domain.ReadMark{Subject: p.Subject, Role: a.Role, OnBehalfOf: a.OnBehalfOf, Seq: m.Seq, At: s.Now()}
	v, err := s.Inbox.MarkRead(ctx, t.ID, mark, func(v domain.Viewer) ([]outbox.Event, error) {
		b := s.newBatch(ctx)
		ev := &eventsv1.MessageRead{ThreadId: t.ID, PoolId: t.PoolID, UpToMessageId: m.ID, ReaderSubject: p.Subject, ReaderRole: a.Role, UnreadCount: v.Unread}
		b.event("message.read."+t.PoolID, ev)
		b.audit(a, eventsv1.Action_ACTION_UPDATE, messageTarget(t, m.ID), auditlog.Reason("mark_read"), auditlog.WithSeverity(eventsv1.Severity_SEVERITY_LOW))
		return b.rows()
	})
	if err != nil {
		return 0, storeError("mark read", err)
	}
	return v.Unread, nil
}

// SetArchived archives or unarchives a thread for the caller and returns the archive time.
func (s *Service) SetArchived(ctx context.Context, p *auth.Principal, threadID string, on bool) (time.Time, error) {
	threadID, err := domain.CheckID("thread_id", threadID)
	if err != nil {
		return time.Time{}, err
	}
	t, err := s.loadThread(ctx, threadID)
	if err != nil {
		return time.Time{}, err
	}
	action, code := actArchive, "archive"
	if !on {
		action, code = actUnarchive, "unarchive"
	}
	if _, err := s.authorize(ctx, p, action, threadResource(t), policy.Context{}, t); err != nil {
		return time.Time{}, err
	}
	b := s.newBatch(ctx)
	b.audit(actorFor(p, t.PatientID, t.PoolID), eventsv1.Action_ACTION_UPDATE, threadTarget(t),
		auditlog.Reason(code), auditlog.WithSeverity(eventsv1.Severity_SEVERITY_LOW))
	rows, err := b.rows()
	if err != nil {
		return time.Time{}, storeError("archive thread", err)
	}
	at, err := s.Inbox.SetArchived(ctx, t.ID, p.Subject, on, s.Now(), rows)
	return at, storeError("archive thread", err)
}
