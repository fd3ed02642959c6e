package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bulkhead-ai/bulkhead/internal/auditchain"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/store"
)

// AppendAudit appends recs to scope's tenant's audit log, in order, in one
// transaction, assigning each record's Seq, Prev and Hash with
// auditchain.Link whatever recs say; a zero Time becomes the current time. A
// record auditchain.Link refuses fails the call and nothing is written.
//
// Appends to one tenant's log are serialised in the database by a
// transaction-level advisory lock on the tenant, taken before the head is
// read, so any number of replicas appending at once still extend one chain;
// and the primary key (tenant_id, seq) would refuse a fork anyway. Records
// are stored in clear, as in the SQLite backend; the application role may not
// update or delete them.
func (db *DB) AppendAudit(ctx context.Context, scope auth.Scope, recs []store.AuditRecord) error {
	if !scope.Valid() {
		return fmt.Errorf("append audit: %w", store.ErrNoScope)
	}
	checked, err := auditchain.Check(recs, time.Now().UTC())
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	err = db.run(ctx, scope, writeTx, func(ctx context.Context, tx tenantTx) error {
		if len(checked) == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('bulkhead.audit:' || $1, 0))`, tx.id); err != nil {
			return err
		}
		var head auditchain.Head
		err := tx.QueryRow(ctx, `SELECT seq, hash FROM tenant_data.audit WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1`, tx.id).
			Scan(&head.Seq, &head.Hash)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		linked := make([]store.AuditRecord, len(checked))
		for i, r := range checked {
			if linked[i], err = auditchain.Link(head, r); err != nil {
				return err
			}
			head = auditchain.Head{Seq: linked[i].Seq, Hash: linked[i].Hash}
		}
		return insertAudit(ctx, tx, linked)
	})
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	return nil
}

// insertAudit writes recs, linked already, as they are.
func insertAudit(ctx context.Context, tx tenantTx, recs []store.AuditRecord) error {
	n := len(recs)
	seqs, times := make([]int64, n), make([]int64, n)
	types, data, prevs, hashes := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, r := range recs {
		seqs[i], times[i], types[i], data[i], prevs[i], hashes[i] = r.Seq, r.Time.UnixNano(), r.Type, string(r.Data), r.Prev, r.Hash
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO tenant_data.audit (tenant_id, seq, time_ns, type, data, prev, hash)
		SELECT $1, a.seq, a.time_ns, a.type, a.data, a.prev, a.hash
		FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[])
			AS a (seq, time_ns, type, data, prev, hash)`,
		tx.id, seqs, times, types, data, prevs, hashes)
	return err
}

// AuditRecords returns up to limit records of scope's tenant's audit log
// after seq afterSeq, in seq order; limit <= 0 means all.
func (db *DB) AuditRecords(ctx context.Context, scope auth.Scope, afterSeq int64, limit int) ([]store.AuditRecord, error) {
	if !scope.Valid() {
		return nil, fmt.Errorf("read audit: %w", store.ErrNoScope)
	}
	var recs []store.AuditRecord
	err := db.run(ctx, scope, readTx, func(ctx context.Context, tx tenantTx) error {
		rows, err := tx.Query(ctx, `
			SELECT seq, time_ns, type, data, prev, hash FROM tenant_data.audit
			WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, tx.id, afterSeq, sqlLimit(limit))
		if err != nil {
			return err
		}
		recs, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.AuditRecord, error) {
			var (
				r    store.AuditRecord
				when int64
				data string
			)
			if err := row.Scan(&r.Seq, &when, &r.Type, &data, &r.Prev, &r.Hash); err != nil {
				return store.AuditRecord{}, err
			}
			r.Time, r.Data = unixTime(when), []byte(data)
			return r, nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read audit: %w", err)
	}
	return nonNil(recs), nil
}
