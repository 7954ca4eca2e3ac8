-- +goose Up

-- One data-encryption key per person seals their contact points (PHI). Only the wrapped form
-- is stored; `securemsgctl keys rewrap --store pg:notification.person_keys.subject.wrapped_dek`.
CREATE TABLE person_keys (
    subject     text PRIMARY KEY,
    wrapped_dek text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Alert preferences. *_address columns hold sealed contact points (crypto record envelopes,
-- AAD bound to subject and channel), never plaintext.
CREATE TABLE preferences (
    subject            text PRIMARY KEY,
    role               text NOT NULL DEFAULT '',
    email_enabled      boolean NOT NULL DEFAULT false,
    email_address      bytea,
    email_verified     boolean NOT NULL DEFAULT false,
    sms_enabled        boolean NOT NULL DEFAULT false,
    sms_address        bytea,
    sms_verified       boolean NOT NULL DEFAULT false,
    push_enabled       boolean NOT NULL DEFAULT false,
    push_address       bytea,
    push_verified      boolean NOT NULL DEFAULT false,
    webhook_enabled    boolean NOT NULL DEFAULT false,
    webhook_address    bytea,
    webhook_verified   boolean NOT NULL DEFAULT false,
    quiet_enabled      boolean NOT NULL DEFAULT false,
    quiet_start        smallint NOT NULL DEFAULT 0,
    quiet_end          smallint NOT NULL DEFAULT 0,
    time_zone          text NOT NULL DEFAULT 'UTC',
    digest_window_ms   bigint NOT NULL DEFAULT 0,
    reminders_enabled  boolean NOT NULL DEFAULT false,
    reminder_after_ms  bigint NOT NULL DEFAULT 172800000,
    locale             text NOT NULL DEFAULT '',
    pool_subscriptions text[] NOT NULL DEFAULT '{}',
    version            bigint NOT NULL DEFAULT 1,
    update_time        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX preferences_pool_subscriptions ON preferences USING gin (pool_subscriptions);

-- Proxy grants that include the "notifications" scope, as last seen in the proxy's token when
-- they read or saved their preferences: which patients' messages may alert them, until when.
CREATE TABLE notify_grants (
    proxy_subject text NOT NULL,
    patient_id    text NOT NULL,
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (proxy_subject, patient_id)
);
CREATE INDEX notify_grants_patient ON notify_grants (patient_id, expires_at);

-- Administrator overrides of the shipped templates.
CREATE TABLE templates (
    kind             smallint NOT NULL,
    channel          smallint NOT NULL,
    locale           text NOT NULL,
    subject_template text NOT NULL DEFAULT '',
    body_template    text NOT NULL,
    version          bigint NOT NULL,
    update_time      timestamptz NOT NULL DEFAULT now(),
    updated_by       text NOT NULL DEFAULT '',
    PRIMARY KEY (kind, channel, locale)
);

-- One alert to one person on one channel. idempotency_key = hash(source event, recipient,
-- channel) makes the effect of an event happen once however often it is delivered.
-- status: 1 pending, 2 sent, 3 retrying, 4 failed (dead letter), 5 suppressed, 100 sending.
CREATE TABLE deliveries (
    id                uuid PRIMARY KEY,
    idempotency_key   text NOT NULL CONSTRAINT deliveries_idempotency_key UNIQUE,
    event_id          text NOT NULL,
    recipient_subject text NOT NULL,
    channel           smallint NOT NULL,
    kind              smallint NOT NULL,
    message_id        text NOT NULL,
    thread_id         text NOT NULL,
    pool_id           text NOT NULL DEFAULT '',
    patient_id        text NOT NULL DEFAULT '',
    sensitivity       smallint NOT NULL DEFAULT 0,
    message_time      timestamptz NOT NULL,
    item_count        integer NOT NULL DEFAULT 1,
    status            smallint NOT NULL,
    suppression_code  text NOT NULL DEFAULT '',
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz,
    claimed_until     timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status IN (1, 3);
CREATE INDEX deliveries_claimed ON deliveries (claimed_until) WHERE status = 100;
CREATE INDEX deliveries_open_digest ON deliveries (recipient_subject, channel, thread_id) WHERE status = 1 AND kind = 2;
CREATE INDEX deliveries_recipient_thread ON deliveries (recipient_subject, thread_id) WHERE status IN (1, 3);
CREATE INDEX deliveries_recipient_created ON deliveries (recipient_subject, created_at DESC, id DESC);

-- The delivery log: one row per attempt.
CREATE TABLE delivery_attempts (
    delivery_id       uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt           integer NOT NULL,
    status            smallint NOT NULL,
    start_time        timestamptz NOT NULL,
    finish_time       timestamptz NOT NULL,
    error_code        text NOT NULL DEFAULT '',
    next_attempt_time timestamptz,
    PRIMARY KEY (delivery_id, attempt)
);

-- Reminders for messages left unread. status: 1 pending, 2 cancelled (read), 3 fired.
CREATE TABLE reminders (
    id                uuid PRIMARY KEY,
    recipient_subject text NOT NULL,
    thread_id         text NOT NULL,
    message_id        text NOT NULL,
    pool_id           text NOT NULL DEFAULT '',
    patient_id        text NOT NULL DEFAULT '',
    sensitivity       smallint NOT NULL DEFAULT 0,
    message_time      timestamptz NOT NULL,
    due_at            timestamptz NOT NULL,
    status            smallint NOT NULL DEFAULT 1,
    CONSTRAINT reminders_recipient_message UNIQUE (recipient_subject, message_id)
);
CREATE INDEX reminders_due ON reminders (due_at) WHERE status = 1;
CREATE INDEX reminders_thread ON reminders (recipient_subject, thread_id) WHERE status = 1;

-- +goose Down
DROP TABLE reminders;
DROP TABLE delivery_attempts;
DROP TABLE deliveries;
DROP TABLE templates;
DROP TABLE notify_grants;
DROP TABLE preferences;
DROP TABLE person_keys;
