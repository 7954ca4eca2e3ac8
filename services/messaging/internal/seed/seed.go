// Package seed fills a migrated messaging schema with many threads and messages fast (COPY, no
// service round trips), stored exactly as the service stores them: every thread has its own
// DEK, wrapped by Transit (one batch request per chunk of threads, not one call per thread),
// and its subject and bodies sealed under that DEK with the service's AAD (thread, message,
// field), so that GetThread through the real service opens them. It exists for the growth
// benchmarks (make bench), which ask how each per-page operation's cost changes as the data
// grows; never point it at a schema that holds real data.
package seed

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	"github.com/securemsg/securemsg/services/internal/platform/crypto"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

// The sealed fields' names, as the service binds them into each record's AAD
// (services/messaging/internal/app: fieldSubject, fieldBody).
const (
	fieldSubject = "subject"
	fieldBody    = "body"
)

// Shape is what to seed. The operands of the benchmarks stay the same size at every scale (the
// patient's threads, the big thread), while the rest of the data, and the queue, grow with
// Messages: a per-page operation that does not depend on the table's size costs the same.
type Shape struct {
	// Messages is the total number of messages; threads are Messages/5 (five per thread on
	// average, the big thread aside).
	Messages int
	// Patient and PatientSubject own PatientThreads threads (ListThreads for one patient).
	Patient, PatientSubject string
	PatientThreads          int
	// QueuePool gets a quarter of the threads open (the pool queue) and a quarter closed;
	// OtherPool the other half.
	QueuePool, OtherPool string
	// Clinician answers in every tenth thread; other clinicians ("user-seed-clinician-N", 37 of
	// them) in the rest.
	Clinician string
	// BigThreadMessages is the size of the one thread in QueuePool read page by page and sent
	// into (GetThread paged, SendMessage into a large thread).
	BigThreadMessages int
	// Chunk is how many threads one Transit batch and one COPY carry (default 2,000).
	Chunk int
}

// Result is what was seeded.
type Result struct {
	Threads, Messages int
	// BigThread is the big thread's id.
	BigThread string
	// QueueOpen is how many threads of QueuePool are open.
	QueueOpen int
	Took      time.Duration
}

// Wrapper wraps DEKs under the service's Transit key, in order, in as few requests as it can.
type Wrapper interface {
	WrapDEKs(ctx context.Context, deks [][]byte) ([]string, error)
}

// TransitWrapper wraps DEKs with Transit's encrypt endpoint and batch_input: the same
// ciphertext format as datakey/plaintext, which is how the service makes a thread's DEK, so
// the service's OpenDEK (Transit decrypt) unwraps it.
type TransitWrapper struct {
	Addr, Token, Mount, Key string
	Client                  *http.Client
}

