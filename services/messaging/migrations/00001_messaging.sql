-- +goose Up
-- Threads: one row per conversation. PHI (subject, transfer note) is sealed under the thread's
-- DEK, whose wrapped form lives in wrapped_dek: deleting the row (retention) crypto-shreds it.
CREATE TABLE threads (
    id                   uuid PRIMARY KEY,
    pool_id              text        NOT NULL,
    patient_id           text        NOT NULL,
    category             smallint    NOT NULL,
    sensitivity          smallint    NOT NULL,
    status               smallint    NOT NULL,
    wrapped_dek          text,
    subject_sealed       bytea       NOT NULL,
    created_by_subject   text        NOT NULL,
    created_by_role      smallint    NOT NULL,
    created_on_behalf_of text        NOT NULL DEFAULT '',
    assignee_subject     text        NOT NULL DEFAULT '',
    -- Subjects of everyone who wrote in the thread (recipients of MessageCreated).
    participants         text[]      NOT NULL DEFAULT '{}',
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    last_message_at      timestamptz NOT NULL,
    last_sender_role     smallint    NOT NULL DEFAULT 0,
    closed_at            timestamptz,
    message_count        integer     NOT NULL DEFAULT 0,
    has_attachments      boolean     NOT NULL DEFAULT false,
    auto_replied         boolean     NOT NULL DEFAULT false,
    legal_hold           boolean     NOT NULL DEFAULT false,
    legal_hold_case      text        NOT NULL DEFAULT '',
    transfer_note_sealed bytea
);
CREATE INDEX threads_pool_activity ON threads (pool_id, last_message_at DESC, id DESC);
CREATE INDEX threads_patient_activity ON threads (patient_id, last_message_at DESC, id DESC);
CREATE INDEX threads_retention ON threads (category, last_message_at) WHERE NOT legal_hold;

-- Messages: body sealed under the thread DEK, AAD bound to (thread, message, "body"). A
-- retraction keeps the sealed original (for the record and auditors) and adds its marker.
CREATE TABLE messages (
    id                    uuid PRIMARY KEY,
    thread_id             uuid        NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    seq                   integer     NOT NULL,
    sender_subject        text        NOT NULL,
    sender_role           smallint    NOT NULL,
    on_behalf_of          text        NOT NULL DEFAULT '',
    body_sealed           bytea       NOT NULL,
    attachment_ids        text[]      NOT NULL DEFAULT '{}',
    created_at            timestamptz NOT NULL,
    auto_reply            boolean     NOT NULL DEFAULT false,
    corrects_message_id   uuid,
    -- Idempotency: the client's request id and a sealed fingerprint of the request (sealed,
    -- because a plain hash of a short body could be confirmed by guessing).
    client_request_id     uuid,
    request_fp_sealed     bytea,
    retracted_at          timestamptz,
    retracted_by_subject  text,
    retracted_by_role     smallint,
    retract_reason_code   text,
    retract_request_id    uuid,
    correction_message_id uuid,
    UNIQUE (thread_id, seq)
);
CREATE UNIQUE INDEX messages_request ON messages (sender_subject, client_request_id) WHERE client_request_id IS NOT NULL;
CREATE UNIQUE INDEX messages_retract_request ON messages (retracted_by_subject, retract_request_id) WHERE retract_request_id IS NOT NULL;

-- Per-viewer state: read mark (the highest seq read) and archive.
CREATE TABLE viewer_state (
    thread_id   uuid        NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    subject     text        NOT NULL,
    read_seq    integer     NOT NULL DEFAULT 0,
    archived_at timestamptz,
    PRIMARY KEY (thread_id, subject)
);

-- Break-the-glass accesses: the free-text reason is PHI-adjacent and kept sealed.
CREATE TABLE break_glass_access (
    id            uuid PRIMARY KEY,
    thread_id     uuid        NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    subject       text        NOT NULL,
    reason_sealed bytea       NOT NULL,
    created_at    timestamptz NOT NULL
);

-- Pool settings: admin-authored, not PHI.
CREATE TABLE pool_settings (
    pool_id              text PRIMARY KEY,
    auto_reply_enabled   boolean     NOT NULL DEFAULT false,
    auto_reply_text      text        NOT NULL DEFAULT '',
    turnaround_seconds   bigint,
    emergency_disclaimer text        NOT NULL DEFAULT '',
    updated_at           timestamptz NOT NULL,
    updated_by_subject   text        NOT NULL,
    version              bigint      NOT NULL DEFAULT 1
);

-- Legal holds over every thread of a patient, present and future.
CREATE TABLE patient_holds (
    patient_id     text PRIMARY KEY,
    case_reference text        NOT NULL,
    created_at     timestamptz NOT NULL
);

-- +goose Down
DROP TABLE patient_holds;
DROP TABLE pool_settings;
DROP TABLE break_glass_access;
DROP TABLE viewer_state;
DROP TABLE messages;
DROP TABLE threads;
