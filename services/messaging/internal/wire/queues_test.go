package wire_test

import (
	"context"
	"slices"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	eventsv1 "github.com/securemsg/securemsg/gen/securemsg/events/v1"
	messagingv1 "github.com/securemsg/securemsg/gen/securemsg/messaging/v1"
	"github.com/securemsg/securemsg/services/internal/testkit/servicetest"
)

// listIDs lists threads with req as ctx's caller and returns their ids in order.
func (e *env) listIDs(t *testing.T, ctx context.Context, req *messagingv1.ListThreadsRequest) ([]string, *messagingv1.ListThreadsResponse) {
	t.Helper()
	resp, err := e.api.ListThreads(ctx, req)
	if err != nil {
		t.Fatalf("ListThreads(%v) = %v", req, err)
	}
	var ids []string
	for _, th := range resp.GetThreads() {
		ids = append(ids, th.GetThreadId())
	}
	return ids, resp
}

// TestCareTeamQueues: a clinician works the unassigned queue, their own and a colleague's, by
// status and category, with every queue's size from one call; the badge counts follow reads
// and replies.
func TestCareTeamQueues(t *testing.T) {
	e := newEnv(t)
	clin, colleague := e.as(t, servicetest.Clinician), e.as(t, TwoPoolClinician)
	newThread := func(cat commonv1.ThreadCategory) string {
		req := threadTo("pool-cardiology", marker(t, "subject"), marker(t, "body"))
		req.Category = cat
		return e.createThread(t, servicetest.Patient, req).GetThread().GetThreadId()
	}
	general, billing := commonv1.ThreadCategory_THREAD_CATEGORY_GENERAL, commonv1.ThreadCategory_THREAD_CATEGORY_BILLING
	unassigned, mine, theirs, closed := newThread(general), newThread(billing), newThread(general), newThread(general)
	if _, err := e.api.ClaimThread(clin, &messagingv1.ClaimThreadRequest{ThreadId: mine}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.api.ClaimThread(colleague, &messagingv1.ClaimThreadRequest{ThreadId: theirs}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.api.CloseThread(clin, &messagingv1.CloseThreadRequest{ThreadId: closed}); err != nil {
		t.Fatal(err)
	}
	open := []messagingv1.ThreadStatus{messagingv1.ThreadStatus_THREAD_STATUS_OPEN, messagingv1.ThreadStatus_THREAD_STATUS_ASSIGNED}
	queue := func(edit func(*messagingv1.ListThreadsRequest)) []string {
		req := &messagingv1.ListThreadsRequest{PoolIds: []string{"pool-cardiology"}, Statuses: open}
		edit(req)
		ids, _ := e.listIDs(t, clin, req)
		return ids
	}
	for _, tc := range []struct {
		name string
		edit func(*messagingv1.ListThreadsRequest)
		want []string
	}{
		{"open", func(*messagingv1.ListThreadsRequest) {}, []string{theirs, mine, unassigned}},
		{"unassigned", func(r *messagingv1.ListThreadsRequest) {
			r.Assignee = messagingv1.AssigneeFilter_ASSIGNEE_FILTER_UNASSIGNED
		}, []string{unassigned}},
		{"mine", func(r *messagingv1.ListThreadsRequest) { r.Assignee = messagingv1.AssigneeFilter_ASSIGNEE_FILTER_ME }, []string{mine}},
		{"a colleague's", func(r *messagingv1.ListThreadsRequest) {
			r.Assignee, r.AssigneeSubject = messagingv1.AssigneeFilter_ASSIGNEE_FILTER_MEMBER, TwoPoolClinician.Subject
		}, []string{theirs}},
		{"billing", func(r *messagingv1.ListThreadsRequest) { r.Categories = []commonv1.ThreadCategory{billing} }, []string{mine}},
		{"closed", func(r *messagingv1.ListThreadsRequest) {
			r.Statuses = []messagingv1.ThreadStatus{messagingv1.ThreadStatus_THREAD_STATUS_CLOSED}
		}, []string{closed}},
	} {
		if got := queue(tc.edit); !slices.Equal(got, tc.want) {
			t.Errorf("queue %s = %v, want %v", tc.name, got, tc.want)
		}
	}

	_, resp := e.listIDs(t, clin, &messagingv1.ListThreadsRequest{PoolIds: []string{"pool-cardiology"}, Statuses: open,
		Assignee: messagingv1.AssigneeFilter_ASSIGNEE_FILTER_UNASSIGNED, IncludeCounts: true})
	want := &messagingv1.QueueCounts{Total: 3, Unread: 3, Unassigned: 1, AssignedToMe: 1}
	if c := resp.GetCounts(); c.GetTotal() != want.Total || c.GetUnread() != want.Unread || c.GetUnassigned() != want.Unassigned || c.GetAssignedToMe() != want.AssignedToMe {
		t.Errorf("counts = %v, want %v", c, want)
	}

	_, err := e.api.ListThreads(clin, &messagingv1.ListThreadsRequest{AssigneeSubject: TwoPoolClinician.Subject})
	wantReason(t, "ListThreads(assignee_subject without MEMBER)", err, codes.InvalidArgument, "ASSIGNEE_SUBJECT_UNEXPECTED")
	_, err = e.api.ListThreads(clin, &messagingv1.ListThreadsRequest{Assignee: messagingv1.AssigneeFilter_ASSIGNEE_FILTER_MEMBER})
	wantReason(t, "ListThreads(MEMBER without a subject)", err, codes.InvalidArgument, "ASSIGNEE_SUBJECT_REQUIRED")
	_, err = e.api.ListThreads(clin, &messagingv1.ListThreadsRequest{Statuses: []messagingv1.ThreadStatus{0}})
	wantCode(t, "ListThreads(status unspecified)", err, codes.InvalidArgument)

	// Badges: the clinician has read nothing of the four; replying reads a thread up to the
	// reply, and the patient then has one unread message.
	count := func(ctx context.Context) *messagingv1.GetUnreadCountResponse {
		t.Helper()
		c, err := e.api.GetUnreadCount(ctx, &messagingv1.GetUnreadCountRequest{})
		if err != nil {
			t.Fatalf("GetUnreadCount = %v", err)
		}
		return c
	}
	patient := e.as(t, servicetest.Patient)
	if c := count(clin); c.GetUnreadThreads() != 4 || c.GetUnreadMessages() != 4 {
		t.Errorf("clinician's unread = %v, want 4 threads, 4 messages", c)
	}
	if c := count(patient); c.GetUnreadThreads() != 0 {
		t.Errorf("patient's unread = %v, want none: they wrote every message", c)
	}
	reply, err := e.api.SendMessage(clin, &messagingv1.SendMessageRequest{ThreadId: mine, Body: marker(t, "reply"), ClientRequestId: uuid.NewString()})
	if err != nil {
		t.Fatal(err)
	}
	if c := count(clin); c.GetUnreadThreads() != 3 {
		t.Errorf("clinician's unread after replying = %v, want 3 threads", c)
	}
	if c := count(patient); c.GetUnreadThreads() != 1 || c.GetUnreadMessages() != 1 {
		t.Errorf("patient's unread after the reply = %v, want 1 thread, 1 message", c)
	}
	if _, err := e.api.MarkRead(patient, &messagingv1.MarkReadRequest{ThreadId: mine, UpToMessageId: reply.GetMessage().GetMessageId()}); err != nil {
		t.Fatal(err)
	}
	if c := count(patient); c.GetUnreadThreads() != 0 || c.GetUnreadMessages() != 0 {
		t.Errorf("patient's unread after reading = %v, want none", c)
	}
	if c := count(e.as(t, servicetest.OtherClinician)); c.GetUnreadThreads() != 0 {
		t.Errorf("another pool's clinician's unread = %v, want none of cardiology's", c)
	}
}

// TestQueuePagingUnderConcurrentWrites: pages never repeat a thread, and every thread that did
// not change while the caller paged is listed once; one that gained a message moves to the
// first page.
func TestQueuePagingUnderConcurrentWrites(t *testing.T) {
	e := newEnv(t)
	clin := e.as(t, servicetest.Clinician)
	var threads []string
	for range 7 {
		threads = append(threads, e.createThread(t, servicetest.Patient, threadTo("pool-cardiology", marker(t, "subject"), marker(t, "body"))).GetThread().GetThreadId())
	}
	req := &messagingv1.ListThreadsRequest{PoolIds: []string{"pool-cardiology"}, PageSize: 3}
	seen := map[string]int{}
	first, resp := e.listIDs(t, clin, req)
	for _, id := range first {
		seen[id]++
	}
	// Between pages: the oldest thread (not listed yet) gains a message, a new one is opened.
	moved := threads[0]
	if _, err := e.api.SendMessage(clin, &messagingv1.SendMessageRequest{ThreadId: moved, Body: marker(t, "reply"), ClientRequestId: uuid.NewString()}); err != nil {
		t.Fatal(err)
	}
	fresh := e.createThread(t, servicetest.Patient, threadTo("pool-cardiology", marker(t, "subject"), marker(t, "body"))).GetThread().GetThreadId()
	for resp.GetNextPageToken() != "" {
		var ids []string
		ids, resp = e.listIDs(t, clin, &messagingv1.ListThreadsRequest{PoolIds: req.PoolIds, PageSize: 3, PageToken: resp.GetNextPageToken()})
		for _, id := range ids {
			seen[id]++
		}
	}
	for _, id := range threads[1:] {
		if seen[id] != 1 {
			t.Errorf("unchanged thread %s listed %d times, want once", id, seen[id])
		}
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("thread %s listed %d times", id, n)
		}
	}
	if seen[moved] != 0 || seen[fresh] != 0 {
		t.Errorf("threads that moved above the cursor were listed on later pages: moved %d, new %d", seen[moved], seen[fresh])
	}
	top, _ := e.listIDs(t, clin, req)
	if len(top) < 2 || top[0] != fresh || top[1] != moved {
		t.Errorf("first page after the writes = %v, want the new thread, then the one that moved, on top", top)
	}
	_, err := e.api.ListThreads(clin, &messagingv1.ListThreadsRequest{PoolIds: req.PoolIds, PageSize: 3, PageToken: resp.GetNextPageToken() + "x",
		Assignee: messagingv1.AssigneeFilter_ASSIGNEE_FILTER_UNASSIGNED})
	wantCode(t, "ListThreads(a malformed token)", err, codes.InvalidArgument)
	_, page1 := e.listIDs(t, clin, req)
	_, err = e.api.ListThreads(clin, &messagingv1.ListThreadsRequest{PoolIds: req.PoolIds, PageSize: 3, PageToken: page1.GetNextPageToken(),
		Assignee: messagingv1.AssigneeFilter_ASSIGNEE_FILTER_UNASSIGNED})
	wantReason(t, "ListThreads(a token for other filters)", err, codes.InvalidArgument, "PAGE_TOKEN_INVALID")
}

// receiptsOf is a message's receipts as "role:subject" (with "@patient" for a proxy's).
func receiptsOf(m *messagingv1.Message) []string {
	var out []string
	for _, r := range m.GetReceipts() {
		s := r.GetReader().GetRole().String() + ":" + r.GetReader().GetSubject()
		if p := r.GetReader().GetOnBehalfOfPatientId(); p != "" {
			s += "@" + p
		}
		if r.GetReadTime() == nil {
			s += " (no time)"
		}
		out = append(out, s)
	}
	return out
}

// TestGetMessageAndReadReceipts: GetMessage reads one message, audited; the sender sees who on
// the other side read it, as the policy allows: a proxy's read as the proxy's, never the
// patient's, and a proxy never sees the patient's reads.
func TestGetMessageAndReadReceipts(t *testing.T) {
	e := newEnv(t)
	patient, proxy, clin := e.as(t, servicetest.Patient), e.as(t, servicetest.Proxy), e.as(t, servicetest.Clinician)
	body := marker(t, "body")
	created := e.createThread(t, servicetest.Patient, threadTo("pool-cardiology", marker(t, "subject"), body))
	th, first := created.GetThread().GetThreadId(), created.GetMessage().GetMessageId()
	get := func(ctx context.Context, id string) *messagingv1.Message {
		t.Helper()
		resp, err := e.api.GetMessage(ctx, &messagingv1.GetMessageRequest{ThreadId: th, MessageId: id})
		if err != nil {
			t.Fatalf("GetMessage(%s) = %v", id, err)
		}
		return resp.GetMessage()
	}
	read := func(ctx context.Context, id string) {
		t.Helper()
		if _, err := e.api.MarkRead(ctx, &messagingv1.MarkReadRequest{ThreadId: th, UpToMessageId: id}); err != nil {
			t.Fatalf("MarkRead(%s) = %v", id, err)
		}
	}
	if m := get(clin, first); m.GetBody() != body || m.GetRead() || len(m.GetReceipts()) != 0 {
		t.Fatalf("GetMessage(clinician, unread) = body ok %t, read %t, receipts %v; want the body, unread, no receipts (the sender's own is never listed)",
			m.GetBody() == body, m.GetRead(), receiptsOf(m))
	}
	if findAudit(e.auditRecords(t), eventsv1.Action_ACTION_READ, first, servicetest.Clinician.Subject) == nil {
		t.Errorf("GetMessage left no READ record on the message")
	}
	read(clin, first)
	read(proxy, first)
	if got, want := receiptsOf(get(patient, first)), []string{"ROLE_CLINICIAN:user-clinician", "ROLE_PROXY:user-proxy@p-1001"}; !slices.Equal(got, want) {
		t.Errorf("patient's receipts on their message = %v, want %v", got, want)
	}
	if got, want := receiptsOf(get(proxy, first)), []string{"ROLE_CLINICIAN:user-clinician"}; !slices.Equal(got, want) {
		t.Errorf("proxy's receipts on the patient's message = %v, want %v", got, want)
	}

	reply, err := e.api.SendMessage(clin, &messagingv1.SendMessageRequest{ThreadId: th, Body: marker(t, "reply"), ClientRequestId: uuid.NewString()})
	if err != nil {
		t.Fatal(err)
	}
	second := reply.GetMessage().GetMessageId()
	if m := get(clin, second); len(m.GetReceipts()) != 0 {
		t.Errorf("receipts on an unread reply = %v, want none", receiptsOf(m))
	}
	read(patient, second)
	read(proxy, second)
	if got, want := receiptsOf(get(clin, second)), []string{"ROLE_PATIENT:user-patient", "ROLE_PROXY:user-proxy@p-1001"}; !slices.Equal(got, want) {
		t.Errorf("clinician's receipts on their reply = %v, want %v", got, want)
	}
	if got := receiptsOf(get(proxy, second)); len(got) != 0 {
		t.Errorf("proxy's receipts on the reply = %v, want none: the patient's read is not theirs to see", got)
	}
	// GetThread carries the same receipts.
	page, err := e.api.GetThread(patient, &messagingv1.GetThreadRequest{ThreadId: th})
	if err != nil {
		t.Fatal(err)
	}
	if got := receiptsOf(page.GetMessages()[0]); len(got) != 2 {
		t.Errorf("GetThread's receipts on the first message = %v, want the clinician's and the proxy's", got)
	}

	other := e.createThread(t, servicetest.Patient, threadTo("pool-cardiology", marker(t, "subject"), marker(t, "body"))).GetMessage().GetMessageId()
	_, err = e.api.GetMessage(patient, &messagingv1.GetMessageRequest{ThreadId: th, MessageId: other})
	wantReason(t, "GetMessage(a message of another thread)", err, codes.NotFound, "MESSAGE_NOT_FOUND")
	_, err = e.api.GetMessage(e.as(t, servicetest.OtherPatient), &messagingv1.GetMessageRequest{ThreadId: th, MessageId: first})
	if c := codesOf(err); c != codes.PermissionDenied && c != codes.NotFound {
		t.Errorf("GetMessage(another patient) = %v, want refused", err)
	}
	_, err = e.api.GetMessage(e.as(t, servicetest.OtherClinician), &messagingv1.GetMessageRequest{ThreadId: th, MessageId: first})
	wantCode(t, "GetMessage(another pool's clinician)", err, codes.PermissionDenied)
	if leaks := e.rawRowsContain(t, body); len(leaks) > 0 {
		t.Errorf("the message body is stored in plain text in %v", leaks)
	}
}
