package control

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Records are the control plane's rows as stored, for moving them to
// another backend (bulkhead migrate): tenants with their configuration as
// stored and their data keys still wrapped by the master key, every API key
// hash (revoked ones with their revocation), every tool. Nothing in them is
// unwrapped or re-encoded.
type Records struct {
	Tenants []TenantRecord
	Keys    []APIKeyRecord
	Tools   []ToolRecord
}

// TenantRecord is a tenant's row; Config is the stored JSON, WrappedKey the
// data key wrapped by the master key.
type TenantRecord struct {
	ID, Name, Status, StorageID, Config, Policy string
	WrappedKey                                  []byte
	Revision                                    int64
	CreatedAt, UpdatedAt                        time.Time
}

// APIKeyRecord is an API key's row: its hash, never the key. RevokedAt is nil
// for a live key.
type APIKeyRecord struct {
	ID, TenantID string
	Hash         []byte
	CreatedAt    time.Time
	RevokedAt    *time.Time
	Name         string
	ExpiresAt    *time.Time
	LastUsedAt   *time.Time
}

// ToolRecord is a catalog tool's row; Owner is empty for the operator's.
type ToolRecord struct {
	Name, Owner, Definition string
	CreatedAt               time.Time
}

// recordExporter and recordImporter are the backends that can export or
// import Records: SQLite, the one a deployment moves from, and PostgreSQL,
// the one it moves to.
type recordExporter interface {
	exportRecords(ctx context.Context) (Records, error)
}

type recordImporter interface {
	importRecords(ctx context.Context, r Records) (int64, error)
}

// ExportRecords returns every stored record, read in one transaction.
func (p *Plane) ExportRecords(ctx context.Context) (Records, error) {
	be, ok := p.be.(recordExporter)
	if !ok {
		return Records{}, errors.New("export control records: this backend cannot export them")
	}
	r, err := be.exportRecords(ctx)
	if err != nil {
		return Records{}, fmt.Errorf("export control records: %w", err)
	}
	return r, nil
}

// ImportRecords stores r, as it is, in one transaction, and reloads the
// snapshot. It refuses a control plane that already has a tenant, an API key
// or a tool (an error wrapping kind.Conflict): an import is into an empty
// database only. The data keys in r must be wrapped by the master key this
// Plane was opened with.
func (p *Plane) ImportRecords(ctx context.Context, r Records) error {
	be, ok := p.be.(recordImporter)
	if !ok {
		return errors.New("import control records: this backend cannot import them")
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if _, err := be.importRecords(ctx, r); err != nil {
		return fmt.Errorf("import control records: %w", err)
	}
	if err := p.reloadAll(ctx); err != nil {
		return fmt.Errorf("import control records: reload: %w", err)
	}
	return nil
}

func (b sqliteBackend) exportRecords(ctx context.Context) (Records, error) {
	var r Records
	tx, err := b.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return r, err
	}
	defer tx.Rollback()
	var created, updated string
	var revoked sql.NullString
	var t TenantRecord
	if err := sqliteRows(ctx, tx, `SELECT id, name, status, storage_id, config, policy, wrapped_key, revision, created_at, updated_at FROM tenants ORDER BY id`,
		[]any{&t.ID, &t.Name, &t.Status, &t.StorageID, &t.Config, &t.Policy, &t.WrappedKey, &t.Revision, &created, &updated}, func() (err error) {
			if t.CreatedAt, err = time.Parse(time.RFC3339Nano, created); err == nil {
				t.UpdatedAt, err = time.Parse(time.RFC3339Nano, updated)
			}
			r.Tenants = append(r.Tenants, t)
			return err
		}); err != nil {
		return r, fmt.Errorf("tenants: %w", err)
	}
	var k APIKeyRecord
	var expires, used sql.NullString
	if err := sqliteRows(ctx, tx, `SELECT id, tenant_id, hash, created_at, revoked_at, name, expires_at, last_used_at FROM api_keys ORDER BY id`,
		[]any{&k.ID, &k.TenantID, &k.Hash, &created, &revoked, &k.Name, &expires, &used}, func() (err error) {
			k.RevokedAt, k.ExpiresAt, k.LastUsedAt = nil, nil, nil
			if k.CreatedAt, err = time.Parse(time.RFC3339Nano, created); err != nil {
				return err
			}
			for _, f := range []struct {
				s  sql.NullString
				to **time.Time
			}{{revoked, &k.RevokedAt}, {expires, &k.ExpiresAt}, {used, &k.LastUsedAt}} {
				if f.s.Valid {
					at, err := time.Parse(time.RFC3339Nano, f.s.String)
					if err != nil {
						return err
					}
					*f.to = &at
				}
			}
			r.Keys = append(r.Keys, k)
			return err
		}); err != nil {
		return r, fmt.Errorf("api keys: %w", err)
	}
	var tool ToolRecord
	var owner sql.NullString
	if err := sqliteRows(ctx, tx, `SELECT name, owner, definition, created_at FROM tools ORDER BY name`,
		[]any{&tool.Name, &owner, &tool.Definition, &created}, func() (err error) {
			tool.Owner = owner.String
			tool.CreatedAt, err = time.Parse(time.RFC3339Nano, created)
			r.Tools = append(r.Tools, tool)
			return err
		}); err != nil {
		return r, fmt.Errorf("tools: %w", err)
	}
	return r, nil
}

// sqliteRows runs query and, for each row, scans it into dest and calls add.
func sqliteRows(ctx context.Context, tx *sql.Tx, query string, dest []any, add func() error) error {
	rows, err := tx.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		if err := add(); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (b *pgBackend) importRecords(ctx context.Context, r Records) (int64, error) {
	return b.write(ctx, allTarget, func(tx pgx.Tx, _ *string) error {
		var used bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM control_tenants) OR EXISTS (SELECT 1 FROM control_api_keys) OR EXISTS (SELECT 1 FROM control_tools)`).Scan(&used); err != nil {
			return err
		}
		if used {
			return fmt.Errorf("%w: the target database already holds tenants, keys or tools", kind.Conflict)
		}
		for _, t := range r.Tenants {
			if _, err := tx.Exec(ctx, `INSERT INTO control_tenants (`+pgTenantColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
				t.ID, t.Name, t.Status, t.StorageID, t.Config, t.WrappedKey, t.Policy, t.Revision, t.CreatedAt, t.UpdatedAt); err != nil {
				return fmt.Errorf("tenant %s: %w", t.ID, err)
			}
		}
		for _, k := range r.Keys {
			if _, err := tx.Exec(ctx, `INSERT INTO control_api_keys (tenant_id, id, hash, created_at, revoked_at, name, expires_at, last_used_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
				k.TenantID, k.ID, k.Hash, k.CreatedAt, k.RevokedAt, k.Name, k.ExpiresAt, k.LastUsedAt); err != nil {
				return fmt.Errorf("tenant %s: api key %s: %w", k.TenantID, k.ID, err)
			}
		}
		for _, t := range r.Tools {
			owner := &t.Owner
			if t.Owner == "" {
				owner = nil
			}
			if _, err := tx.Exec(ctx, `INSERT INTO control_tools (name, owner, definition, created_at) VALUES ($1, $2, $3, $4)`,
				t.Name, owner, t.Definition, t.CreatedAt); err != nil {
				return fmt.Errorf("tool %s: %w", t.Name, err)
			}
		}
		return nil
	})
}

// Incarnation returns the incarnation the record is of.
func (t TenantRecord) Incarnation() tenant.Incarnation {
	return tenant.NewIncarnation(tenant.ID(t.ID), t.StorageID)
}
