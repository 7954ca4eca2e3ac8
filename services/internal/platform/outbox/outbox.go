// Package outbox is the suite's transactional outbox: events are written to Postgres in the
// same transaction as the state change they describe, and a relay publishes them to JetStream.
//
// # The table
//
// Each service schema has a table `outbox` (created by this package's migrations, which the
// migrate package runs before the service's own):
//
//	seq          bigint identity   write order; the relay publishes in seq order
//	id           text, unique      the event id, sent as Nats-Msg-Id (uuid v7 when Add makes one)
//	subject      text              the NATS subject (securemsg.events.<kind>.<action>[.<pool>])
//	payload      bytea             the encoded event (ids and metadata only, never PHI content)
//	headers      jsonb             extra NATS headers, string to string
//	created_at   timestamptz       when the event was written
//	published_at timestamptz null  when JetStream acknowledged it; null while unsent
//	attempts     integer           publish attempts so far
//	last_error   text null         the last publish error (NATS error text, never payloads)
//
// A CommitWatch, the pool's pgx tracer, wakes the relay of the writing process when a commit
// has made new rows visible; a poll covers rows written elsewhere (see CommitWatch for why this
// is not a NOTIFY trigger).
//
// # Guarantees
//
//   - Atomic with the change: Add writes in the caller's transaction. If it rolls back, the
//     events never existed; if it commits, they will be published.
//   - At least once into JetStream, effectively once in the stream: the relay marks a row
//     published only after the stream's PubAck. If it crashes (or its mark fails, or Postgres
//     crashes before the mark, which commits asynchronously, reaches disk) after the publish,
//     the row is sent again with the same Nats-Msg-Id and JetStream drops the copy,
//     provided the retry comes within the stream's duplicate window (natsx uses 10 minutes).
//     Consumers are idempotent anyway, for redeliveries and for outages longer than that.
//   - NATS being down delays events, never loses them: rows wait in the table, and the relay
//     retries with capped exponential backoff.
//   - Order: one relay at a time publishes a schema's rows, in seq order, so events of one
//     transaction, and of transactions that serialise on the same rows, reach the stream in
//     the order they were written. Events of concurrent, unrelated transactions have no order
//     to keep. The one exception: when a publish in the middle of a batch fails while later ones
//     succeed, the failed event arrives after them on retry.
//
// # Several replicas
//
// Every replica runs a Relay; each batch is a short transaction that first takes a
// transaction-scoped advisory lock for the schema (pg_try_advisory_xact_lock). The replica that
// gets it publishes the batch and marks it; the others find the lock taken and go back to
// waiting. We chose this over FOR UPDATE SKIP LOCKED because SKIP LOCKED lets two replicas
// publish adjacent batches at the same time, which reorders events of the same thread; one
// publisher with asynchronous, pipelined publishes already does thousands of events per second,
// far above a portal's event rate. Failover needs no lease: a lock held by a dead replica dies
// with its transaction.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/securemsg/securemsg/services/internal/platform/tracing"
)

// Event is one message for JetStream. Payload carries ids and metadata only, never PHI.
type Event struct {
	// ID is the event id and Nats-Msg-Id; Add fills in a uuid v7 when it is empty. Set it
	// yourself (NewID) when the event id must also appear in the payload.
	ID string
	// Subject is the NATS subject to publish to; no wildcards or spaces.
	Subject string
	// Payload is the encoded event (protobuf).
	Payload []byte
	// Headers become NATS headers (Nats-Msg-Id is set by the relay and may not be given here).
	Headers map[string]string
}

// ErrInvalidEvent is returned by Add for an event that could never be published. The error
// names the event's position, id and subject, never its payload or headers.
var ErrInvalidEvent = errors.New("outbox: invalid event")

// NewID returns a new event id: a uuid v7, so ids sort by creation time.
func NewID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString() // only fails if the random source fails; v4 is still unique
	}
	return id.String()
}

// insertSQL writes rows bound at $first..$first+3 (ids, subjects, payloads, headers), keeping
// their order; where, when not empty, is a condition the rows are written under.
func insertSQL(first int, where string) string {
	if where != "" {
		where = "WHERE " + where + "\n"
	}
	return fmt.Sprintf(insertMarker+`(id, subject, payload, headers)
SELECT id, subject, payload, headers::jsonb
FROM unnest($%d::text[], $%d::text[], $%d::bytea[], $%d::text[]) WITH ORDINALITY AS e(id, subject, payload, headers, n)
%sORDER BY n`, first, first+1, first+2, first+3, where)
}

var plainInsertSQL = insertSQL(1, "")

// execer is what Rows.Insert needs: a pool, a connection or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Add writes events to the outbox inside tx, the caller's transaction, in the order given.
// They are published after tx commits and never if it rolls back. The events' IDs must be
// unique; a repeated ID fails the insert (and so the caller's transaction).
func Add(ctx context.Context, tx pgx.Tx, events ...Event) error {
	if len(events) == 0 {
		return nil
	}
	rows, err := NewRows(ctx, events...)
	if err != nil {
		return err
	}
	return rows.Insert(ctx, tx)
}

// Rows are validated events in the shape the outbox insert binds. They let a caller write
// events in the same SQL statement as the change they describe (see Statement), which saves the
// round trips of an explicit transaction when one statement (or one batch) is the whole change.
type Rows struct {
	ids, subjects, headers []string
	payloads               [][]byte
}

