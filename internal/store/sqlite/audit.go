package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auditchain"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/store"
)

// The audit log's statements. They are not in the statements list: the
// full-size insert is prepared once per append, the others per call.
const (
	selectAuditHead = `SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1`
	selectAudit     = `SELECT seq, time, type, data, prev, hash FROM audit WHERE seq > ? ORDER BY seq LIMIT ?`
)

// auditRowsPerInsert is how many records one INSERT statement appends.
const auditRowsPerInsert = 64

// insertAuditRows returns an INSERT of n audit records.
func insertAuditRows(n int) string {
	return "INSERT INTO audit (seq, time, type, data, prev, hash) VALUES " +
		strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?), ", n), ", ")
}

// AppendAudit appends recs to scope's tenant's audit log, in order, in one
// transaction. The store assigns each record's Seq, Prev and Hash with
// auditchain.Link, whatever recs say, so a chain is the same however its records
// were batched; a zero Time becomes the current time. A record auditchain.Link
// refuses fails the call and nothing is written.
//
// Audit records are stored in clear, not sealed with the tenant's key: they
// hold shapes and decisions, never values, and must verify offline. The
// tenant's key is still looked up, as for every call, so nothing is written
// for a tenant without one. The log is append-only: there is no method to
// change or remove a record, and triggers refuse it (see 00003_audit.sql).
func (db *DB) AppendAudit(ctx context.Context, scope auth.Scope, recs []store.AuditRecord) error {
	if !scope.Valid() {
		return fmt.Errorf("append audit: %w", store.ErrNoScope)
	}
	// Checked and canonicalised before queueing for the write lock.
	checked, err := auditchain.Check(recs, time.Now().UTC())
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	h, _, err := db.acquire(ctx, scope)
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	defer db.pool.release(h)
	if err := appendAudit(ctx, h.v, checked); err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	return nil
}

func appendAudit(ctx context.Context, tdb *tenantDB, recs []store.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	return tdb.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var head auditchain.Head
		err := tx.QueryRowContext(ctx, selectAuditHead).Scan(&head.Seq, &head.Hash)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		// Rows go in auditRowsPerInsert at a time: one statement per row
		// costs more in the driver than SQLite spends inserting it.
		var full *sql.Stmt
		args := make([]any, 0, 6*auditRowsPerInsert)
		for rest := recs; len(rest) > 0; {
			n := min(len(rest), auditRowsPerInsert)
			args = args[:0]
			for _, r := range rest[:n] {
				if r, err = auditchain.Link(head, r); err != nil {
					return err
				}
				args = append(args, r.Seq, r.Time.Format(timeFormat), r.Type, string(r.Data), r.Prev, r.Hash)
				head = auditchain.Head{Seq: r.Seq, Hash: r.Hash}
			}
			rest = rest[n:]
			if n == auditRowsPerInsert {
				if full == nil {
					if full, err = tx.PrepareContext(ctx, insertAuditRows(n)); err != nil {
						return err
					}
					defer full.Close()
				}
				_, err = full.ExecContext(ctx, args...)
			} else {
				_, err = tx.ExecContext(ctx, insertAuditRows(n), args...)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// AuditRecords returns up to limit records of scope's tenant's audit log
// after seq afterSeq, in seq order; limit <= 0 means all. Reading from
// afterSeq 0 starts at the first record.
func (db *DB) AuditRecords(ctx context.Context, scope auth.Scope, afterSeq int64, limit int) ([]store.AuditRecord, error) {
	if !scope.Valid() {
		return nil, fmt.Errorf("read audit: %w", store.ErrNoScope)
	}
	h, _, err := db.acquire(ctx, scope)
	if err != nil {
		return nil, fmt.Errorf("read audit: %w", err)
	}
	defer db.pool.release(h)
	recs, err := auditRecords(ctx, h.v, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("read audit: %w", err)
	}
	return recs, nil
}

func auditRecords(ctx context.Context, tdb *tenantDB, afterSeq int64, limit int) ([]store.AuditRecord, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	rows, err := tdb.QueryContext(ctx, selectAudit, afterSeq, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	recs := []store.AuditRecord{}
	for rows.Next() {
		var (
			r          store.AuditRecord
			when, data string
		)
		if err := rows.Scan(&r.Seq, &when, &r.Type, &data, &r.Prev, &r.Hash); err != nil {
			return nil, err
		}
		if r.Time, err = time.Parse(timeFormat, when); err != nil {
			return nil, fmt.Errorf("audit record %d: %w", r.Seq, err)
		}
		r.Data = []byte(data)
		recs = append(recs, r)
	}
	return recs, rows.Err()
}
