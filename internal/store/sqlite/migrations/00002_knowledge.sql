-- +goose Up
-- The knowledge base (documents and their chunks) and end users' memories.
-- Text, metadata, content hashes and embeddings are AES-256-GCM ciphertexts
-- under the tenant's data key, sealed by the Go code. The full-text indexes
-- are blind: each holds, for every term, a keyed hash of it (HMAC with a key
-- derived from the data key), never the term, and keeps no copy of what it
-- indexes (content=''), so BM25 works while the file reveals no text.

CREATE TABLE documents (
    id         TEXT PRIMARY KEY,
    hash_mac   BLOB NOT NULL UNIQUE, -- keyed hash of the text's SHA-256: finds a re-ingested text without revealing it
    hash       BLOB NOT NULL,        -- sealed hex SHA-256 of the text
    text       BLOB NOT NULL,        -- sealed
    metadata   BLOB,                 -- sealed; NULL when the document has none
    chunks     INTEGER NOT NULL,
    created_at TEXT NOT NULL
) STRICT;

CREATE INDEX documents_created ON documents (created_at);

CREATE TABLE chunks (
    id          INTEGER PRIMARY KEY,
    document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    ordinal     INTEGER NOT NULL,
    text        BLOB NOT NULL, -- sealed
    embedding   BLOB,          -- sealed little-endian float32s; NULL when none
    UNIQUE (document_id, ordinal)
) STRICT;

-- rowid = chunks.id; terms = the chunk's blind tokens.
CREATE VIRTUAL TABLE chunks_fts USING fts5(
    terms, content = '', contentless_delete = 1, tokenize = 'ascii'
);

-- One row: a number that grows on every change of the knowledge base, so
-- callers can cache what they derive from it (the vector index).
CREATE TABLE kb_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
) STRICT;

INSERT INTO kb_version (id, version) VALUES (1, 0);

CREATE TABLE memories (
    id         INTEGER PRIMARY KEY,
    user_id    TEXT NOT NULL,
    text       BLOB NOT NULL, -- sealed
    embedding  BLOB,          -- sealed little-endian float32s; NULL when none
    created_at TEXT NOT NULL
) STRICT;

CREATE INDEX memories_user ON memories (user_id, id);

-- rowid = memories.id; terms = the memory's blind tokens, keyed by its user
-- too; user_id is kept (in clear, as in memories) to filter on.
CREATE VIRTUAL TABLE memories_fts USING fts5(
    terms, user_id UNINDEXED,
    content = '', contentless_delete = 1, contentless_unindexed = 1, tokenize = 'ascii'
);

-- +goose Down
DROP TABLE memories_fts;
DROP TABLE memories;
DROP TABLE kb_version;
DROP TABLE chunks_fts;
DROP TABLE chunks;
DROP TABLE documents;