// NewRows validates events (filling in missing ids) for Insert, Queue and Statement; the error wraps
// ErrInvalidEvent. When ctx carries a span, each row also records its trace context
// (traceparent), which the relay continues when it publishes, so the consumers' work joins the
// trace of the request that wrote the event.
func NewRows(ctx context.Context, events ...Event) (Rows, error) {
	r := Rows{ids: make([]string, len(events)), subjects: make([]string, len(events)),
		headers: make([]string, len(events)), payloads: make([][]byte, len(events))}
	for i, e := range events {
		if e.ID == "" {
			e.ID = NewID()
		}
		if err := validate(e); err != nil {
			return Rows{}, fmt.Errorf("%w: event %d (id %q): %v", ErrInvalidEvent, i, e.ID, err)
		}
		h := tracing.InjectHeaders(ctx, e.Headers)
		if h == nil {
			h = map[string]string{}
		}
		hj, err := json.Marshal(h)
		if err != nil {
			return Rows{}, fmt.Errorf("%w: event %d (id %q): encode headers", ErrInvalidEvent, i, e.ID)
		}
		r.ids[i], r.subjects[i], r.headers[i] = e.ID, e.Subject, string(hj)
		r.payloads[i] = e.Payload
		if r.payloads[i] == nil {
			r.payloads[i] = []byte{} // the column is NOT NULL; an empty event is still an event
		}
	}
	return r, nil
}

// Len is the number of events.
func (r Rows) Len() int { return len(r.ids) }

// Insert writes the rows as a statement of its own on db: inside the caller's transaction, or,
// on a pool, in an implicit transaction committed when Insert returns.
func (r Rows) Insert(ctx context.Context, db execer) error {
	if _, err := db.Exec(ctx, plainInsertSQL, r.args()...); err != nil {
		// pgx errors do not echo parameter values, so the payload cannot leak through err.
		return fmt.Errorf("outbox: insert %d events: %w", r.Len(), err)
	}
	return nil
}

// Queue adds the rows' insert to b, as a statement of its own.
func (r Rows) Queue(b *pgx.Batch) { b.Queue(plainInsertSQL, r.args()...) }

// args are the four parameters the insert binds, in order.
func (r Rows) args() []any { return []any{r.ids, r.subjects, r.payloads, r.headers} }

// Statement is a caller's SQL statement that also writes outbox rows, so that one statement
// (one implicit transaction, one round trip) is the whole change: the change, its events and
// its audit records. The caller writes only its own SQL and parameters; the outbox clause and
// its parameters are placed after them, so no caller ever numbers the outbox's placeholders.
// The guarantees of Add hold unchanged: the rows exist exactly when the statement commits.
type Statement struct {
	sql    string
	params int
}

// placeholder matches a positional parameter of the caller's SQL.
var placeholder = regexp.MustCompile(`\$([0-9]+)`)

// NewStatement builds `with, o AS (INSERT INTO outbox …) final`. with is the caller's WITH
// clauses ("WITH c AS (UPDATE … RETURNING 1)") and final its closing query ("SELECT count(*)
// FROM c"), both binding the caller's parameters $1..$n. onlyIf, when not empty, is the
// condition the rows are written under — typically `EXISTS (SELECT 1 FROM c)`, so that the
// events exist exactly when the change they describe happened. It panics on SQL that does not
// start with WITH: statements are package-level values, so any test that loads the package
// finds the mistake.
func NewStatement(with, onlyIf, final string) Statement {
	if !strings.HasPrefix(strings.TrimSpace(strings.ToUpper(with)), "WITH ") {
		panic("outbox.NewStatement: the caller's SQL must start with WITH")
	}
	n := 0
	for _, m := range placeholder.FindAllStringSubmatch(with+"\n"+final, -1) {
		if v, err := strconv.Atoi(m[1]); err == nil && v > n {
			n = v
		}
	}
	return Statement{sql: with + ", o AS (" + insertSQL(n+1, onlyIf) + ")\n" + final, params: n}
}

// SQL is the statement's text, the same for every execution (so pgx prepares it once).
func (s Statement) SQL() string { return s.sql }

// Args are the statement's arguments: the caller's own, in the order of its placeholders, then
// the rows'. It panics when own does not fill the caller's placeholders exactly, a programming
// error every test of the statement finds.
func (s Statement) Args(rows Rows, own ...any) []any {
	if len(own) != s.params {
		panic(fmt.Sprintf("outbox.Statement: %d arguments for %d placeholders", len(own), s.params))
	}
	return append(own[:len(own):len(own)], rows.args()...)
}

func validate(e Event) error {
	switch {
	case len(e.ID) > 128:
		return errors.New("id longer than 128 bytes")
	case e.Subject == "" || len(e.Subject) > 255:
		return errors.New("subject empty or longer than 255 bytes")
	case strings.ContainsAny(e.Subject, " \t\r\n*>"):
		return fmt.Errorf("subject %q has whitespace or wildcards", e.Subject)
	case strings.HasPrefix(e.Subject, ".") || strings.HasSuffix(e.Subject, ".") || strings.Contains(e.Subject, ".."):
		return fmt.Errorf("subject %q has an empty token", e.Subject)
	}
	for k := range e.Headers {
		if strings.EqualFold(k, "Nats-Msg-Id") {
			return errors.New("header Nats-Msg-Id is set by the relay from the event id")
		}
		if k == "" || strings.ContainsAny(k, " \t\r\n:") {
			return errors.New("header name empty or malformed")
		}
	}
	return nil
}
