// Package migrate moves a deployment's state from one backend to another
// (bulkhead migrate: from a SQLite data directory to PostgreSQL) without
// decrypting it. The control records go as stored, each tenant's data key
// still wrapped by the master key; each tenant's rows go sealed as stored,
// with the blind tokens of its full-text indexes (package seal seals and
// blinds the same way in every backend). Then every tenant is checked on the
// far side: its row counts, its audit chain (intact, and ending at the
// source's head), and that its data opens there with its key.
package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/bulkhead-ai/bulkhead/internal/auditchain"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Source is what a migration reads: *control.Plane and *sqlite.DB.
type Source struct {
	Control interface {
		ExportRecords(ctx context.Context) (control.Records, error)
	}
	Stores interface {
		Rows(ctx context.Context, inc tenant.Incarnation) (store.Raw, error)
	}
}

// Target is what a migration writes and then checks: *control.Plane and
// *postgres.DB, opened on the same database with the source's master key.
type Target struct {
	Control interface {
		ImportRecords(ctx context.Context, r control.Records) error
	}
	Stores interface {
		Import(ctx context.Context, inc tenant.Incarnation, raw store.Raw) error
		RowCounts(ctx context.Context, inc tenant.Incarnation) (map[string]int, error)
		AuditRecords(ctx context.Context, scope auth.Scope, afterSeq int64, limit int) ([]store.AuditRecord, error)
		Export(ctx context.Context, scope auth.Scope) (store.Export, error)
	}
}

// ErrTargetInUse means the target already holds tenants: a migration only
// fills an empty database.
var ErrTargetInUse = errors.New("the target database already holds tenants: migrate only into an empty one (after a failed run, drop and re-create the target database, then run again)")

// Run copies every tenant from src to dst and checks each copy, writing a
// line per tenant to progress. ctx must be an operator's
// (auth.Authenticator.OperatorContext): the checks read each tenant's copy
// as the operator would. A failure names the tenant (and the table, if the
// rows of one failed) and leaves the target partly written: drop it and run
// again.
func Run(ctx context.Context, src Source, dst Target, progress io.Writer) error {
	recs, err := src.Control.ExportRecords(ctx)
	if err != nil {
		return err
	}
	if err := dst.Control.ImportRecords(ctx, recs); err != nil {
		if errors.Is(err, kind.Conflict) {
			return fmt.Errorf("%w: %w", ErrTargetInUse, err)
		}
		return err
	}
	fmt.Fprintf(progress, "control plane: %d tenants, %d API keys, %d tools copied\n", len(recs.Tenants), len(recs.Keys), len(recs.Tools))
	for _, t := range recs.Tenants {
		if err := copyTenant(ctx, src, dst, t.Incarnation(), progress); err != nil {
			return fmt.Errorf("tenant %s: %w", t.ID, err)
		}
	}
	return nil
}

func copyTenant(ctx context.Context, src Source, dst Target, inc tenant.Incarnation, progress io.Writer) error {
	raw, err := src.Stores.Rows(ctx, inc)
	if err != nil {
		return err
	}
	if err := dst.Stores.Import(ctx, inc, raw); err != nil {
		return err
	}
	want := raw.Counts()
	if err := check(ctx, dst, inc, want, auditchain.HeadOf(raw.Audit)); err != nil {
		return fmt.Errorf("check the copy: %w", err)
	}
	fmt.Fprintf(progress, "tenant %s: copied and checked (%s; audit head %d)\n", inc.Tenant(), summary(want), auditchain.HeadOf(raw.Audit).Seq)
	return nil
}

// check compares inc's copy with what was read from the source: the row
// count of every table, the audit chain and its head; and opens every
// sealed row of the copy with the tenant's key (an export).
func check(ctx context.Context, dst Target, inc tenant.Incarnation, want map[string]int, head auditchain.Head) error {
	got, err := dst.Stores.RowCounts(ctx, inc)
	if err != nil {
		return err
	}
	for _, table := range slices.Sorted(maps.Keys(want)) {
		if got[table] != want[table] {
			return fmt.Errorf("table %s: %d rows copied, %d in the source", table, got[table], want[table])
		}
	}
	scope, err := auth.AdminScope(ctx, inc)
	if err != nil {
		return err
	}
	recs, err := dst.Stores.AuditRecords(ctx, scope, 0, 0)
	if err != nil {
		return fmt.Errorf("table audit: %w", err)
	}
	if err := auditchain.VerifyHead(recs, head); err != nil {
		return fmt.Errorf("table audit: %w", err)
	}
	if got := auditchain.HeadOf(recs); got != head {
		return fmt.Errorf("table audit: the copy ends at seq %d, the source at seq %d", got.Seq, head.Seq)
	}
	if _, err := dst.Stores.Export(ctx, scope); err != nil {
		return fmt.Errorf("open the copy with the tenant's key: %w", err)
	}
	return nil
}

func summary(counts map[string]int) string {
	var s string
	for i, table := range slices.Sorted(maps.Keys(counts)) {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%d %s", counts[table], table)
	}
	return s
}
