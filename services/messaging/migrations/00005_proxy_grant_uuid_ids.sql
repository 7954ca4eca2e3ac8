-- +goose Up
-- RevokeProxyAccess names grants by UUID; grants imported before seeds required UUID ids get one.
-- The directory's entries carry grant ids for information only (admission goes by patient), so
-- the next change of each proxy's grants republishes them with the new ids.
UPDATE proxy_grants SET id = gen_random_uuid()::text
WHERE id !~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';

-- +goose Down
-- The old ids are not kept; nothing to undo.
SELECT 1;
