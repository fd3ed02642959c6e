// Package postgres is the PostgreSQL backend of the tenant data plane, for
// several stateless replicas sharing one database. It stores what the SQLite
// backend stores, sealed the same way (package seal), so a ciphertext or a
// blind token means the same thing in both.
//
// Isolation is enforced in the database, not only in Go. All tenants share
// the tables of schema tenant_data; tenant_id (the storage id of the
// tenant's incarnation, so a re-created tenant's rows are disjoint from the
// old one's) leads every key and index. Every table has row-level security
// enabled and forced, with a policy that shows and admits only rows whose
// tenant_id is the transaction's app.tenant_id setting. Every operation runs
// in a transaction that first sets it with set_config(..., true), in the
// round trip of its BEGIN, so the setting dies with the transaction and a
// pooled connection carries none; and
// every query names tenant_id explicitly as well. Without the setting, reads
// return nothing and writes fail.
//
// Two roles: Options.OwnerURL connects as the role that owns the schema and
// runs the migrations (goose, version table tenant_data.store_version) and
// the grants; Options.URL connects as the application role, which must own
// nothing and be neither superuser nor BYPASSRLS (Open refuses it otherwise).
// The application role may select, insert, update and delete tenant rows,
// but only select and insert audit records: the log is append-only to it.
//
// Full-text search is BM25 in SQL over a postings table of blind tokens
// (chunk_terms, memory_terms: tenant_id, term, row id, term frequency) with
// per-tenant corpus statistics kept in the knowledge row, so scores rank as
// the SQLite backend's FTS5 bm25() does. Audit appends are serialised per
// tenant with a transaction-level advisory lock, so replicas appending at
// once still make one chain.
//
// Use:
//
//	db, err := postgres.Open(ctx, postgres.Options{
//		URL:      "postgres://bulkhead_app@db/bulkhead",
//		OwnerURL: "postgres://bulkhead_owner@db/bulkhead",
//		Locator:  plane, // incarnation → storage id
//		Ciphers:  ring,  // *keyring.Ring
//	})
//	defer db.Close()
package postgres

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Locator maps an incarnation of a tenant to its storage id, the tenant_id of
// its rows. It is implemented by the control plane and fails with
// store.ErrUnknownTenant for an incarnation that is not the tenant's current
// one.
type Locator interface {
	StorageID(ctx context.Context, inc tenant.Incarnation) (string, error)
}

// Ciphers hands out the data-key cipher of a tenant's incarnation;
// *keyring.Ring implements it. An error fails the call.
type Ciphers interface {
	Cipher(ctx context.Context, inc tenant.Incarnation) (*keyring.Cipher, error)
}

// Options configures Open.
type Options struct {
	URL      string // the application role's connection URL
	OwnerURL string // the owner role's: runs the migrations and grants
	Locator  Locator
	Ciphers  Ciphers      // required: encrypts every tenant's content
	Logger   *slog.Logger // nil → discard
}

//go:embed migrations/*.sql
var migrations embed.FS

// versionTable is goose's table, of its own name: the control plane keeps
// its migrations in the same database.
const versionTable = "tenant_data.store_version"

// migrationLock is the advisory lock id under which Open migrates and
// grants ("bulkstor"), apart from the control plane's.
const migrationLock = 0x62756c6b73746f72

// tables lists every tenant table; each is under row-level security.
var tables = []string{"sessions", "messages", "secrets", "documents", "chunks", "chunk_terms",
	"knowledge", "memories", "memory_terms", "audit"}

// DB is the tenant data plane in one PostgreSQL database. It is safe for
// concurrent use.
type DB struct {
	pool    *pgxpool.Pool
	locator Locator
	ciphers Ciphers
	log     *slog.Logger
}

