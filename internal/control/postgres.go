package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/tools"
)

// PostgresOptions say where the control plane lives in PostgreSQL.
type PostgresOptions struct {
	// URL is how the server connects: as the application role, which owns
	// nothing and is granted only the DML the control plane needs.
	URL string
	// OwnerURL connects as the role that owns the tables and runs the
	// migrations; empty means URL (one role for both, not recommended).
	OwnerURL string
	// PollInterval is how often the safety net compares the database's
	// change counter with the snapshot's, in case a notification was
	// missed; 0 means one second.
	PollInterval time.Duration
	// MaxStaleness is how long the snapshot is trusted without word from
	// the database (a notification or a poll). Past it, no API key
	// authenticates on this replica until it reconnects and catches up: it
	// cannot know what the others revoked. 0 means 5 s (at least three
	// polls).
	MaxStaleness time.Duration
}

const (
	// pgVersionTable is goose's table for the control plane's migrations;
	// the tenant data plane keeps its own in the same database.
	pgVersionTable = "bulkhead_control_version"
	// pgLockID is the advisory lock that serialises replicas migrating at
	// once ("bhctl" in ASCII), apart from the data plane's.
	pgLockID = 0x6268_6374_6c
	// pgChannel is the NOTIFY channel announcing committed changes.
	pgChannel = "bulkhead_control"
)

// ListenerApplicationName is the application_name of each replica's
// connection listening for the others' changes (one per Plane), so
// operators can find it in pg_stat_activity.
const ListenerApplicationName = "bulkhead-control-listener"

// OpenPostgres opens the control plane in the PostgreSQL database of
// opts.URL, migrating it first as opts.OwnerURL. Any number of servers may
// open the same database: each follows the others' changes (LISTEN/NOTIFY,
// with a periodic version check as the safety net). It fails if kek is not
// the key the database was created with.
func OpenPostgres(ctx context.Context, opts PostgresOptions, kek keyring.KEK, logger *slog.Logger) (*Plane, error) {
	poolCfg, err := pgxpool.ParseConfig(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("parse control database URL: %w", err)
	}
	owner := opts.OwnerURL
	if owner == "" {
		owner = opts.URL
	}
	if err := migratePostgres(ctx, owner, poolCfg.ConnConfig.User); err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, fmt.Errorf("open control database: %w", err)
	}
	b := &pgBackend{pool: pool}
	p, err := open(ctx, b, kek, logger)
	if err != nil {
		pool.Close()
		return nil, err
	}
	poll := opts.PollInterval
	if poll <= 0 {
		poll = time.Second
	}
	p.maxStale = opts.MaxStaleness
	if p.maxStale <= 0 {
		p.maxStale = max(5*time.Second, 3*poll)
	}
	p.confirmFresh()
	wctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		listen := poolCfg.ConnConfig.Copy()
		listen.RuntimeParams["application_name"] = ListenerApplicationName
		p.watch(wctx, b, listen, poll)
	}()
	p.stopWatch = func() { cancel(); <-done }
	return p, nil
}

