-- +goose Up
-- People as the directory's records: who provisioned or first met them, their identity
-- provider's ids, and their display name, sealed under a DEK of their own (wrapped_dek) and
-- bound to their subject, so that deleting a row shreds the name. created_at of earlier rows is
-- their last update: their creation time was not kept.
ALTER TABLE people
    ADD COLUMN external_id         text,
    ADD COLUMN user_name           text,
    ADD COLUMN display_name_sealed bytea,
    ADD COLUMN wrapped_dek         text,
    ADD COLUMN patient_id          text     NOT NULL DEFAULT '',
    ADD COLUMN source              smallint NOT NULL DEFAULT 3,
    ADD COLUMN created_at          timestamptz,
    -- A clinician's or staff member's name, in clear beside the sealed one: workforce names
    -- are not PHI, and the access report shows patients who of the care team read their
    -- messages (PersonEntry.staff_display_name). Always '' for anyone else.
    ADD COLUMN staff_display_name  text     NOT NULL DEFAULT '';
UPDATE people SET created_at = updated_at;
ALTER TABLE people ALTER COLUMN created_at SET NOT NULL;
CREATE UNIQUE INDEX people_external_id ON people (external_id) WHERE external_id IS NOT NULL;
-- SCIM compares userName case-insensitively.
CREATE UNIQUE INDEX people_user_name ON people (lower(user_name)) WHERE user_name IS NOT NULL;

-- +goose Down
DROP INDEX people_user_name;
DROP INDEX people_external_id;
ALTER TABLE people DROP COLUMN staff_display_name, DROP COLUMN created_at, DROP COLUMN source, DROP COLUMN patient_id,
    DROP COLUMN wrapped_dek, DROP COLUMN display_name_sealed, DROP COLUMN user_name, DROP COLUMN external_id;
