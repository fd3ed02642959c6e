-- +goose Up
-- Tombstones of deleted tenants' data. A tenant's control record is deleted
-- first (the delete takes effect at once), then its rows in tenant_data; a
-- crash between the two would leave those rows behind, unreadable (their
-- data key is gone) but never collected. The tombstone is written in the
-- delete's own transaction and removed once the rows are gone, so any
-- replica's next start finishes the job (control.Plane.DeletedIncarnations).
CREATE TABLE control_deleted_stores (
    storage_id text PRIMARY KEY,
    tenant_id  text NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE control_deleted_stores;