// migratePostgres runs the migrations as the owner role and grants the
// application role what the control plane needs, no more: no DDL, no
// TRUNCATE, no deleting the key check or the change counter.
func migratePostgres(ctx context.Context, ownerURL, appRole string) error {
	cfg, err := pgx.ParseConfig(ownerURL)
	if err != nil {
		return fmt.Errorf("parse control database owner URL: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(pgLockID))
	if err != nil {
		return fmt.Errorf("prepare control migrations: %w", err)
	}
	if err := migrate(ctx, goose.DialectPostgres, db, "postgres", goose.WithTableName(pgVersionTable), goose.WithSessionLocker(locker)); err != nil {
		return err
	}
	if appRole == cfg.User {
		return nil
	}
	role := pgx.Identifier{appRole}.Sanitize()
	for _, grant := range []string{
		`GRANT SELECT, INSERT, UPDATE, DELETE ON control_tenants, control_api_keys, control_tools, control_deleted_stores, control_usage TO ` + role,
		`GRANT SELECT, INSERT, UPDATE ON control_keyring TO ` + role,
		`GRANT SELECT, UPDATE ON control_state TO ` + role,
	} {
		if _, err := db.ExecContext(ctx, grant); err != nil {
			return fmt.Errorf("grant the control tables to %s: %w", appRole, err)
		}
	}
	return nil
}

// pgBackend keeps the control plane in PostgreSQL, shared by replicas.
// Every change bumps control_state.version and announces itself on
// pgChannel in its own transaction, so NOTIFY is sent exactly when the
// change commits, in commit order (the version row lock orders them).
type pgBackend struct{ pool *pgxpool.Pool }

func (b *pgBackend) close() error {
	b.pool.Close()
	return nil
}

// Notification payloads: "<version> t <tenant id>" (the tenant, its keys
// and tools), "<version> tools" (the operator's tools), "<version> all".
func tenantTarget(id tenant.ID) string { return "t " + string(id) }

const (
	operatorToolsTarget = "tools"
	allTarget           = "all"
)

// write runs f and records the change in one transaction. target says
// what changed (see tenantTarget); f may set it.
func (b *pgBackend) write(ctx context.Context, target string, f func(tx pgx.Tx, target *string) error) (int64, error) {
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := f(tx, &target); err != nil {
		return 0, err
	}
	var v int64
	if err := tx.QueryRow(ctx, `UPDATE control_state SET version = version + 1 WHERE id = 1 RETURNING version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("count the change: %w", err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, pgChannel, strconv.FormatInt(v, 10)+" "+target); err != nil {
		return 0, fmt.Errorf("announce the change: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, err
	}
	return v, nil
}

// pgAffected turns "no row changed" into errMissing.
func pgAffected(tag pgconn.CommandTag, err error) error {
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return errMissing
	}
	return nil
}

func isPgCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}

const pgForeignKeyViolation = "23503"

func (b *pgBackend) initCheck(ctx context.Context, check []byte) ([]byte, error) {
	if _, err := b.pool.Exec(ctx, `INSERT INTO control_keyring (id, check_value) VALUES (1, $1) ON CONFLICT (id) DO NOTHING`, check); err != nil {
		return nil, fmt.Errorf("write key check: %w", err)
	}
	var stored []byte
	if err := b.pool.QueryRow(ctx, `SELECT check_value FROM control_keyring WHERE id = 1`).Scan(&stored); err != nil {
		return nil, fmt.Errorf("read key check: %w", err)
	}
	return stored, nil
}

const pgTenantColumns = `id, name, status, storage_id, config, wrapped_key, policy, revision, created_at, updated_at`

func scanPgTenant(row pgx.Row) (Tenant, error) {
	var t Tenant
	var cfg string
	var revision int64
	if err := row.Scan(&t.ID, &t.Name, &t.Status, &t.StorageID, &cfg, &t.WrappedKey, &t.Policy, &revision, &t.CreatedAt, &t.UpdatedAt); err != nil {
		return Tenant{}, err
	}
	if err := decodeConfig(cfg, &t); err != nil {
		return Tenant{}, fmt.Errorf("tenant %s: %w", t.ID, err)
	}
	t.revision = uint64(revision)
	t.CreatedAt, t.UpdatedAt = t.CreatedAt.UTC(), t.UpdatedAt.UTC()
	return t, nil
}

func (b *pgBackend) load(ctx context.Context) (snapshot, error) {
	return b.read(ctx, "", "", "")
}

func (b *pgBackend) loadTenant(ctx context.Context, id tenant.ID) (snapshot, error) {
	return b.read(ctx, ` WHERE id = $1`, ` AND tenant_id = $1`, ` WHERE owner = $1`, id)
}

// loadOperatorTools reads the operator's tools (no tenants, no keys).
func (b *pgBackend) loadOperatorTools(ctx context.Context) (snapshot, error) {
	return b.read(ctx, ` WHERE false`, ` AND false`, ` WHERE owner IS NULL`)
}

// read loads, from one consistent view, the rows the three filters select
// (each taking args) and the change version they reflect.
func (b *pgBackend) read(ctx context.Context, tenantsWhere, keysAnd, toolsWhere string, args ...any) (snapshot, error) {
	snap := newSnapshot()
	tx, err := b.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return snap, fmt.Errorf("load control plane: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := tx.QueryRow(ctx, `SELECT s.version, k.check_value FROM control_state s, control_keyring k WHERE s.id = 1 AND k.id = 1`).Scan(&snap.version, &snap.check); err != nil {
		return snap, fmt.Errorf("read change version and key check: %w", err)
	}
	rows, _ := tx.Query(ctx, `SELECT `+pgTenantColumns+` FROM control_tenants`+tenantsWhere, args...)
	ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Tenant, error) { return scanPgTenant(r) })
	if err != nil {
		return snap, fmt.Errorf("load tenants: %w", err)
	}
	for _, t := range ts {
		snap.tenants[t.ID] = t
	}
	rows, _ = tx.Query(ctx, `SELECT id, tenant_id, hash, expires_at FROM control_api_keys WHERE revoked_at IS NULL`+keysAnd, args...)
	var id tenant.KeyID
	var owner tenant.ID
	var hash []byte
	var expires *time.Time
	if _, err := pgx.ForEachRow(rows, []any{&id, &owner, &hash, &expires}, func() error {
		e, err := newKeyEntry(id, owner, hash)
		if expires != nil {
			e.expires = *expires
		}
		snap.keys[id] = e
		return err
	}); err != nil {
		return snap, fmt.Errorf("load api keys: %w", err)
	}
	rows, _ = tx.Query(ctx, `SELECT name, definition FROM control_tools`+toolsWhere, args...)
	var name, def string
	if _, err := pgx.ForEachRow(rows, []any{&name, &def}, func() error {
		t, err := decodeTool(name, def)
		snap.tools[name] = t
		return err
	}); err != nil {
		return snap, fmt.Errorf("load tools: %w", err)
	}
	return snap, nil
}

func (b *pgBackend) createTenant(ctx context.Context, t Tenant, cfg string, check []byte) (int64, error) {
	return b.write(ctx, tenantTarget(t.ID), func(tx pgx.Tx, _ *string) error {
		// Shares the row rotation locks: a tenant is never created with a
		// data key wrapped by a KEK another replica just retired.
		var stored []byte
		if err := tx.QueryRow(ctx, `SELECT check_value FROM control_keyring WHERE id = 1 FOR SHARE`).Scan(&stored); err != nil {
			return fmt.Errorf("read key check: %w", err)
		}
		if string(stored) != string(check) {
			return errKEKChanged
		}
		err := pgAffected(tx.Exec(ctx, `INSERT INTO control_tenants (`+pgTenantColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8) ON CONFLICT (id) DO NOTHING`,
			t.ID, t.Name, t.Status, t.StorageID, cfg, t.WrappedKey, t.Policy, t.CreatedAt))
		if errors.Is(err, errMissing) {
			return errExists
		}
		return err
	})
}

