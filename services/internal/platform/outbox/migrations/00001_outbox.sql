-- The transactional outbox, created in the service's schema (search_path points there).
-- See the outbox package documentation for the guarantees these columns back.

-- +goose Up
CREATE TABLE outbox (
    -- seq orders events as they were written; the relay publishes in seq order.
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- id is the event id and the JetStream Nats-Msg-Id (JetStream drops a second publish of it).
    id           text        NOT NULL UNIQUE CHECK (length(id) BETWEEN 1 AND 128),
    subject      text        NOT NULL CHECK (length(subject) BETWEEN 1 AND 255),
    payload      bytea       NOT NULL,
    headers      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    attempts     integer     NOT NULL DEFAULT 0,
    -- last_error holds the relay's last publish error: error text from NATS, never payloads.
    last_error   text
);

-- The relay's work queue: only unsent rows, in order. Stays tiny while the relay keeps up.
CREATE INDEX outbox_unsent ON outbox (seq) WHERE published_at IS NULL;
-- The purge's range scan over published rows.
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Wake the relay at commit: NOTIFY on channel securemsg_outbox with the schema as payload (one
-- channel for all schemas keeps channel names short; relays ignore other schemas' payloads).
-- Notifications are delivered only if the transaction commits, never for a rollback, and
-- Postgres folds identical ones within a transaction into one.
-- +goose StatementBegin
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('securemsg_outbox', TG_TABLE_SCHEMA);
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- +goose Down
DROP TRIGGER IF EXISTS outbox_notify ON outbox;
DROP FUNCTION IF EXISTS outbox_notify();
DROP TABLE IF EXISTS outbox;
