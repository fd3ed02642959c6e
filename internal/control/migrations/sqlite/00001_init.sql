-- +goose Up
CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    status     TEXT NOT NULL,
    storage_id TEXT NOT NULL UNIQUE,
    config     TEXT NOT NULL, -- JSON: profiles and limits
    wrapped_key BLOB NOT NULL, -- the tenant's data key, wrapped by the KEK
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    hash       BLOB NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX api_keys_tenant ON api_keys(tenant_id);

-- One row: a value wrapped by the KEK, so a wrong master key is caught at start.
CREATE TABLE keyring (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    check_value BLOB NOT NULL
);

-- +goose Down
DROP TABLE keyring;
DROP TABLE api_keys;
DROP TABLE tenants;