func (b *pgBackend) updateTenant(ctx context.Context, t Tenant, cfg string, revision uint64) (int64, error) {
	return b.write(ctx, tenantTarget(t.ID), func(tx pgx.Tx, _ *string) error {
		return pgAffected(tx.Exec(ctx, `UPDATE control_tenants
			SET name = $1, status = $2, config = $3, policy = $4, updated_at = $5, revision = revision + 1
			WHERE id = $6 AND storage_id = $7 AND revision = $8`,
			t.Name, t.Status, cfg, t.Policy, t.UpdatedAt, t.ID, t.StorageID, int64(revision)))
	})
}

func (b *pgBackend) deleteTenant(ctx context.Context, id tenant.ID, storageID string) (Tenant, int64, error) {
	var t Tenant
	v, err := b.write(ctx, tenantTarget(id), func(tx pgx.Tx, _ *string) error {
		var err error
		t, err = scanPgTenant(tx.QueryRow(ctx,
			`DELETE FROM control_tenants WHERE id = $1 AND ($2 = '' OR storage_id = $2) RETURNING `+pgTenantColumns, id, storageID))
		if errors.Is(err, pgx.ErrNoRows) {
			return errMissing
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO control_deleted_stores (storage_id, tenant_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, t.StorageID, id)
		return err
	})
	return t, v, err
}

func (b *pgBackend) deletedStores(ctx context.Context) ([]tenant.Incarnation, error) {
	rows, err := b.pool.Query(ctx, `SELECT tenant_id, storage_id FROM control_deleted_stores ORDER BY deleted_at`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (tenant.Incarnation, error) {
		var id, storage string
		err := row.Scan(&id, &storage)
		return tenant.NewIncarnation(tenant.ID(id), storage), err
	})
}

func (b *pgBackend) forgetDeleted(ctx context.Context, storageID string) error {
	_, err := b.pool.Exec(ctx, `DELETE FROM control_deleted_stores WHERE storage_id = $1`, storageID)
	return err
}

func (b *pgBackend) addKey(ctx context.Context, id tenant.ID, keyID tenant.KeyID, hash auth.KeyHash, opts KeyOptions, at time.Time) (int64, error) {
	var expires *time.Time
	if !opts.ExpiresAt.IsZero() {
		expires = &opts.ExpiresAt
	}
	return b.write(ctx, tenantTarget(id), func(tx pgx.Tx, _ *string) error {
		err := pgAffected(tx.Exec(ctx, `INSERT INTO control_api_keys (tenant_id, id, hash, created_at, name, expires_at)
			SELECT id, $2, $3, $4, $5, $6 FROM control_tenants WHERE id = $1`, id, keyID, hash[:], at, opts.Name, expires))
		if isPgCode(err, pgForeignKeyViolation) {
			return errMissing // deleted meanwhile by another replica
		}
		return err
	})
}

func (b *pgBackend) revokeKey(ctx context.Context, id tenant.ID, keyID tenant.KeyID, at time.Time) (int64, error) {
	return b.write(ctx, tenantTarget(id), func(tx pgx.Tx, _ *string) error {
		return pgAffected(tx.Exec(ctx, `UPDATE control_api_keys SET revoked_at = $3
			WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL`, id, keyID, at))
	})
}

// touchKeys is no change of the control plane's: it writes no change
// version, so no replica reloads for it.
func (b *pgBackend) touchKeys(ctx context.Context, used map[tenant.KeyID]time.Time) error {
	batch := &pgx.Batch{}
	for _, id := range sortedUse(used) {
		batch.Queue(`UPDATE control_api_keys SET last_used_at = $2
			WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)`, id, used[id])
	}
	return b.pool.SendBatch(ctx, batch).Close()
}

func (b *pgBackend) keys(ctx context.Context, id tenant.ID) ([]Key, error) {
	rows, _ := b.pool.Query(ctx, `SELECT id, created_at, revoked_at, name, expires_at, last_used_at FROM control_api_keys
		WHERE tenant_id = $1 ORDER BY created_at, id`, id)
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Key, error) {
		var k Key
		if err := r.Scan(&k.ID, &k.CreatedAt, &k.RevokedAt, &k.Name, &k.ExpiresAt, &k.LastUsedAt); err != nil {
			return Key{}, err
		}
		k.CreatedAt = k.CreatedAt.UTC()
		for _, t := range []**time.Time{&k.RevokedAt, &k.ExpiresAt, &k.LastUsedAt} {
			if *t != nil {
				at := (*t).UTC()
				*t = &at
			}
		}
		return k, nil
	})
	if keys == nil {
		keys = []Key{}
	}
	return keys, err
}

