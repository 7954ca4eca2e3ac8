-- The audit log (schema `audit`). Append-only: rows of entries, tree_nodes and checkpoints are
-- never updated or deleted by the service; the triggers below refuse it and privileges are
-- revoked from PUBLIC. A superuser (or the table owner with session_replication_role=replica)
-- can still bypass triggers and privileges — which is exactly why every record is covered by a
-- hash chain and a Merkle tree whose roots are signed in checkpoints: tampering with the rows
-- is detected by VerifyRange and by `securemsgctl audit verify`, even if it cannot be prevented.
-- In production the service runs as a role that is neither owner nor superuser.

-- +goose Up
-- log_head is the single writer's state. Every append locks this one row (FOR UPDATE) in its
-- transaction, so sequence numbers are assigned one batch at a time, without gaps, and the
-- chain and tree state move with them atomically.
CREATE TABLE log_head (
    singleton      boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    -- size is the last sequence appended (0 for an empty log).
    size           bigint      NOT NULL DEFAULT 0,
    -- chain_hash is the chain hash of the entry at size (32 zero bytes when empty).
    chain_hash     bytea       NOT NULL,
    -- tree_state is the Merkle tree's compact range over [0, size): at most 64 hashes, so a
    -- restart resumes without rehashing the log.
    tree_state     bytea[]     NOT NULL DEFAULT '{}',
    -- first_sequence is the first entry still stored (retention drops whole months).
    first_sequence bigint      NOT NULL DEFAULT 1,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
INSERT INTO log_head (chain_hash) VALUES (decode(repeat('00', 32), 'hex'));

-- entries is the log, partitioned by the month the service appended the record, so retention
-- drops whole partitions (and the dropped sequences are always a prefix of the log). The
-- projection columns (actor, patient, action, ...) are copies of fields of record_bytes for
-- filtering; VerifyRange checks they still match the bytes.
CREATE TABLE entries (
    sequence        bigint      NOT NULL,
    appended_at     timestamptz NOT NULL,
    event_id        text        NOT NULL,
    occurred_at     timestamptz NOT NULL,
    producer        smallint    NOT NULL,
    actor_subject   text        NOT NULL,
    actor_role      smallint    NOT NULL,
    actor_org       text        NOT NULL,
    on_behalf_of    text        NOT NULL,
    action          smallint    NOT NULL,
    outcome         smallint    NOT NULL,
    severity        smallint    NOT NULL,
    record_type     smallint    NOT NULL,
    record_id       text        NOT NULL,
    patient_id      text        NOT NULL,
    pool_id         text        NOT NULL,
    sensitivity     smallint    NOT NULL,
    purpose         smallint    NOT NULL,
    -- record_bytes are the AuditRecord exactly as received from NATS; the hashes cover these.
    record_bytes    bytea       NOT NULL,
    leaf_hash       bytea       NOT NULL,
    prev_chain_hash bytea       NOT NULL,
    chain_hash      bytea       NOT NULL,
    PRIMARY KEY (sequence, appended_at)
) PARTITION BY RANGE (appended_at);
CREATE INDEX entries_actor ON entries (actor_subject, sequence);
CREATE INDEX entries_patient ON entries (patient_id, sequence);
CREATE INDEX entries_record ON entries (record_id, sequence);

-- event_ids makes ingest idempotent: a partitioned table cannot hold a unique constraint on
-- event_id alone, so the ids live here (pruned together with the partitions they point into).
CREATE TABLE event_ids (
    event_id text   PRIMARY KEY,
    sequence bigint NOT NULL
);
CREATE INDEX event_ids_sequence ON event_ids (sequence);

-- tree_nodes keeps the Merkle tree's perfect subtree hashes at levels 8, 16, 24, ... (one row
-- per 256 leaves), so proofs read at most 256 hashes per proof node instead of the whole log,
-- and survive retention of the leaves under them.
CREATE TABLE tree_nodes (
    level smallint NOT NULL,
    idx   bigint   NOT NULL,
    hash  bytea    NOT NULL,
    PRIMARY KEY (level, idx)
);

-- checkpoints are the signed statements of (size, root).
CREATE TABLE checkpoints (
    tree_size   bigint      PRIMARY KEY,
    root_hash   bytea       NOT NULL,
    signature   bytea       NOT NULL,
    key_id      text        NOT NULL,
    signed_body bytea       NOT NULL,
    created_at  timestamptz NOT NULL
);

-- reconcile_marks holds, per producing service, the highest outbox seq up to which every audit
-- record the producer wrote is known to be in the log (see auditlog.Reconciler).
CREATE TABLE reconcile_marks (
    producer   text        PRIMARY KEY,
    outbox_seq bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- +goose StatementBegin
CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Retention may delete event ids of dropped partitions; it says so for its transaction.
    IF TG_TABLE_NAME = 'event_ids' AND TG_OP = 'DELETE'
       AND current_setting('securemsg.audit_retention', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
-- +goose StatementEnd

CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER event_ids_append_only BEFORE UPDATE OR DELETE ON event_ids
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER tree_nodes_append_only BEFORE UPDATE OR DELETE ON tree_nodes
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER tree_nodes_no_truncate BEFORE TRUNCATE ON tree_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

REVOKE UPDATE, DELETE, TRUNCATE ON entries, tree_nodes, checkpoints FROM PUBLIC;

-- +goose Down
DROP TABLE IF EXISTS reconcile_marks;
DROP TABLE IF EXISTS checkpoints;
DROP TABLE IF EXISTS tree_nodes;
DROP TABLE IF EXISTS event_ids;
DROP TABLE IF EXISTS entries;
DROP TABLE IF EXISTS log_head;
DROP FUNCTION IF EXISTS audit_refuse_change();
