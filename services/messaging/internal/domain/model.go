package domain

import (
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	"github.com/securemsg/securemsg/services/internal/platform/usererr"
)

// Limits on what a request may carry (the proto's documented limits).
const (
	MaxSubjectChars       = 200
	MaxBodyChars          = 20000
	MaxAttachments        = 10
	MaxAutoReplyChars     = 2000
	MaxDisclaimerChars    = 1000
	MaxTransferNoteChars  = 2000
	MaxBreakGlassChars    = 1000
	MaxCaseReferenceChars = 64
)

// Status is a thread's triage state (values match messagingv1.ThreadStatus).
type Status int16

// Thread states.
const (
	StatusOpen     Status = 1
	StatusAssigned Status = 2
	StatusClosed   Status = 3
)

// Thread is a conversation's stored facts, without its decrypted subject.
type Thread struct {
	ID                 string
	PoolID             string
	PatientID          string
	Category           commonv1.ThreadCategory
	Sensitivity        commonv1.Sensitivity
	Status             Status
	WrappedDEK         string
	SubjectSealed      []byte
	CreatedBySubject   string
	CreatedByRole      commonv1.Role
	CreatedOnBehalfOf  string
	AssigneeSubject    string
	Participants       []string
	CreatedAt          time.Time
	UpdatedAt          time.Time
	LastMessageAt      time.Time
	LastSenderRole     commonv1.Role
	ClosedAt           time.Time
	MessageCount       int32
	HasAttachments     bool
	AutoReplied        bool
	LegalHold          bool
	LegalHoldCase      string
	PatientLegalHold   bool
	TransferNoteSealed []byte
}

// Held reports whether a legal hold (on the thread or on its patient) covers the thread.
func (t *Thread) Held() bool { return t.LegalHold || t.PatientLegalHold }

// Append is what appending m does to the thread: m gets the next seq; the counters, the last
// message's time and sender role, the attachment flag and the participants (the sender joins,
// unless it is the system) follow. markAutoReplied records that the pool's auto-reply has
// answered the thread. A closed thread takes nothing: ErrThreadClosed.
//
// The Postgres adapter does the same in one statement; the repository contract tests hold the
// two to the same result.
func (t *Thread) Append(m *Message, markAutoReplied bool) error {
	if t.Status == StatusClosed {
		return ErrThreadClosed
	}
	t.MessageCount++
	m.Seq = t.MessageCount
	t.LastMessageAt, t.UpdatedAt, t.LastSenderRole = m.CreatedAt, m.CreatedAt, m.SenderRole
	t.HasAttachments = t.HasAttachments || len(m.AttachmentIDs) > 0
	t.AutoReplied = t.AutoReplied || markAutoReplied
	if m.SenderSubject != "" && !slices.Contains(t.Participants, m.SenderSubject) {
		t.Participants = append(slices.Clip(t.Participants), m.SenderSubject)
	}
	return nil
}

// Message is a stored message, without its decrypted body.
type Message struct {
	ID                  string
	ThreadID            string
	Seq                 int32
	SenderSubject       string
	SenderRole          commonv1.Role
	OnBehalfOf          string
	BodySealed          []byte
	AttachmentIDs       []string
	CreatedAt           time.Time
	AutoReply           bool
	CorrectsMessageID   string
	ClientRequestID     string
	RequestFPSealed     []byte
	RetractedAt         time.Time
	RetractedBySubject  string
	RetractedByRole     commonv1.Role
	RetractReasonCode   string
	RetractRequestID    string
	CorrectionMessageID string
}

// Retracted reports whether the message was retracted.
func (m *Message) Retracted() bool { return !m.RetractedAt.IsZero() }

// PoolSettings are a care pool's patient-facing settings (not PHI).
type PoolSettings struct {
	PoolID              string
	AutoReplyEnabled    bool
	AutoReplyText       string
	Turnaround          time.Duration // 0: not set
	EmergencyDisclaimer string
	UpdatedAt           time.Time
	UpdatedBySubject    string
	Version             int64 // 0: never stored
}

