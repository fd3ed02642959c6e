-- +goose Up
-- The control plane's tables: operator data, not per-tenant rows behind RLS
-- (the control plane must see every tenant to authenticate any of them).
-- Named control_* so they never meet the tenant data plane's tables in the
-- same database. The application role's privileges are granted by the
-- server at start (control.OpenPostgres), as they name that role.

-- One row counting committed changes; every change bumps it in its own
-- transaction and announces it with NOTIFY, so replicas can tell whether
-- they missed one.
CREATE TABLE control_state (
    id      integer PRIMARY KEY CHECK (id = 1),
    version bigint NOT NULL
);
INSERT INTO control_state (id, version) VALUES (1, 0);

CREATE TABLE control_tenants (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    status      text NOT NULL,
    storage_id  text NOT NULL UNIQUE,
    config      text NOT NULL, -- JSON: profiles, limits, hosts, canaries
    wrapped_key bytea NOT NULL, -- the tenant's data key, wrapped by the KEK
    policy      text NOT NULL DEFAULT '',
    revision    bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- tenant_id leads the key, as in every table keyed by tenant; key ids are
-- unique on their own too, as authentication finds a key by id alone.
CREATE TABLE control_api_keys (
    tenant_id  text NOT NULL REFERENCES control_tenants(id) ON DELETE CASCADE,
    id         text NOT NULL UNIQUE,
    hash       bytea NOT NULL,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz,
    PRIMARY KEY (tenant_id, id)
);

-- One row: a value wrapped by the KEK, so a wrong master key is caught at start.
CREATE TABLE control_keyring (
    id          integer PRIMARY KEY CHECK (id = 1),
    check_value bytea NOT NULL
);

-- Tool names are unique across the catalog (a tenant's tool never shadows
-- another's), so the name alone is the key.
CREATE TABLE control_tools (
    name       text PRIMARY KEY,
    owner      text REFERENCES control_tenants(id) ON DELETE CASCADE, -- NULL: the operator's tool
    definition text NOT NULL, -- JSON
    created_at timestamptz NOT NULL
);
CREATE INDEX control_tools_owner ON control_tools (owner);

-- +goose Down
DROP TABLE control_tools;
DROP TABLE control_keyring;
DROP TABLE control_api_keys;
DROP TABLE control_tenants;
DROP TABLE control_state;
