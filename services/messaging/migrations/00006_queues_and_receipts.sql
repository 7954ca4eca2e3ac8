-- +goose Up
-- Queues. A pool's threads by status in activity order (the open queue, the closed list); the
-- unassigned queue; a person's own queue. ListThreads names a single pool with "=" rather than
-- "= ANY" so that these ordered scans stop after one page instead of sorting the whole pool.
CREATE INDEX threads_pool_status_activity ON threads (pool_id, status, last_message_at DESC, id DESC);
CREATE INDEX threads_pool_unassigned ON threads (pool_id, last_message_at DESC, id DESC) WHERE assignee_subject = '';
CREATE INDEX threads_assignee_activity ON threads (assignee_subject, last_message_at DESC, id DESC) WHERE assignee_subject <> '';
-- One person's read marks and archive flags, for the counts and the unread badge, which join
-- them to a whole pool: without it every count reads every person's viewer state.
CREATE INDEX viewer_state_subject ON viewer_state (subject, thread_id) INCLUDE (read_seq, archived_at);

-- Read receipts: one row each time a person's read mark in a thread rises, with the role they
-- read in (a proxy's read is the proxy's, on behalf of the patient). A message's receipt for a
-- person is their first row at or past its seq. Deleted with the thread (retention).
CREATE TABLE read_receipts (
    thread_id    uuid        NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    subject      text        NOT NULL,
    role         smallint    NOT NULL,
    on_behalf_of text        NOT NULL DEFAULT '',
    seq          integer     NOT NULL,
    read_at      timestamptz NOT NULL,
    PRIMARY KEY (thread_id, seq, subject)
);

-- Writing in a thread now counts as reading it up to one's own message (so unread is
-- message_count - read_seq, with no scan of the messages). Earlier writes get the same mark.
-- No receipts are made up for reads before this version: their times were not kept.
INSERT INTO viewer_state (thread_id, subject, read_seq)
    SELECT thread_id, sender_subject, max(seq) FROM messages
    WHERE sender_subject <> '' AND NOT auto_reply
    GROUP BY thread_id, sender_subject
ON CONFLICT (thread_id, subject) DO UPDATE SET read_seq = greatest(viewer_state.read_seq, excluded.read_seq);

-- +goose Down
DROP TABLE read_receipts;
DROP INDEX viewer_state_subject;
DROP INDEX threads_assignee_activity;
DROP INDEX threads_pool_unassigned;
DROP INDEX threads_pool_status_activity;