func toolTarget(owner tenant.ID) string {
	if owner == "" {
		return operatorToolsTarget
	}
	return tenantTarget(owner)
}

func (b *pgBackend) createTool(ctx context.Context, t *tools.Tool, def string, at time.Time) (int64, error) {
	var owner *string
	if t.Owner != "" {
		s := string(t.Owner)
		owner = &s
	}
	return b.write(ctx, toolTarget(t.Owner), func(tx pgx.Tx, _ *string) error {
		err := pgAffected(tx.Exec(ctx, `INSERT INTO control_tools (name, owner, definition, created_at)
			VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING`, t.Name, owner, def, at))
		switch {
		case errors.Is(err, errMissing):
			return errExists
		case isPgCode(err, pgForeignKeyViolation):
			return errNoOwner
		}
		return err
	})
}

func (b *pgBackend) deleteTool(ctx context.Context, name string) (int64, error) {
	return b.write(ctx, operatorToolsTarget, func(tx pgx.Tx, target *string) error {
		var owner *string
		err := tx.QueryRow(ctx, `DELETE FROM control_tools WHERE name = $1 RETURNING owner`, name).Scan(&owner)
		if errors.Is(err, pgx.ErrNoRows) {
			return errMissing
		}
		if owner != nil {
			*target = tenantTarget(tenant.ID(*owner))
		}
		return err
	})
}

