-- +goose Up
-- The directory: care pools and their members, people, registered client applications and
-- stored proxy grants. Messaging owns these rows; every change also puts the affected entry
-- into the directory bucket through the outbox (platform/directory), with a version from
-- directory_versions so that watchers keep the newest whatever order they arrive in.
CREATE SEQUENCE directory_versions;

CREATE TABLE care_pools (
    id                   text PRIMARY KEY,
    name                 text        NOT NULL,
    organisation         text        NOT NULL DEFAULT '',
    -- Whether every patient may write to the pool; when false, only care_pool_patients.
    open_to_all_patients boolean     NOT NULL DEFAULT true,
    active               boolean     NOT NULL DEFAULT true,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    version              bigint      NOT NULL DEFAULT 1
);

CREATE TABLE care_pool_patients (
    pool_id    text NOT NULL REFERENCES care_pools (id) ON DELETE CASCADE,
    patient_id text NOT NULL,
    PRIMARY KEY (pool_id, patient_id)
);

CREATE TABLE care_pool_members (
    pool_id  text        NOT NULL REFERENCES care_pools (id) ON DELETE CASCADE,
    subject  text        NOT NULL,
    role     smallint    NOT NULL,
    added_at timestamptz NOT NULL,
    PRIMARY KEY (pool_id, subject)
);
CREATE INDEX care_pool_members_subject ON care_pool_members (subject);

CREATE TABLE people (
    subject    text PRIMARY KEY,
    status     smallint    NOT NULL,
    roles      smallint[]  NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL
);

CREATE TABLE client_apps (
    client_id      text PRIMARY KEY,
    kind           smallint    NOT NULL,
    display_name   text        NOT NULL,
    allowed_scopes text[]      NOT NULL,
    pool_ids       text[]      NOT NULL DEFAULT '{}',
    active         boolean     NOT NULL DEFAULT true,
    updated_at     timestamptz NOT NULL
);

CREATE TABLE proxy_grants (
    id            text PRIMARY KEY,
    proxy_subject text        NOT NULL,
    patient_id    text        NOT NULL,
    scopes        text[]      NOT NULL,
    expires_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL,
    revoked_at    timestamptz
);
CREATE INDEX proxy_grants_proxy ON proxy_grants (proxy_subject) WHERE revoked_at IS NULL;

-- +goose Down
DROP TABLE proxy_grants;
DROP TABLE client_apps;
DROP TABLE people;
DROP TABLE care_pool_members;
DROP TABLE care_pool_patients;
DROP TABLE care_pools;
DROP SEQUENCE directory_versions;
