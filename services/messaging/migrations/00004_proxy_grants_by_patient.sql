-- +goose Up
-- Proxy grants a patient gives themself (GrantProxyAccess): who gave each, and the patient's
-- list of them.
ALTER TABLE proxy_grants ADD COLUMN granted_by text NOT NULL DEFAULT '';
CREATE INDEX proxy_grants_patient ON proxy_grants (patient_id, created_at DESC);

-- +goose Down
DROP INDEX proxy_grants_patient;
ALTER TABLE proxy_grants DROP COLUMN granted_by;
