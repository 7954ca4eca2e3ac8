-- +goose Up
-- A pool's active hours ({"time_zone": "...", "windows": [{"day": 1, "open": 480, "close": 1020}]};
-- '{}' means always staffed) and the order pools are listed in.
ALTER TABLE care_pools ADD COLUMN active_hours jsonb NOT NULL DEFAULT '{}';
CREATE INDEX care_pools_listing ON care_pools (name, id);
-- A removed member's open threads are counted (RemovePoolMember) by pool and assignee.
CREATE INDEX threads_pool_assignee ON threads (pool_id, assignee_subject) WHERE assignee_subject <> '';

-- +goose Down
DROP INDEX threads_pool_assignee;
DROP INDEX care_pools_listing;
ALTER TABLE care_pools DROP COLUMN active_hours;