// Open migrates the schema as the owner, grants the application role what
// it needs, and connects as the application role, which it refuses if it
// could bypass row-level security.
func Open(ctx context.Context, opts Options) (*DB, error) {
	if opts.URL == "" || opts.OwnerURL == "" {
		return nil, errors.New("open postgres store: URL and OwnerURL are both required")
	}
	if opts.Locator == nil {
		return nil, errors.New("open postgres store: no locator")
	}
	if opts.Ciphers == nil {
		return nil, errors.New("open postgres store: no ciphers")
	}
	cfg, err := pgxpool.ParseConfig(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	app := cfg.ConnConfig.User
	if err := migrate(ctx, opts.OwnerURL, app); err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	if err := checkAppRole(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	return &DB{
		pool:    pool,
		locator: opts.Locator,
		ciphers: opts.Ciphers,
		log:     cmp.Or(opts.Logger, slog.New(slog.DiscardHandler)),
	}, nil
}

// migrate brings the schema up to date as the owner and grants the
// application role app its privileges. Both are idempotent.
func migrate(ctx context.Context, ownerURL, app string) error {
	cfg, err := pgx.ParseConfig(ownerURL)
	if err != nil {
		return fmt.Errorf("owner URL: %w", err)
	}
	if cfg.User == app {
		return fmt.Errorf("the application role %q must not be the owner", app)
	}
	sqlDB := stdlib.OpenDB(*cfg)
	defer sqlDB.Close()
	// Replicas starting together take turns, holding a session lock of our
	// own id while they create the schema, migrate and grant: CREATE SCHEMA
	// IF NOT EXISTS and GRANT both fail when run concurrently.
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", migrationLock); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLock) //nolint:errcheck // closing the connections unlocks too
	if _, err := conn.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS tenant_data"); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, fsys,
		goose.WithDisableGlobalRegistry(true), goose.WithTableName(versionTable))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return grant(ctx, conn, app)
}

// grant gives the application role what the store needs and no more: the
// schema's usage, rows of the tenant tables, the audit log only to read and
// append, the memory id sequence, and the function Drop removes a log with.
func grant(ctx context.Context, conn *sql.Conn, app string) error {
	role := pgx.Identifier{app}.Sanitize()
	stmts := []string{"GRANT USAGE ON SCHEMA tenant_data TO " + role}
	for _, t := range tables {
		privs := "SELECT, INSERT, UPDATE, DELETE"
		if t == "audit" {
			privs = "SELECT, INSERT"
		}
		stmts = append(stmts, "GRANT "+privs+" ON tenant_data."+t+" TO "+role)
	}
	stmts = append(stmts,
		"GRANT USAGE ON SEQUENCE tenant_data.memories_id_seq TO "+role,
		"GRANT EXECUTE ON FUNCTION tenant_data.drop_audit() TO "+role)
	for _, s := range stmts {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("grant: %s: %w", s, err)
		}
	}
	return nil
}

// checkAppRole refuses an application role that row-level security would not
// bind: a superuser, a BYPASSRLS role, or the owner of a tenant table.
func checkAppRole(ctx context.Context, pool *pgxpool.Pool) error {
	var super, bypass bool
	var owned int
	err := pool.QueryRow(ctx, `
		SELECT r.rolsuper, r.rolbypassrls,
			(SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			 WHERE n.nspname = 'tenant_data' AND pg_has_role(current_user, c.relowner, 'MEMBER'))
		FROM pg_roles r WHERE r.rolname = current_user`).Scan(&super, &bypass, &owned)
	if err != nil {
		return fmt.Errorf("check the application role: %w", err)
	}
	if super || bypass || owned > 0 {
		return fmt.Errorf("the application role bypasses row-level security (superuser %v, bypassrls %v, owns or may become the owner of %d tenant tables)", super, bypass, owned)
	}
	return nil
}

// Close closes the connections.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

// begin returns the statements that open a transaction with opts and scope
// it to tenant id: set_config's third argument, true, makes the setting local
// to the transaction, so the pooled connection carries no tenant once it
// ends. Both go in one round trip (pgx sends a BeginQuery as one simple
// query), which is why id is a literal here rather than a parameter: it is
// one of [a-z0-9] (validStorageID, checked by every caller and again here),
// so it cannot end the literal.
func begin(opts pgx.TxOptions, id string) (string, error) {
	if !validStorageID(id) {
		return "", fmt.Errorf("invalid storage id %q", id)
	}
	var b strings.Builder
	b.WriteString("BEGIN")
	if opts.IsoLevel != "" {
		b.WriteString(" ISOLATION LEVEL " + string(opts.IsoLevel))
	}
	if opts.AccessMode != "" {
		b.WriteString(" " + string(opts.AccessMode))
	}
	b.WriteString("; SELECT set_config('app.tenant_id', '" + id + "', true)")
	return b.String(), nil
}

