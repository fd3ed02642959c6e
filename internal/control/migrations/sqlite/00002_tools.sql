-- +goose Up
CREATE TABLE tools (
    name       TEXT PRIMARY KEY,
    owner      TEXT REFERENCES tenants(id) ON DELETE CASCADE, -- NULL: the operator's tool
    definition TEXT NOT NULL, -- JSON
    created_at TEXT NOT NULL
);

ALTER TABLE tenants ADD COLUMN policy TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE tenants DROP COLUMN policy;
DROP TABLE tools;