// CheckPoolSettings checks the values of s that people write, so that UpdatePoolSettings and
// the directory seed hold them to the same limits.
func CheckPoolSettings(s PoolSettings) error {
	if err := CheckText("auto_reply_text", s.AutoReplyText, MaxAutoReplyChars, false); err != nil {
		return err
	}
	if err := CheckText("emergency_disclaimer", s.EmergencyDisclaimer, MaxDisclaimerChars, false); err != nil {
		return err
	}
	if s.Turnaround < 0 {
		return invalid("FIELD_OUT_OF_RANGE", "turnaround_time must not be negative")
	}
	return nil
}

// AutoReplyBody is the system message a pool's auto-reply posts: its text, the turnaround and
// the emergency disclaimer, each when set.
func (s PoolSettings) AutoReplyBody() string {
	parts := []string{strings.TrimSpace(s.AutoReplyText)}
	if s.Turnaround > 0 {
		parts = append(parts, "We aim to answer within "+HumanDuration(s.Turnaround)+".")
	}
	if d := strings.TrimSpace(s.EmergencyDisclaimer); d != "" {
		parts = append(parts, d)
	}
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "\n\n")
}

// HumanDuration renders a turnaround for patients ("2 business days" is policy text the pool
// writes itself; this is the plain fallback).
func HumanDuration(d time.Duration) string {
	switch {
	case d >= 48*time.Hour && d%(24*time.Hour) == 0:
		return itoa(int(d/(24*time.Hour))) + " days"
	case d >= time.Hour && d%time.Hour == 0:
		if d == time.Hour {
			return "1 hour"
		}
		return itoa(int(d/time.Hour)) + " hours"
	default:
		m := int(d / time.Minute)
		if m == 1 {
			return "1 minute"
		}
		return itoa(m) + " minutes"
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// CheckText validates a required or optional text field against a character limit. The error
// names the field, never its content.
func CheckText(field, v string, limit int, required bool) error {
	switch {
	case required && strings.TrimSpace(v) == "":
		return invalid("FIELD_REQUIRED", "%s is required", field)
	case !utf8.ValidString(v):
		return invalid("FIELD_NOT_UTF8", "%s is not valid UTF-8", field)
	case utf8.RuneCountInString(v) > limit:
		return invalid("FIELD_TOO_LONG", "%s is longer than %d characters", field, limit)
	}
	return nil
}

// CheckAttachments validates attachment ids: at most MaxAttachments, each a UUID, no repeats.
func CheckAttachments(ids []string) error {
	if len(ids) > MaxAttachments {
		return invalid("TOO_MANY_ATTACHMENTS", "at most %d attachments per message", MaxAttachments)
	}
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if _, err := uuid.Parse(id); err != nil {
			return invalid("ATTACHMENT_ID_MALFORMED", "attachment_ids must be UUIDs")
		}
		if seen[id] {
			return invalid("ATTACHMENT_ID_REPEATED", "attachment_ids repeats an id")
		}
		seen[id] = true
	}
	return nil
}

// CheckRequestID validates a client request id (a UUID) and returns its canonical form.
func CheckRequestID(id string) (string, error) {
	u, err := uuid.Parse(id)
	if err != nil || id == "" {
		return "", invalid("REQUEST_ID_MALFORMED", "client_request_id must be a UUID")
	}
	return u.String(), nil
}

// CheckMessage validates what every new message carries: a body, its attachments and the
// client's request id, whose canonical form it returns.
func CheckMessage(body string, attachmentIDs []string, requestID string) (string, error) {
	if err := CheckText("body", body, MaxBodyChars, true); err != nil {
		return "", err
	}
	if err := CheckAttachments(attachmentIDs); err != nil {
		return "", err
	}
	return CheckRequestID(requestID)
}

// DefaultPageSize is the page size of a list or read that asks for none.
const DefaultPageSize = 50

// PageLimit is how many items a page of the requested size holds: DefaultPageSize for 0,
// at most maxSize.
func PageLimit(size, maxSize int) (int, error) {
	if size < 0 {
		return 0, invalid("FIELD_OUT_OF_RANGE", "page_size must not be negative")
	}
	if size == 0 {
		size = DefaultPageSize
	}
	return min(size, maxSize), nil
}

// CheckID validates a record id (thread or message: a UUID) and returns its canonical form.
// An id that is not a UUID names no record: NotFound, as for a UUID that names none.
func CheckID(field, id string) (string, error) {
	if id == "" {
		return "", invalid("FIELD_REQUIRED", "%s is required", field)
	}
	u, err := uuid.Parse(id)
	if err != nil {
		reason := "MESSAGE_NOT_FOUND"
		if field == "thread_id" {
			reason = "THREAD_NOT_FOUND"
		}
		return "", usererr.Newf(usererr.NotFound, reason, "%s not found", strings.TrimSuffix(field, "_id"))
	}
	return u.String(), nil
}

// CheckPoolID validates a pool id: it is used as a NATS subject token, so it may hold no ".",
// "*", ">" or whitespace.
func CheckPoolID(field, id string) error {
	if id == "" {
		return invalid("FIELD_REQUIRED", "%s is required", field)
	}
	if len(id) > 100 || strings.ContainsAny(id, ".*> \t\r\n") {
		return invalid("POOL_ID_MALFORMED", "%s is malformed", field)
	}
	return nil
}

// CheckCode validates a reason code from a fixed vocabulary: a lower-case identifier, never
// free text.
func CheckCode(field, code string, required bool) error {
	if code == "" {
		if required {
			return invalid("FIELD_REQUIRED", "%s is required", field)
		}
		return nil
	}
	if len(code) > 64 {
		return invalid("FIELD_TOO_LONG", "%s is too long", field)
	}
	for i, r := range code {
		codeRune := r >= 'a' && r <= 'z' || r == '_' || (i > 0 && r >= '0' && r <= '9')
		if !codeRune {
			return invalid("CODE_MALFORMED", "%s must be a lower-case code such as wrong_content", field)
		}
	}
	return nil
}

// RetractReasons is the fixed vocabulary of retraction reasons.
var RetractReasons = map[string]bool{"wrong_patient": true, "wrong_content": true, "sent_in_error": true}

// CheckCaseReference validates a legal case reference: an identifier such as "LIT-2026-0042",
// no spaces (so no names), because it is logged and audited.
func CheckCaseReference(ref string) error {
	if ref == "" {
		return invalid("FIELD_REQUIRED", "case_reference is required when placing a hold")
	}
	if len(ref) > MaxCaseReferenceChars {
		return invalid("FIELD_TOO_LONG", "case_reference is longer than %d characters", MaxCaseReferenceChars)
	}
	for i, r := range ref {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			(i > 0 && (r == '-' || r == '_' || r == '.' || r == '/'))
		if !ok {
			return invalid("CASE_REFERENCE_MALFORMED", "case_reference must be an identifier such as LIT-2026-0042 (letters, digits, - _ . /)")
		}
	}
	return nil
}

// PatientSide reports whether role writes for the patient (patient or proxy) rather than for
// the care team.
func PatientSide(role commonv1.Role) bool {
	return role == commonv1.Role_ROLE_PATIENT || role == commonv1.Role_ROLE_PROXY
}

// ValidCategory reports whether c is a real category.
func ValidCategory(c commonv1.ThreadCategory) bool {
	_, ok := commonv1.ThreadCategory_name[int32(c)]
	return ok && c != commonv1.ThreadCategory_THREAD_CATEGORY_UNSPECIFIED
}

// ValidSensitivity reports whether s is a real sensitivity.
func ValidSensitivity(s commonv1.Sensitivity) bool {
	_, ok := commonv1.Sensitivity_name[int32(s)]
	return ok && s != commonv1.Sensitivity_SENSITIVITY_UNSPECIFIED
}

// SensitivityLabel is the policy's name for a sensitivity ("NORMAL", "ADOLESCENT_CONFIDENTIAL").
func SensitivityLabel(s commonv1.Sensitivity) string {
	return strings.TrimPrefix(s.String(), "SENSITIVITY_")
}
