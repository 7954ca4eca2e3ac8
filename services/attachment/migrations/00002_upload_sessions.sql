-- +goose Up
-- upload_sessions holds the resumable uploads browsers send in chunks. attachment_id is the id
-- of the attachment row (state 'uploading') the session becomes; there is no foreign key, so
-- that a session outlives its row's removal until the clean-up has deleted its staged chunks,
-- whose object names start with stage_prefix (random, no PHI).
CREATE TABLE upload_sessions (
    attachment_id    uuid PRIMARY KEY,
    uploader_subject text NOT NULL,
    state            text NOT NULL CHECK (state IN ('open', 'finishing', 'closed')),
    next_offset      bigint NOT NULL DEFAULT 0 CHECK (next_offset >= 0),
    stage_prefix     text NOT NULL UNIQUE,
    create_time      timestamptz NOT NULL DEFAULT now(),
    update_time      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX upload_sessions_stale ON upload_sessions (update_time);

-- upload_chunks are a session's received chunks: where each lies in the file, its SHA-256 (a
-- duplicate is recognised by it) and the staged object holding it sealed.
CREATE TABLE upload_chunks (
    attachment_id uuid NOT NULL REFERENCES upload_sessions (attachment_id) ON DELETE CASCADE,
    byte_offset   bigint NOT NULL CHECK (byte_offset >= 0),
    length        bigint NOT NULL CHECK (length > 0),
    sha256        bytea NOT NULL,
    object_name   text NOT NULL,
    PRIMARY KEY (attachment_id, byte_offset)
);

-- +goose Down
DROP TABLE upload_chunks;
DROP TABLE upload_sessions;
