-- +goose Up
-- Who placed each legal hold and when, for ListLegalHolds. Holds placed before this migration
-- keep '' and NULL: their origin was not recorded (the audit log has it).
ALTER TABLE threads
    ADD COLUMN legal_hold_by text NOT NULL DEFAULT '',
    ADD COLUMN legal_hold_at timestamptz;
ALTER TABLE patient_holds ADD COLUMN created_by_subject text NOT NULL DEFAULT '';
-- ListLegalHolds pages through the held threads by id; few threads are held.
CREATE INDEX threads_legal_hold ON threads (id) WHERE legal_hold;

-- +goose Down
DROP INDEX threads_legal_hold;
ALTER TABLE patient_holds DROP COLUMN created_by_subject;
ALTER TABLE threads DROP COLUMN legal_hold_at, DROP COLUMN legal_hold_by;
