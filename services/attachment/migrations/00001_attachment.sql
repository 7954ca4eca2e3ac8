-- +goose Up
-- attachments holds each file's metadata; the bytes are ciphertext in object storage under
-- object_name (random, no PHI). wrapped_dek is the Transit-wrapped per-object key (NULL once
-- crypto-shredded); file_name_sealed the file name sealed under that key.
CREATE TABLE attachments (
    id                  uuid PRIMARY KEY,
    uploader_subject    text NOT NULL,
    client_request_id   text,
    aad_thread_id       text NOT NULL DEFAULT '',
    thread_id           text NOT NULL DEFAULT '',
    message_id          text NOT NULL DEFAULT '',
    patient_id          text NOT NULL DEFAULT '',
    pool_id             text NOT NULL DEFAULT '',
    state               text NOT NULL CHECK (state IN ('uploading', 'pending', 'clean', 'infected', 'failed', 'deleted')),
    object_name         text NOT NULL UNIQUE,
    wrapped_dek         text,
    file_name_sealed    bytea,
    declared_media_type text NOT NULL,
    media_type          text NOT NULL DEFAULT '',
    size_bytes          bigint NOT NULL CHECK (size_bytes >= 0),
    object_size         bigint NOT NULL DEFAULT 0,
    sha256              bytea,
    signature_name      text NOT NULL DEFAULT '',
    scan_attempts       integer NOT NULL DEFAULT 0,
    scan_time           timestamptz,
    create_time         timestamptz NOT NULL DEFAULT now(),
    bind_time           timestamptz,
    delete_time         timestamptz,
    CONSTRAINT attachments_client_request UNIQUE (uploader_subject, client_request_id)
);

CREATE INDEX attachments_thread ON attachments (thread_id) WHERE thread_id <> '';
CREATE INDEX attachments_message ON attachments (message_id) WHERE message_id <> '';
CREATE INDEX attachments_uploader ON attachments (uploader_subject) WHERE state IN ('uploading', 'pending', 'clean');
CREATE INDEX attachments_pending ON attachments (create_time) WHERE state = 'pending';
CREATE INDEX attachments_drafts ON attachments (create_time) WHERE message_id = '' AND state <> 'deleted';

-- +goose Down
DROP TABLE attachments;
