-- +goose Up
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
    content    BLOB NOT NULL, -- opaque to the store: encrypted by the layer above
    meta       BLOB,
    created_at TEXT NOT NULL,
    FOREIGN KEY (user_id, session_id) REFERENCES sessions (user_id, session_id) ON DELETE CASCADE
) STRICT;

CREATE INDEX messages_session ON messages (user_id, session_id, id);

-- +goose Down
DROP TABLE messages;
DROP TABLE sessions;
