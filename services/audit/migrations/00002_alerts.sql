-- The anomaly alerts the detector raised, written in the commit of the append that raised them
-- (beside their AnomalyAlert event and ALERT_SENT record), so an auditor can list and
-- acknowledge them (ListAlerts, AcknowledgeAlert). An alert names a rule, an actor and log
-- sequences; never a patient or content. The note is an auditor's free text, shown to auditors
-- only.

-- +goose Up
CREATE TABLE alerts (
    id               text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),
    rule_id          text NOT NULL CHECK (length(rule_id) BETWEEN 1 AND 64),
    actor            bytea NOT NULL,  -- the AuditActor, protobuf-encoded
    severity         smallint NOT NULL,
    window_start     timestamptz NOT NULL,
    window_end       timestamptz NOT NULL,
    match_count      bigint NOT NULL,
    threshold        bigint NOT NULL,
    first_sequence   bigint NOT NULL,
    last_sequence    bigint NOT NULL,
    raised_at        timestamptz NOT NULL,
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    note             text CHECK (length(note) <= 500),
    CONSTRAINT alerts_acknowledged CHECK ((acknowledged_at IS NULL) = (acknowledged_by IS NULL))
);
-- ListAlerts pages newest first, all or open only.
CREATE INDEX alerts_raised ON alerts (raised_at DESC, id DESC);
CREATE INDEX alerts_open ON alerts (raised_at DESC, id DESC) WHERE acknowledged_at IS NULL;

-- +goose Down
DROP TABLE alerts;