// WrapDEKs implements Wrapper with one request.
func (w TransitWrapper) WrapDEKs(ctx context.Context, deks [][]byte) ([]string, error) {
	items := make([]map[string]string, len(deks))
	for i, d := range deks {
		items[i] = map[string]string{"plaintext": base64.StdEncoding.EncodeToString(d)}
	}
	body, err := json.Marshal(map[string]any{"batch_input": items})
	if err != nil {
		return nil, err
	}
	url := strings.TrimRight(w.Addr, "/") + "/v1/" + w.Mount + "/encrypt/" + w.Key
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Vault-Token", w.Token)
	req.Header.Set("Content-Type", "application/json")
	c := w.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("seed: transit encrypt: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	var out struct {
		Data struct {
			BatchResults []struct {
				Ciphertext string `json:"ciphertext"`
				Error      string `json:"error"`
			} `json:"batch_results"`
		} `json:"data"`
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("seed: transit encrypt: HTTP %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("seed: transit encrypt: %w", err)
	}
	if len(out.Data.BatchResults) != len(deks) {
		return nil, fmt.Errorf("seed: transit encrypt: %d results for %d keys", len(out.Data.BatchResults), len(deks))
	}
	wrapped := make([]string, len(deks))
	for i, r := range out.Data.BatchResults {
		if r.Error != "" || !strings.HasPrefix(r.Ciphertext, "vault:v") {
			return nil, errors.New("seed: transit encrypt: an item failed")
		}
		wrapped[i] = r.Ciphertext
	}
	return wrapped, nil
}

var threadColumns = []string{"id", "pool_id", "patient_id", "category", "sensitivity", "status", "wrapped_dek",
	"subject_sealed", "created_by_subject", "created_by_role", "participants", "created_at", "updated_at",
	"last_message_at", "last_sender_role", "closed_at", "message_count"}

var messageColumns = []string{"id", "thread_id", "seq", "sender_subject", "sender_role", "body_sealed", "created_at"}

// viewerColumns: writing in a thread counts as reading it up to one's own message (the service
// keeps a read mark per writer), so every writer has a viewer_state row, as a live database
// has: the list queries join it, and its statistics steer their plans.
var viewerColumns = []string{"thread_id", "subject", "read_seq"}

// thread is one thread to seed, before sealing.
type thread struct {
	id, pool, patient, creator, clinician string
	status                                domain.Status
	messages                              int
	start                                 time.Time
}

// plan lays out shape's threads in order; now anchors the times (the newest activity is the
// highest index, the big thread's a day ago).
func plan(s Shape, now time.Time) ([]thread, int) {
	n := max(s.Messages/5, s.PatientThreads+1)
	rest := s.Messages - s.BigThreadMessages
	per, extra := rest/(n-1), rest%(n-1)
	year := 365 * 24 * time.Hour
	ts := make([]thread, n)
	open := 0
	for i := range ts {
		t := thread{id: uuid.NewString(), messages: per, start: now.Add(-year + time.Duration(i)*(year/time.Duration(n)))}
		if i-1 < extra {
			t.messages++
		}
		// A quarter each: queue pool open, queue pool closed, other pool open, other closed.
		t.pool, t.status = s.QueuePool, domain.StatusOpen
		switch i % 4 {
		case 1:
			t.status = domain.StatusClosed
		case 2:
			t.pool = s.OtherPool
		case 3:
			t.pool, t.status = s.OtherPool, domain.StatusClosed
		}
		t.patient = fmt.Sprintf("p-seed-%d", i%9973)
		t.creator = "user-seed-" + t.patient
		t.clinician = s.Clinician
		if i%10 != 0 {
			t.clinician = fmt.Sprintf("user-seed-clinician-%d", i%37)
		}
		if i >= 1 && i <= s.PatientThreads {
			t.patient, t.creator = s.Patient, s.PatientSubject
		}
		if i == 0 {
			t.pool, t.status, t.messages = s.QueuePool, domain.StatusOpen, s.BigThreadMessages
			t.start = now.Add(-24*time.Hour - time.Duration(s.BigThreadMessages)*time.Second)
		}
		if t.pool == s.QueuePool && t.status == domain.StatusOpen {
			open++
		}
		ts[i] = t
	}
	return ts, open
}

// Messaging seeds shape into the schema pool's connections use; the schema must be migrated
// and hold no threads yet. It ANALYZEs the tables when done, as autovacuum would.
func Messaging(ctx context.Context, pool *pgxpool.Pool, w Wrapper, s Shape) (Result, error) {
	if s.Chunk == 0 {
		s.Chunk = 2000
	}
	if s.Messages > math.MaxInt32 {
		return Result{}, fmt.Errorf("seed: %d messages is more than a message count can hold", s.Messages)
	}
	if s.Messages < s.BigThreadMessages+s.PatientThreads+2 {
		return Result{}, fmt.Errorf("seed: %d messages cannot hold the big thread and the patient's threads", s.Messages)
	}
	start := time.Now()
	threads, open := plan(s, start)
	res := Result{Threads: len(threads), BigThread: threads[0].id, QueueOpen: open}
	body := []byte(strings.Repeat("Seeded message text for the growth benchmarks. ", 5))
	for lo := 0; lo < len(threads); lo += s.Chunk {
		chunk := threads[lo:min(lo+s.Chunk, len(threads))]
		deks := make([][]byte, len(chunk))
		for i := range deks {
			deks[i] = make([]byte, crypto.KeySize)
			if _, err := rand.Read(deks[i]); err != nil {
				return res, err
			}
		}
		wrapped, err := w.WrapDEKs(ctx, deks)
		if err != nil {
			return res, err
		}
		var trows, mrows, vrows [][]any
		for i, t := range chunk {
			sl, err := crypto.NewRecordSealer(deks[i], t.id)
			clear(deks[i])
			if err != nil {
				return res, err
			}
			subj, err := sl.SealRecord([]byte("Seeded thread"), crypto.MessageFieldAAD(t.id, "", fieldSubject))
			if err != nil {
				return res, err
			}
			var last time.Time
			var lastRole int16
			read := map[string]int32{}
			for seq := 1; seq <= t.messages; seq++ {
				id := uuid.NewString()
				sender, role := t.creator, int16(commonv1.Role_ROLE_PATIENT)
				if seq%2 == 0 {
					sender, role = t.clinician, int16(commonv1.Role_ROLE_CLINICIAN)
				}
				read[sender] = int32(seq)
				sealed, err := sl.SealRecord(body, crypto.MessageFieldAAD(t.id, id, fieldBody))
				if err != nil {
					return res, err
				}
				last, lastRole = t.start.Add(time.Duration(seq)*time.Second), role
				mrows = append(mrows, []any{id, t.id, int32(seq), sender, role, sealed, last})
			}
			for _, who := range []string{t.creator, t.clinician} {
				if seq, ok := read[who]; ok {
					vrows = append(vrows, []any{t.id, who, seq})
				}
			}
			var closed *time.Time
			if t.status == domain.StatusClosed {
				closed = &last
			}
			trows = append(trows, []any{t.id, t.pool, t.patient, int16(commonv1.ThreadCategory_THREAD_CATEGORY_CLINICAL_QUESTION),
				int16(commonv1.Sensitivity_SENSITIVITY_NORMAL), int16(t.status), wrapped[i], subj, t.creator,
				int16(commonv1.Role_ROLE_PATIENT), participants(t, read), t.start, last, last, lastRole, closed, count32(t.messages)})
		}
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"threads"}, threadColumns, pgx.CopyFromRows(trows)); err != nil {
				return fmt.Errorf("seed: copy threads: %w", err)
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"messages"}, messageColumns, pgx.CopyFromRows(mrows)); err != nil {
				return fmt.Errorf("seed: copy messages: %w", err)
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"viewer_state"}, viewerColumns, pgx.CopyFromRows(vrows)); err != nil {
				return fmt.Errorf("seed: copy read marks: %w", err)
			}
			return nil
		}); err != nil {
			return res, err
		}
		res.Messages += len(mrows)
	}
	if _, err := pool.Exec(ctx, `ANALYZE threads; ANALYZE messages; ANALYZE viewer_state`); err != nil {
		return res, fmt.Errorf("seed: analyze: %w", err)
	}
	res.Took = time.Since(start)
	return res, nil
}

// participants are the thread's writers, creator first.
func participants(t thread, read map[string]int32) []string {
	out := []string{t.creator}
	if _, ok := read[t.clinician]; ok {
		out = append(out, t.clinician)
	}
	return out
}

// count32 is a thread's message count as the column holds it; Messaging refuses shapes whose
// total does not fit, so no thread's count can overflow.
func count32(n int) int32 { return int32(n) } //nolint:gosec // G115: n <= Shape.Messages <= MaxInt32, checked in Messaging
