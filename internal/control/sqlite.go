package control

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/sqliteuri"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/tools"
)

// Open opens (creating and migrating) the SQLite control database at path,
// for one server. It fails if kek is not the key the database was created
// with.
func Open(ctx context.Context, path string, kek keyring.KEK, logger *slog.Logger) (*Plane, error) {
	dsn, err := sqliteuri.File(path, url.Values{
		"_pragma": {"busy_timeout(5000)", "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(ON)"},
		"_txlock": {"immediate"},
	})
	if err != nil {
		return nil, fmt.Errorf("open control database: %w", err)
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open control database: %w", err)
	}
	db.SetMaxOpenConns(1) // one writer; reads are served from memory
	if err := migrate(ctx, goose.DialectSQLite3, db, "sqlite"); err != nil {
		db.Close()
		return nil, err
	}
	p, err := open(ctx, sqliteBackend{db}, kek, logger)
	if err != nil {
		db.Close()
		return nil, err
	}
	return p, nil
}

// sqliteBackend keeps the control plane in one SQLite file. Only one
// process uses it, so it has no change versions.
type sqliteBackend struct{ db *sql.DB }

func (b sqliteBackend) close() error { return b.db.Close() }

func (b sqliteBackend) initCheck(ctx context.Context, check []byte) ([]byte, error) {
	if _, err := b.db.ExecContext(ctx, `INSERT INTO keyring (id, check_value) VALUES (1, ?) ON CONFLICT (id) DO NOTHING`, check); err != nil {
		return nil, fmt.Errorf("write key check: %w", err)
	}
	var stored []byte
	if err := b.db.QueryRowContext(ctx, `SELECT check_value FROM keyring WHERE id = 1`).Scan(&stored); err != nil {
		return nil, fmt.Errorf("read key check: %w", err)
	}
	return stored, nil
}

const sqliteTenantColumns = `id, name, status, storage_id, config, wrapped_key, policy, revision, created_at, updated_at`

func scanSQLiteTenant(rows interface{ Scan(...any) error }) (Tenant, error) {
	var t Tenant
	var cfg, created, updated string
	var revision int64
	if err := rows.Scan(&t.ID, &t.Name, &t.Status, &t.StorageID, &cfg, &t.WrappedKey, &t.Policy, &revision, &created, &updated); err != nil {
		return Tenant{}, err
	}
	if err := decodeConfig(cfg, &t); err != nil {
		return Tenant{}, fmt.Errorf("tenant %s: %w", t.ID, err)
	}
	t.revision = uint64(revision)
	t.CreatedAt, _ = time.Parse(time.RFC3339Nano, created)
	t.UpdatedAt, _ = time.Parse(time.RFC3339Nano, updated)
	return t, nil
}

func (b sqliteBackend) load(ctx context.Context) (snapshot, error) {
	return b.read(ctx, "", "", "")
}

func (b sqliteBackend) loadTenant(ctx context.Context, id tenant.ID) (snapshot, error) {
	return b.read(ctx, ` WHERE id = ?`, ` AND tenant_id = ?`, ` WHERE owner = ?`, id)
}

