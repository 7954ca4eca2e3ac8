package pgstore

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	commonv1 "github.com/securemsg/securemsg/gen/securemsg/common/v1"
	"github.com/securemsg/securemsg/services/internal/platform/outbox"
	"github.com/securemsg/securemsg/services/messaging/internal/domain"
)

const messageCols = `m.id::text, m.thread_id::text, m.seq, m.sender_subject, m.sender_role, m.on_behalf_of,
	m.body_sealed, m.attachment_ids, m.created_at, m.auto_reply, coalesce(m.corrects_message_id::text, ''),
	coalesce(m.client_request_id::text, ''), m.request_fp_sealed, m.retracted_at,
	coalesce(m.retracted_by_subject, ''), coalesce(m.retracted_by_role, 0), coalesce(m.retract_reason_code, ''),
	coalesce(m.retract_request_id::text, ''), coalesce(m.correction_message_id::text, '')`

func scanMessage(row pgx.Row, extra ...any) (*domain.Message, error) {
	var m domain.Message
	var senderRole, retractRole int16
	var retracted *time.Time
	if err := row.Scan(append([]any{&m.ID, &m.ThreadID, &m.Seq, &m.SenderSubject, &senderRole, &m.OnBehalfOf,
		&m.BodySealed, &m.AttachmentIDs, &m.CreatedAt, &m.AutoReply, &m.CorrectsMessageID,
		&m.ClientRequestID, &m.RequestFPSealed, &retracted, &m.RetractedBySubject, &retractRole,
		&m.RetractReasonCode, &m.RetractRequestID, &m.CorrectionMessageID}, extra...)...); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, errNoRows
		}
		return nil, err
	}
	m.SenderRole, m.RetractedByRole = commonv1.Role(senderRole), commonv1.Role(retractRole)
	if retracted != nil {
		m.RetractedAt = *retracted
	}
	return &m, nil
}

func messageNotFound(m *domain.Message, err error) (*domain.Message, error) {
	if errors.Is(err, errNoRows) {
		return nil, domain.ErrMessageNotFound
	}
	return m, dbError(err)
}

// Message implements domain.MessageRepository.
func (s *Store) Message(ctx context.Context, threadID, id string) (*domain.Message, error) {
	return messageNotFound(scanMessage(s.pool.QueryRow(ctx, `SELECT `+messageCols+` FROM messages m WHERE m.id = $1 AND m.thread_id = $2`, id, threadID)))
}

// MessageByID implements domain.MessageRepository.
func (s *Store) MessageByID(ctx context.Context, id string) (*domain.Message, error) {
	return messageNotFound(scanMessage(s.pool.QueryRow(ctx, `SELECT `+messageCols+` FROM messages m WHERE m.id = $1`, id)))
}

// MessageByRequest implements domain.MessageRepository in one round trip.
func (s *Store) MessageByRequest(ctx context.Context, sender, requestID string) (m *domain.Message, retracted bool, err error) {
	m, err = scanMessage(s.pool.QueryRow(ctx, messageByRequestSQL, sender, requestID), &retracted)
	if errors.Is(err, errNoRows) {
		return nil, false, nil
	}
	return m, retracted, dbError(err)
}

// messageByRequestSQL looks in both request-id indexes in one round trip; a created message
// wins over a retracted one (one request id cannot be both unless a client reused it).
const messageByRequestSQL = `SELECT * FROM (
	(SELECT ` + messageCols + `, false AS retracted FROM messages m
		WHERE m.sender_subject = $1 AND m.client_request_id = $2)
	UNION ALL
	(SELECT ` + messageCols + `, true FROM messages m
		WHERE m.retracted_by_subject = $1 AND m.retract_request_id = $2 LIMIT 1)
) r ORDER BY r.retracted LIMIT 1`

// Messages implements domain.MessageRepository.
func (s *Store) Messages(ctx context.Context, threadID string, afterSeq int32, limit int) ([]*domain.Message, error) {
	rows, err := s.pool.Query(ctx, messagesSQL, threadID, afterSeq, limit)
	if err != nil {
		return nil, dbError(err)
	}
	msgs, err := collectMessages(rows)
	return msgs, dbError(err)
}

const messagesSQL = `SELECT ` + messageCols + ` FROM messages m
	WHERE m.thread_id = $1 AND m.seq > $2 ORDER BY m.seq LIMIT $3`

func collectMessages(rows pgx.Rows) ([]*domain.Message, error) {
	defer rows.Close()
	var out []*domain.Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// RetractMessage implements domain.MessageRepository.
func (s *Store) RetractMessage(ctx context.Context, m *domain.Message, rows []outbox.Event, appends domain.Appends) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE messages SET retracted_at = $3, retracted_by_subject = $4, retracted_by_role = $5,
			retract_reason_code = $6, retract_request_id = $7, correction_message_id = $8
			WHERE id = $1 AND thread_id = $2 AND retracted_at IS NULL`,
			m.ID, m.ThreadID, m.RetractedAt, m.RetractedBySubject, smallint(m.RetractedByRole), m.RetractReasonCode,
			nullUUID(m.RetractRequestID), nullUUID(m.CorrectionMessageID))
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return domain.ErrAlreadyRetracted
		}
		if rows, err = appendMessages(ctx, tx, rows, appends); err != nil {
			return err
		}
		return addOutbox(ctx, tx, rows)
	})
}