func (b *pgBackend) rotate(ctx context.Context, old, check []byte, rewrap func(tenant.ID, []byte) ([]byte, error)) (map[tenant.Incarnation][]byte, int64, error) {
	var out map[tenant.Incarnation][]byte
	v, err := b.write(ctx, allTarget, func(tx pgx.Tx, _ *string) error {
		var stored []byte
		if err := tx.QueryRow(ctx, `SELECT check_value FROM control_keyring WHERE id = 1 FOR UPDATE`).Scan(&stored); err != nil {
			return fmt.Errorf("read key check: %w", err)
		}
		if string(stored) != string(old) {
			return errKEKChanged
		}
		type row struct {
			id      tenant.ID
			storage string
			wrapped []byte
		}
		rows, _ := tx.Query(ctx, `SELECT id, storage_id, wrapped_key FROM control_tenants FOR UPDATE`)
		all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			return x, r.Scan(&x.id, &x.storage, &x.wrapped)
		})
		if err != nil {
			return err
		}
		out = make(map[tenant.Incarnation][]byte, len(all))
		for _, r := range all {
			w, err := rewrap(r.id, r.wrapped)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE control_tenants SET wrapped_key = $1 WHERE id = $2`, w, r.id); err != nil {
				return err
			}
			out[tenant.NewIncarnation(r.id, r.storage)] = w
		}
		_, err = tx.Exec(ctx, `UPDATE control_keyring SET check_value = $1 WHERE id = 1`, check)
		return err
	})
	return out, v, err
}

// watch follows other replicas' changes until ctx ends, reconnecting
// (and reloading everything, for what it missed meanwhile) when the
// listening connection fails.
func (p *Plane) watch(ctx context.Context, b *pgBackend, cfg *pgx.ConnConfig, poll time.Duration) {
	const maxBackoff = 5 * time.Second
	backoff := 50 * time.Millisecond
	for {
		listening, err := p.follow(ctx, b, cfg, poll)
		if ctx.Err() != nil {
			return
		}
		if listening {
			backoff = 50 * time.Millisecond
		}
		p.logger.WarnContext(ctx, "control plane: lost the other replicas' changes; reconnecting", "error", err.Error(), "retry_in", backoff.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// follow listens on one connection until it fails. It reports whether it
// got as far as listening.
func (p *Plane) follow(ctx context.Context, b *pgBackend, cfg *pgx.ConnConfig, poll time.Duration) (bool, error) {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+pgChannel); err != nil {
		return false, fmt.Errorf("listen: %w", err)
	}
	// Listening from here on: catch up with what happened before, if
	// anything did.
	var v int64
	if err := conn.QueryRow(ctx, `SELECT version FROM control_state WHERE id = 1`).Scan(&v); err != nil {
		return true, fmt.Errorf("read change version: %w", err)
	}
	p.wmu.Lock()
	if v != p.version {
		err = p.reloadAll(ctx)
	}
	p.wmu.Unlock()
	if err != nil {
		return true, err
	}
	p.confirmFresh()
	var polled int64 // the database's version at the previous poll
	next := time.Now().Add(poll)
	for {
		wctx, cancel := context.WithDeadline(ctx, next)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return true, ctx.Err()
		case err == nil:
			if err := p.apply(ctx, b, n.Payload); err != nil {
				return true, err
			}
			p.confirmFresh()
			continue
		case !pgconn.Timeout(err):
			return true, fmt.Errorf("wait for changes: %w", err)
		}
		// The safety net: a version committed a whole poll ago that the
		// snapshot still lacks means a notification went missing.
		next = time.Now().Add(poll)
		if err := conn.QueryRow(ctx, `SELECT version FROM control_state WHERE id = 1`).Scan(&v); err != nil {
			return true, fmt.Errorf("read change version: %w", err)
		}
		p.wmu.Lock()
		if polled > p.version {
			p.logger.WarnContext(ctx, "control plane: missed a change notification; reloading", "version", p.version, "database_version", polled)
			err = p.reloadAll(ctx)
		}
		p.wmu.Unlock()
		if err != nil {
			return true, err
		}
		polled = v
		p.confirmFresh()
	}
}

// apply takes in the change a notification announces. A version that does
// not follow the snapshot's means one was missed: reload everything.
func (p *Plane) apply(ctx context.Context, b *pgBackend, payload string) error {
	vs, target, _ := strings.Cut(payload, " ")
	v, err := strconv.ParseInt(vs, 10, 64)
	if err != nil {
		return fmt.Errorf("bad change notification %q", payload)
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if v <= p.version {
		return nil // already in the snapshot: this Plane's own, or reloaded
	}
	if v != p.version+1 {
		return p.reloadAll(ctx)
	}
	switch what, arg, _ := strings.Cut(target, " "); {
	case what == "t":
		err = p.refresh(ctx, tenant.ID(arg))
	case what == operatorToolsTarget:
		var part snapshot
		if part, err = b.loadOperatorTools(ctx); err == nil {
			p.replace(part, func(tenant.ID) bool { return false }, func(t *tools.Tool) bool { return t.Owner == "" })
		}
	default:
		return p.reloadAll(ctx)
	}
	if err != nil {
		return err
	}
	p.version = v
	return nil
}

// addUsage is no change of the control plane's: it writes no change
// version, so no replica reloads for it.
func (b *pgBackend) addUsage(ctx context.Context, batch map[usageKey]Usage) error {
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	for _, k := range sortedUsage(batch) {
		u := batch[k]
		// Only into the incarnation the usage was counted for: a tenant
		// deleted (and perhaps created again) since gets none of it.
		if _, err := tx.Exec(ctx, `INSERT INTO control_usage AS u (tenant_id, day, end_user, model, requests, input_tokens, cached_input_tokens, output_tokens, spend_micro_usd)
			SELECT id, $3::date, $4, $5, $6, $7, $8, $9, $10 FROM control_tenants WHERE id = $1 AND storage_id = $2
			ON CONFLICT (tenant_id, day, end_user, model) DO UPDATE SET `+usageSums("u."),
			k.inc.Tenant(), k.inc.Storage(), k.day, k.endUser, k.model, u.Requests, u.InputTokens, u.CachedInputTokens, u.OutputTokens, u.SpendMicroUSD); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

func (b *pgBackend) usage(ctx context.Context, id tenant.ID, from, to string) ([]UsageRow, error) {
	rows, _ := b.pool.Query(ctx, `SELECT to_char(day, 'YYYY-MM-DD'), tenant_id, end_user, model, requests, input_tokens, cached_input_tokens, output_tokens, spend_micro_usd
		FROM control_usage WHERE ($1 = '' OR tenant_id = $1) AND day >= $2::date AND day <= $3::date
		ORDER BY day, tenant_id, end_user, model`, id, from, to)
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (UsageRow, error) {
		var r UsageRow
		err := row.Scan(&r.Day, &r.Tenant, &r.EndUser, &r.Model, &r.Requests, &r.InputTokens, &r.CachedInputTokens, &r.OutputTokens, &r.SpendMicroUSD)
		return r, err
	})
}

func (b *pgBackend) spentOn(ctx context.Context, inc tenant.Incarnation, day string) (map[tenant.UserID]int64, error) {
	rows, _ := b.pool.Query(ctx, `SELECT u.end_user, SUM(u.spend_micro_usd)::bigint FROM control_usage u JOIN control_tenants t ON t.id = u.tenant_id
		WHERE u.tenant_id = $1 AND t.storage_id = $2 AND u.day = $3::date GROUP BY u.end_user`, inc.Tenant(), inc.Storage(), day)
	out := map[tenant.UserID]int64{}
	var (
		user  string
		spent int64
	)
	_, err := pgx.ForEachRow(rows, []any{&user, &spent}, func() error {
		out[tenant.UserID(user)] = spent
		return nil
	})
	return out, err
}