// read loads the rows the three filters select (each taking args).
func (b sqliteBackend) read(ctx context.Context, tenantsWhere, keysAnd, toolsWhere string, args ...any) (snapshot, error) {
	snap := newSnapshot()
	tx, err := b.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return snap, fmt.Errorf("load control plane: %w", err)
	}
	defer tx.Rollback()
	if err := tx.QueryRowContext(ctx, `SELECT check_value FROM keyring WHERE id = 1`).Scan(&snap.check); err != nil {
		return snap, fmt.Errorf("read key check: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT `+sqliteTenantColumns+` FROM tenants`+tenantsWhere, args...)
	if err != nil {
		return snap, fmt.Errorf("load tenants: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		t, err := scanSQLiteTenant(rows)
		if err != nil {
			return snap, fmt.Errorf("load tenants: %w", err)
		}
		snap.tenants[t.ID] = t
	}
	if err := rows.Err(); err != nil {
		return snap, fmt.Errorf("load tenants: %w", err)
	}
	krows, err := tx.QueryContext(ctx, `SELECT id, tenant_id, hash, expires_at FROM api_keys WHERE revoked_at IS NULL`+keysAnd, args...)
	if err != nil {
		return snap, fmt.Errorf("load api keys: %w", err)
	}
	defer krows.Close()
	for krows.Next() {
		var id tenant.KeyID
		var hash []byte
		var owner tenant.ID
		var expires sql.NullString
		if err := krows.Scan(&id, &owner, &hash, &expires); err != nil {
			return snap, fmt.Errorf("load api keys: %w", err)
		}
		e, err := newKeyEntry(id, owner, hash)
		if err != nil {
			return snap, err
		}
		if expires.Valid {
			if e.expires, err = time.Parse(time.RFC3339Nano, expires.String); err != nil {
				return snap, fmt.Errorf("load api key %s: %w", id, err)
			}
		}
		snap.keys[id] = e
	}
	if err := krows.Err(); err != nil {
		return snap, fmt.Errorf("load api keys: %w", err)
	}
	trows, err := tx.QueryContext(ctx, `SELECT name, definition FROM tools`+toolsWhere, args...)
	if err != nil {
		return snap, fmt.Errorf("load tools: %w", err)
	}
	defer trows.Close()
	for trows.Next() {
		var name, def string
		if err := trows.Scan(&name, &def); err != nil {
			return snap, fmt.Errorf("load tools: %w", err)
		}
		if snap.tools[name], err = decodeTool(name, def); err != nil {
			return snap, err
		}
	}
	return snap, trows.Err()
}

func newKeyEntry(id tenant.KeyID, owner tenant.ID, hash []byte) (keyEntry, error) {
	e := keyEntry{tenant: owner}
	if len(hash) != len(e.hash) {
		return keyEntry{}, fmt.Errorf("load api key %s: bad hash length", id)
	}
	copy(e.hash[:], hash)
	return e, nil
}

func sqliteTime(t time.Time) string { return t.Format(time.RFC3339Nano) }

// affected turns "no row changed" into errMissing.
func affected(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return errMissing
	}
	return nil
}

func (b sqliteBackend) createTenant(ctx context.Context, t Tenant, cfg string, check []byte) (int64, error) {
	ts := sqliteTime(t.CreatedAt)
	res, err := b.db.ExecContext(ctx,
		`INSERT INTO tenants (`+sqliteTenantColumns+`)
		 SELECT ?, ?, ?, ?, ?, ?, ?, 0, ?, ? WHERE EXISTS (SELECT 1 FROM keyring WHERE id = 1 AND check_value = ?)
		 ON CONFLICT (id) DO NOTHING`,
		t.ID, t.Name, t.Status, t.StorageID, cfg, t.WrappedKey, t.Policy, ts, ts, check)
	if err := affected(res, err); errors.Is(err, errMissing) {
		// Either the id is taken or the master key changed; tell which.
		var n int
		if err := b.db.QueryRowContext(ctx, `SELECT count(*) FROM tenants WHERE id = ?`, t.ID).Scan(&n); err != nil {
			return 0, err
		}
		if n > 0 {
			return 0, errExists
		}
		return 0, errKEKChanged
	} else if err != nil {
		return 0, err
	}
	return 0, nil
}

func (b sqliteBackend) updateTenant(ctx context.Context, t Tenant, cfg string, revision uint64) (int64, error) {
	return 0, affected(b.db.ExecContext(ctx,
		`UPDATE tenants SET name = ?, status = ?, config = ?, policy = ?, updated_at = ?, revision = revision + 1
		 WHERE id = ? AND storage_id = ? AND revision = ?`,
		t.Name, t.Status, cfg, t.Policy, sqliteTime(t.UpdatedAt), t.ID, t.StorageID, int64(revision)))
}

func (b sqliteBackend) deleteTenant(ctx context.Context, id tenant.ID, storageID string) (Tenant, int64, error) {
	row := b.db.QueryRowContext(ctx,
		`DELETE FROM tenants WHERE id = ? AND (? = '' OR storage_id = ?) RETURNING `+sqliteTenantColumns,
		id, storageID, storageID)
	t, err := scanSQLiteTenant(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Tenant{}, 0, errMissing
	}
	return t, 0, err
}

func (b sqliteBackend) addKey(ctx context.Context, id tenant.ID, keyID tenant.KeyID, hash auth.KeyHash, opts KeyOptions, at time.Time) (int64, error) {
	var expires sql.NullString
	if !opts.ExpiresAt.IsZero() {
		expires = sql.NullString{String: sqliteTime(opts.ExpiresAt.UTC()), Valid: true}
	}
	return 0, affected(b.db.ExecContext(ctx,
		`INSERT INTO api_keys (id, tenant_id, hash, created_at, name, expires_at) SELECT ?, id, ?, ?, ?, ? FROM tenants WHERE id = ?`,
		keyID, hash[:], sqliteTime(at), opts.Name, expires, id))
}

func (b sqliteBackend) touchKeys(ctx context.Context, used map[tenant.KeyID]time.Time) error {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, id := range sortedUse(used) {
		at := sqliteTime(used[id].UTC())
		// RFC 3339 in UTC with nanoseconds sorts as text only at equal
		// length, so the newer time is compared as a time.
		if _, err := tx.ExecContext(ctx, `UPDATE api_keys SET last_used_at = ?
			WHERE id = ? AND (last_used_at IS NULL OR julianday(last_used_at) < julianday(?))`, at, id, at); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func (b sqliteBackend) revokeKey(ctx context.Context, id tenant.ID, keyID tenant.KeyID, at time.Time) (int64, error) {
	return 0, affected(b.db.ExecContext(ctx,
		`UPDATE api_keys SET revoked_at = ? WHERE id = ? AND tenant_id = ? AND revoked_at IS NULL`,
		sqliteTime(at), keyID, id))
}

func (b sqliteBackend) keys(ctx context.Context, id tenant.ID) ([]Key, error) {
	rows, err := b.db.QueryContext(ctx,
		`SELECT id, created_at, revoked_at, name, expires_at, last_used_at FROM api_keys WHERE tenant_id = ? ORDER BY created_at, id`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	keys := []Key{}
	for rows.Next() {
		var (
			k                      Key
			created                string
			revoked, expires, used sql.NullString
		)
		if err := rows.Scan(&k.ID, &created, &revoked, &k.Name, &expires, &used); err != nil {
			return nil, err
		}
		if k.CreatedAt, err = time.Parse(time.RFC3339Nano, created); err != nil {
			return nil, fmt.Errorf("key %s: %w", k.ID, err)
		}
		for _, f := range []struct {
			s  sql.NullString
			to **time.Time
		}{{revoked, &k.RevokedAt}, {expires, &k.ExpiresAt}, {used, &k.LastUsedAt}} {
			if !f.s.Valid {
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, f.s.String)
			if err != nil {
				return nil, fmt.Errorf("key %s: %w", k.ID, err)
			}
			*f.to = &at
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

func (b sqliteBackend) createTool(ctx context.Context, t *tools.Tool, def string, at time.Time) (int64, error) {
	var owner sql.NullString
	if t.Owner != "" {
		owner = sql.NullString{String: string(t.Owner), Valid: true}
		var n int
		if err := b.db.QueryRowContext(ctx, `SELECT count(*) FROM tenants WHERE id = ?`, owner).Scan(&n); err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, errNoOwner
		}
	}
	err := affected(b.db.ExecContext(ctx, `INSERT INTO tools (name, owner, definition, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING`,
		t.Name, owner, def, sqliteTime(at)))
	if errors.Is(err, errMissing) {
		return 0, errExists
	}
	return 0, err
}

func (b sqliteBackend) deleteTool(ctx context.Context, name string) (int64, error) {
	return 0, affected(b.db.ExecContext(ctx, `DELETE FROM tools WHERE name = ?`, name))
}

func (b sqliteBackend) rotate(ctx context.Context, old, check []byte, rewrap func(tenant.ID, []byte) ([]byte, error)) (map[tenant.Incarnation][]byte, int64, error) {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	if err := affected(tx.ExecContext(ctx, `UPDATE keyring SET check_value = ? WHERE id = 1 AND check_value = ?`, check, old)); errors.Is(err, errMissing) {
		return nil, 0, errKEKChanged
	} else if err != nil {
		return nil, 0, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, storage_id, wrapped_key FROM tenants`)
	if err != nil {
		return nil, 0, err
	}
	type stored struct {
		id      tenant.ID
		storage string
		wrapped []byte
	}
	var all []stored
	for rows.Next() {
		var s stored
		if err := rows.Scan(&s.id, &s.storage, &s.wrapped); err != nil {
			rows.Close()
			return nil, 0, err
		}
		all = append(all, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	out := make(map[tenant.Incarnation][]byte, len(all))
	for _, s := range all {
		w, err := rewrap(s.id, s.wrapped)
		if err != nil {
			return nil, 0, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE tenants SET wrapped_key = ? WHERE id = ?`, w, s.id); err != nil {
			return nil, 0, err
		}
		out[tenant.NewIncarnation(s.id, s.storage)] = w
	}
	return out, 0, tx.Commit()
}

func (b sqliteBackend) addUsage(ctx context.Context, batch map[usageKey]Usage) error {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, k := range sortedUsage(batch) {
		u := batch[k]
		// Only into the incarnation the usage was counted for: a tenant
		// deleted (and perhaps created again) since gets none of it.
		if _, err := tx.ExecContext(ctx, `INSERT INTO usage (tenant_id, day, end_user, model, requests, input_tokens, cached_input_tokens, output_tokens, spend_micro_usd)
			SELECT id, ?, ?, ?, ?, ?, ?, ?, ? FROM tenants WHERE id = ? AND storage_id = ?
			ON CONFLICT (tenant_id, day, end_user, model) DO UPDATE SET `+usageSums(""),
			k.day, k.endUser, k.model, u.Requests, u.InputTokens, u.CachedInputTokens, u.OutputTokens, u.SpendMicroUSD,
			k.inc.Tenant(), k.inc.Storage()); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func (b sqliteBackend) usage(ctx context.Context, id tenant.ID, from, to string) ([]UsageRow, error) {
	rows, err := b.db.QueryContext(ctx, `SELECT day, tenant_id, end_user, model, requests, input_tokens, cached_input_tokens, output_tokens, spend_micro_usd
		FROM usage WHERE (? = '' OR tenant_id = ?) AND day >= ? AND day <= ? ORDER BY day, tenant_id, end_user, model`, id, id, from, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []UsageRow
	for rows.Next() {
		var r UsageRow
		if err := rows.Scan(&r.Day, &r.Tenant, &r.EndUser, &r.Model, &r.Requests, &r.InputTokens, &r.CachedInputTokens, &r.OutputTokens, &r.SpendMicroUSD); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (b sqliteBackend) spentOn(ctx context.Context, inc tenant.Incarnation, day string) (map[tenant.UserID]int64, error) {
	rows, err := b.db.QueryContext(ctx, `SELECT u.end_user, SUM(u.spend_micro_usd) FROM usage u JOIN tenants t ON t.id = u.tenant_id
		WHERE u.tenant_id = ? AND t.storage_id = ? AND u.day = ? GROUP BY u.end_user`, inc.Tenant(), inc.Storage(), day)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[tenant.UserID]int64{}
	for rows.Next() {
		var (
			user  tenant.UserID
			spent int64
		)
		if err := rows.Scan(&user, &spent); err != nil {
			return nil, err
		}
		out[user] = spent
	}
	return out, rows.Err()
}
