-- +goose Up
-- Message content and meta and secret values are AES-256-GCM ciphertexts
-- under the tenant's data key, sealed by the Go code; every other column is
-- in clear.
CREATE TABLE sessions (
    user_id    TEXT NOT NULL,
    session_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (user_id, session_id)
) STRICT;

CREATE TABLE messages (
    id         INTEGER PRIMARY KEY,
    user_id    TEXT NOT NULL,
    session_id TEXT NOT NULL,
    role       TEXT NOT NULL,
    content    BLOB NOT NULL, -- sealed
    meta       BLOB,          -- sealed; NULL when the message has none
    created_at TEXT NOT NULL,
    FOREIGN KEY (user_id, session_id) REFERENCES sessions (user_id, session_id) ON DELETE CASCADE
) STRICT;

CREATE INDEX messages_session ON messages (user_id, session_id, id);

-- One tenant's credentials (per tenant, not per end user).
CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    value      BLOB NOT NULL, -- sealed
    updated_at TEXT NOT NULL
) STRICT;

-- +goose Down
DROP TABLE secrets;
DROP TABLE messages;
DROP TABLE sessions;