// tenantTx is a transaction scoped to one tenant: id is the tenant_id every
// query names, c the tenant's cipher.
type tenantTx struct {
	pgx.Tx
	id string
	c  *keyring.Cipher
}

// run locates scope's tenant, finds its cipher and runs fn in a transaction
// scoped to it, committing if fn succeeds. The cipher is found first, so a
// tenant without a usable key reaches no row. A write commits only if the
// incarnation is still current, so a tenant deleted meanwhile gets none.
func (db *DB) run(ctx context.Context, scope auth.Scope, opts pgx.TxOptions, fn func(ctx context.Context, tx tenantTx) error) error {
	if !scope.Valid() || scope.Incarnation().Tenant() != scope.Tenant() {
		return store.ErrNoScope
	}
	id, err := db.locator.StorageID(ctx, scope.Incarnation())
	if err != nil {
		return fmt.Errorf("locate tenant store: %w", err)
	}
	if !validStorageID(id) {
		return fmt.Errorf("locate tenant store: invalid storage id %q", id)
	}
	c, err := db.ciphers.Cipher(ctx, scope.Incarnation())
	if err != nil {
		return fmt.Errorf("tenant key: %w", err)
	}
	if c == nil || c.Tenant() != scope.Tenant() {
		return errors.New("tenant key: cipher is not the tenant's")
	}
	err = db.inTenant(ctx, id, opts, func(ctx context.Context, tx pgx.Tx) error {
		if err := fn(ctx, tenantTx{Tx: tx, id: id, c: c}); err != nil {
			return err
		}
		if opts.AccessMode == pgx.ReadOnly {
			return nil
		}
		if _, err := db.locator.StorageID(ctx, scope.Incarnation()); err != nil {
			return fmt.Errorf("locate tenant store: %w", err)
		}
		return nil
	})
	return err
}

// inTenant runs fn in a transaction whose app.tenant_id is id.
func (db *DB) inTenant(ctx context.Context, id string, opts pgx.TxOptions, fn func(ctx context.Context, tx pgx.Tx) error) error {
	q, err := begin(opts, id)
	if err != nil {
		return err
	}
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{BeginQuery: q})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit it is a no-op
	if err := fn(ctx, tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

var (
	writeTx = pgx.TxOptions{}
	readTx  = pgx.TxOptions{AccessMode: pgx.ReadOnly}
)

// Create prepares a new incarnation's data. In PostgreSQL there is nothing
// to make: a tenant's rows are written as it stores things, under RLS, and
// no per-tenant file exists that could disappear. It checks that inc names
// storage the locator knows, as every other call does.
func (db *DB) Create(ctx context.Context, inc tenant.Incarnation) error {
	if _, err := db.locator.StorageID(ctx, inc); err != nil {
		return fmt.Errorf("create tenant data: %w", err)
	}
	return nil
}

// Drop removes every row of incarnation inc, in one transaction. It is used
// when a tenant is deleted, after its control record and data key are gone,
// so it takes the incarnation rather than asking the locator. Cascades remove
// the messages, chunks and index rows with their sessions, documents and
// memories.
func (db *DB) Drop(ctx context.Context, inc tenant.Incarnation) error {
	id := inc.Storage()
	if !validStorageID(id) {
		return fmt.Errorf("drop tenant store: invalid storage id %q", id)
	}
	err := db.inTenant(ctx, id, writeTx, func(ctx context.Context, tx pgx.Tx) error {
		for _, t := range []string{"sessions", "secrets", "documents", "knowledge", "memories"} {
			if _, err := tx.Exec(ctx, "DELETE FROM tenant_data."+t+" WHERE tenant_id = $1", id); err != nil {
				return fmt.Errorf("%s: %w", t, err)
			}
		}
		_, err := tx.Exec(ctx, "SELECT tenant_data.drop_audit()")
		return err
	})
	if err != nil {
		return fmt.Errorf("drop tenant store: %w", err)
	}
	db.log.Info("dropped tenant store", "storage_id", id)
	return nil
}

// validStorageID reports whether id is 8 to 64 of [a-z0-9], as the SQLite
// backend requires, so a storage id is valid in both.
func validStorageID(id string) bool {
	if len(id) < 8 || len(id) > 64 {
		return false
	}
	for _, c := range []byte(id) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}
