-- +goose Up
-- The tenant's audit log, a hash chain (see package audit). It is in clear,
-- unlike the tenant's content: events hold shapes and decisions, never
-- values, and the log must verify without the tenant's key. It is
-- append-only: the triggers refuse to change or remove a record, or to insert
-- one that does not extend the chain (this also stops INSERT OR REPLACE).
-- Someone with the file can still drop them and edit; Verify finds that.
CREATE TABLE audit (
    seq  INTEGER PRIMARY KEY CHECK (seq >= 1),
    time TEXT NOT NULL, -- fixed-width UTC, to the nanosecond
    type TEXT NOT NULL,
    data TEXT NOT NULL, -- canonical JSON
    prev TEXT NOT NULL, -- hex; '' for seq 1
    hash TEXT NOT NULL  -- hex SHA-256, see audit.Hash
) STRICT;

-- +goose StatementBegin
CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only');
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only');
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER audit_extends_chain BEFORE INSERT ON audit
WHEN NEW.seq IS NOT coalesce((SELECT max(seq) FROM audit), 0) + 1
  OR NEW.prev IS NOT coalesce((SELECT hash FROM audit ORDER BY seq DESC LIMIT 1), '')
BEGIN
    SELECT RAISE(ABORT, 'audit record does not extend the chain');
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER audit_extends_chain;
DROP TRIGGER audit_append_only_delete;
DROP TRIGGER audit_append_only_update;
DROP TABLE audit;
