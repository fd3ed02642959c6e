-- +goose Up
-- The revision counts a tenant's updates in the database, not in one
-- process, so an update made from a stale copy is refused (UpdateTenant
-- then retries on the stored version).
ALTER TABLE tenants ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE tenants DROP COLUMN revision;
