package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/store/postgres"
	"github.com/bulkhead-ai/bulkhead/internal/store/storetest"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopPostgres()
	os.Exit(code)
}

// fixture is a store on a fresh database with its roles, and a superuser
// connection to the same database that sees every row, as someone holding
// the database would.
type fixture struct {
	*postgres.DB
	ownerURL, appURL string
	super            *pgx.Conn
	keys             *storetest.Keys
}

var _ storetest.AtRestBackend = (*fixture)(nil)

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ownerURL, appURL := testenv.PostgresRoles(t)
	keys := storetest.NewKeys(t, storetest.Acme, storetest.Globex)
	db, err := postgres.Open(t.Context(), postgres.Options{URL: appURL, OwnerURL: ownerURL, Locator: storetest.TwoTenants, Ciphers: keys.Ring()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return &fixture{DB: db, ownerURL: ownerURL, appURL: appURL, super: connect(t, superURL(t, ownerURL)), keys: keys}
}

// superURL is the superuser URL of the server tests use, for the database
// of ownerURL.
func superURL(t testing.TB, ownerURL string) string {
	t.Helper()
	owner, err := url.Parse(ownerURL)
	if err != nil {
		t.Fatal(err)
	}
	super := *owner
	super.User = url.User("postgres") // the throwaway cluster's superuser
	if s := os.Getenv(testenv.PostgresURLEnv); s != "" {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		super.User = u.User
	}
	return super.String()
}

func connect(t testing.TB, u string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), u)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend { return newFixture(t) })
}

func TestAuditConformance(t *testing.T) {
	storetest.RunAudit(t, func(t *testing.T) storetest.AuditBackend { return newFixture(t) })
}

func (f *fixture) Keys() *storetest.Keys { return f.keys }

func (f *fixture) Incarnation(id tenant.ID) tenant.Incarnation {
	return storetest.TwoTenants.Incarnation(id)
}

// tenantTables returns every table of schema tenant_data but goose's version
// table, from the catalog, so a new table cannot be missed, and checks that
// each has a tenant_id column leading its primary key.
func tenantTables(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	rows, err := conn.Query(t.Context(), `
		SELECT c.relname,
			coalesce((SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
			          WHERE i.indrelid = c.oid AND i.indisprimary), '')
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'tenant_data' AND c.relkind IN ('r', 'p') AND c.relname <> 'store_version'
		ORDER BY c.relname`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var name, lead string
	if _, err := pgx.ForEachRow(rows, []any{&name, &lead}, func() error {
		if lead != "tenant_id" {
			t.Errorf("table %s: primary key leads with %q, want tenant_id", name, lead)
		}
		names = append(names, name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(names) < 10 {
		t.Fatalf("found tenant tables %q: the catalog query is broken", names)
	}
	// Every index, not only the primary keys, leads with tenant_id.
	rows, err = conn.Query(t.Context(), `
		SELECT ic.relname, a.attname
		FROM pg_index i
		JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_class ic ON ic.oid = i.indexrelid
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
		WHERE n.nspname = 'tenant_data' AND c.relname <> 'store_version'`)
	if err != nil {
		t.Fatal(err)
	}
	indexes := 0
	if _, err := pgx.ForEachRow(rows, []any{&name, &lead}, func() error {
		indexes++
		if lead != "tenant_id" {
			t.Errorf("index %s leads with %q, want tenant_id", name, lead)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if indexes < len(names) {
		t.Fatalf("found %d indexes on %d tables: the catalog query is broken", indexes, len(names))
	}
	return names
}

// Raw returns every value of every row of every table of the schema, byte
// strings as they are.
func (f *fixture) Raw(t *testing.T) []byte {
	t.Helper()
	rows, err := f.super.Query(t.Context(), `SELECT tablename FROM pg_tables WHERE schemaname = 'tenant_data'`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for _, table := range tables {
		rows, err := f.super.Query(t.Context(), "SELECT * FROM tenant_data."+pgx.Identifier{table}.Sanitize())
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				switch v := v.(type) {
				case []byte:
					all = append(all, v...)
				case string:
					all = append(all, v...)
				default:
					all = fmt.Append(all, v)
				}
				all = append(all, 0)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return all
}

// place returns the table, column and row condition of p; $1 is the
// tenant_id.
func place(t *testing.T, p storetest.Place) (table, column, where string, args []any) {
	t.Helper()
	args = []any{storetest.TwoTenants[p.Tenant]}
	firstMessage := `id = (SELECT min(id) FROM tenant_data.messages WHERE tenant_id = $1 AND user_id = $2 AND session_id = $3)`
	switch p.Column {
	case storetest.MessageContent:
		return "messages", "content", firstMessage, append(args, p.User, p.Session)
	case storetest.MessageMeta:
		return "messages", "meta", firstMessage, append(args, p.User, p.Session)
	case storetest.SecretValue:
		return "secrets", "value", "name = $2", append(args, p.Secret)
	case storetest.DocumentText:
		return "documents", "text", "id = $2", append(args, p.Document)
	case storetest.DocumentMetadata:
		return "documents", "metadata", "id = $2", append(args, p.Document)
	case storetest.DocumentHash:
		return "documents", "hash", "id = $2", append(args, p.Document)
	case storetest.ChunkText:
		return "chunks", "text", "document_id = $2 AND ordinal = $3", append(args, p.Document, p.Ordinal)
	case storetest.ChunkEmbedding:
		return "chunks", "embedding", "document_id = $2 AND ordinal = $3", append(args, p.Document, p.Ordinal)
	case storetest.MemoryText:
		return "memories", "text", "user_id = $2 AND id = $3", append(args, p.User, p.Memory)
	case storetest.MemoryEmbedding:
		return "memories", "embedding", "user_id = $2 AND id = $3", append(args, p.User, p.Memory)
	}
	t.Fatalf("unknown column %d", p.Column)
	return "", "", "", nil
}

func (f *fixture) Sealed(t *testing.T, p storetest.Place) []byte {
	t.Helper()
	table, column, where, args := place(t, p)
	var b []byte
	q := "SELECT " + column + " FROM tenant_data." + table + " WHERE tenant_id = $1 AND " + where
	if err := f.super.QueryRow(t.Context(), q, args...).Scan(&b); err != nil || len(b) == 0 {
		t.Fatalf("%s: %d bytes, %v", q, len(b), err)
	}
	return b
}

func (f *fixture) Overwrite(t *testing.T, p storetest.Place, value []byte) {
	t.Helper()
	table, column, where, args := place(t, p)
	n := len(args) + 1
	q := "UPDATE tenant_data." + table + " SET " + column + " = $" + fmt.Sprint(n) + " WHERE tenant_id = $1 AND " + where
	tag, err := f.super.Exec(t.Context(), q, append(args, value)...)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("%s: %d rows, %v", q, tag.RowsAffected(), err)
	}
}

// fill stores something of every kind for scope's tenant, so every tenant
// table has rows of it.
func fill(t *testing.T, db *postgres.DB, scope auth.Scope) {
	t.Helper()
	ctx := t.Context()
	if err := db.AppendMessages(ctx, scope, "s1", []store.Message{{Role: "user", Content: "hello"}}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutSecret(ctx, scope, "api_token", []byte("token")); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := db.PutDocument(ctx, scope, storetest.NewDocument("hello world", ""), []store.Chunk{{Text: "hello world", Embedding: []float32{1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.PutMemory(ctx, scope, store.Memory{Text: "hello memory"}); err != nil {
		t.Fatal(err)
	}
	if err := db.AppendAudit(ctx, scope, []store.AuditRecord{{Type: "test.fill", Data: []byte(`{}`)}}); err != nil {
		t.Fatal(err)
	}
}

// TestRowLevelSecurity proves the isolation in the database itself, as the
// application role, without the store's Go code: with no tenant set it sees
// and writes nothing, with one tenant set it sees and writes that tenant's
// rows only, and it cannot switch row-level security off.
func TestRowLevelSecurity(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	acme, globex := storetest.TwoTenants[storetest.Acme], storetest.TwoTenants[storetest.Globex]
	fill(t, f.DB, authtest.Scope(t, storetest.Acme, "alice"))
	fill(t, f.DB, authtest.Scope(t, storetest.Globex, "alice"))
	tables := tenantTables(t, f.super)

	// Every tenant table is under forced row-level security, and holds rows
	// of both tenants, so the counts below can fail.
	for _, table := range tables {
		var enabled, forced bool
		var policies, tenants int
		err := f.super.QueryRow(ctx, `
			SELECT c.relrowsecurity, c.relforcerowsecurity,
				(SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid)
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = 'tenant_data' AND c.relname = $1`, table).Scan(&enabled, &forced, &policies)
		if err != nil {
			t.Fatal(err)
		}
		if !enabled || !forced || policies != 1 {
			t.Errorf("%s: row security %v, forced %v, %d policies; want true, true, 1", table, enabled, forced, policies)
		}
		if err := f.super.QueryRow(ctx, "SELECT count(DISTINCT tenant_id) FROM tenant_data."+table).Scan(&tenants); err != nil {
			t.Fatal(err)
		}
		if tenants != 2 {
			t.Errorf("%s holds rows of %d tenants, want 2: the fixture does not reach it", table, tenants)
		}
	}

	app := connect(t, f.appURL)
	count := func(t *testing.T, q execer, table, where string, args ...any) int {
		t.Helper()
		var n int
		if err := q.QueryRow(ctx, "SELECT count(*) FROM tenant_data."+table+where, args...).Scan(&n); err != nil {
			t.Fatalf("count %s: %v", table, err)
		}
		return n
	}

	t.Run("no tenant set", func(t *testing.T) {
		for _, table := range tables {
			if n := count(t, app, table, ""); n != 0 {
				t.Errorf("SELECT from %s with no tenant set: %d rows, want 0", table, n)
			}
		}
		// An empty setting is no tenant either.
		tx := beginTenant(t, app, "")
		for _, table := range tables {
			if n := count(t, tx, table, ""); n != 0 {
				t.Errorf("SELECT from %s with an empty tenant: %d rows, want 0", table, n)
			}
		}
		rollback(t, tx)
		_, err := app.Exec(ctx, `INSERT INTO tenant_data.secrets (tenant_id, name, value, updated_ns) VALUES ($1, 'x', '\x00', 0)`, acme)
		wantRLSError(t, "INSERT with no tenant set", err)
	})

	t.Run("acme set", func(t *testing.T) {
		tx := beginTenant(t, app, acme)
		defer rollback(t, tx)
		for _, table := range tables {
			if n := count(t, tx, table, ""); n == 0 {
				t.Errorf("%s as acme: no rows, want acme's", table)
			}
			if n := count(t, tx, table, " WHERE tenant_id <> $1", acme); n != 0 {
				t.Errorf("%s as acme: %d rows of another tenant, want 0", table, n)
			}
		}
		if tag, err := tx.Exec(ctx, `UPDATE tenant_data.secrets SET value = '\x00' WHERE tenant_id = $1`, globex); err != nil || tag.RowsAffected() != 0 {
			t.Errorf("UPDATE of globex's secrets as acme: %d rows, %v; want 0 rows", tag.RowsAffected(), err)
		}
		if tag, err := tx.Exec(ctx, `DELETE FROM tenant_data.messages WHERE tenant_id = $1`, globex); err != nil || tag.RowsAffected() != 0 {
			t.Errorf("DELETE of globex's messages as acme: %d rows, %v; want 0 rows", tag.RowsAffected(), err)
		}
		for _, w := range []struct{ name, sql string }{
			{"INSERT a secret with globex's tenant_id", `INSERT INTO tenant_data.secrets (tenant_id, name, value, updated_ns) VALUES ($1, 'x', '\x00', 0)`},
			{"INSERT a session with globex's tenant_id", `INSERT INTO tenant_data.sessions (tenant_id, user_id, session_id, created_ns, updated_ns) VALUES ($1, 'u', 's', 0, 0)`},
			{"INSERT an audit record with globex's tenant_id", `INSERT INTO tenant_data.audit (tenant_id, seq, time_ns, type, data, prev, hash) VALUES ($1, 99, 0, 't', '{}', '', '')`},
			{"move acme's secret to globex", `UPDATE tenant_data.secrets SET tenant_id = $1`},
		} {
			_, err := tx.Exec(ctx, "SAVEPOINT s")
			if err != nil {
				t.Fatal(err)
			}
			_, err = tx.Exec(ctx, w.sql, globex)
			wantRLSError(t, w.name, err)
			if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT s"); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("cannot switch it off", func(t *testing.T) {
		for _, table := range tables {
			for _, stmt := range []string{
				"ALTER TABLE tenant_data." + table + " DISABLE ROW LEVEL SECURITY",
				"ALTER TABLE tenant_data." + table + " NO FORCE ROW LEVEL SECURITY",
				"DROP POLICY tenant_isolation ON tenant_data." + table,
				"ALTER POLICY tenant_isolation ON tenant_data." + table + " USING (true)",
				"CREATE POLICY open ON tenant_data." + table + " USING (true)",
			} {
				_, err := app.Exec(ctx, stmt)
				wantDenied(t, stmt, err)
			}
		}
		owner, err := url.Parse(f.ownerURL)
		if err != nil {
			t.Fatal(err)
		}
		for _, stmt := range []string{
			"SET ROLE " + owner.User.Username(),
			"SET SESSION AUTHORIZATION " + owner.User.Username(),
			"SET ROLE postgres",
			"UPDATE tenant_data.audit SET data = '{}'",
			"DELETE FROM tenant_data.audit",
			"SELECT * FROM tenant_data.store_version",
		} {
			_, err := app.Exec(ctx, stmt)
			wantDenied(t, stmt, err)
		}
		// row_security = off does not bypass the policies: the query fails.
		tx := beginTenant(t, app, acme)
		if _, err := tx.Exec(ctx, "SET LOCAL row_security = off"); err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, "SELECT count(*) FROM tenant_data.secrets")
		wantDenied(t, "SELECT with row_security off", err)
		rollback(t, tx)
		var super, bypass bool
		if err := app.QueryRow(ctx, "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user").Scan(&super, &bypass); err != nil || super || bypass {
			t.Errorf("application role: superuser %v, bypassrls %v, %v; want neither", super, bypass, err)
		}
	})

	t.Run("pooled connection carries no tenant", func(t *testing.T) {
		// Every connection of the store's pool, after the store's own
		// transactions, has an empty app.tenant_id and sees nothing.
		pool := f.Pool()
		if _, err := f.Secrets(ctx, authtest.Scope(t, storetest.Acme, "alice")); err != nil {
			t.Fatal(err)
		}
		conns := pool.Stat().TotalConns()
		if conns == 0 {
			t.Fatal("the store's pool has no connections")
		}
		var held []*pgxpool.Conn
		for range conns {
			c, err := pool.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, c)
			var setting *string
			if err := c.QueryRow(ctx, "SELECT current_setting('app.tenant_id', true)").Scan(&setting); err != nil {
				t.Fatal(err)
			}
			if setting != nil && *setting != "" {
				t.Errorf("pooled connection carries app.tenant_id %q", *setting)
			}
			var n int
			if err := c.QueryRow(ctx, "SELECT count(*) FROM tenant_data.secrets").Scan(&n); err != nil || n != 0 {
				t.Errorf("pooled connection sees %d secrets, %v; want 0", n, err)
			}
		}
		for _, c := range held {
			c.Release()
		}
	})
}

// TestOpenRefusesPrivilegedRole checks that Open refuses to serve as a role
// row-level security does not bind.
func TestOpenRefusesPrivilegedRole(t *testing.T) {
	ownerURL, _ := testenv.PostgresRoles(t)
	keys := storetest.NewKeys(t, storetest.Acme)
	for name, u := range map[string]string{"the owner": ownerURL, "a superuser": superURL(t, ownerURL)} {
		db, err := postgres.Open(t.Context(), postgres.Options{URL: u, OwnerURL: ownerURL, Locator: storetest.TwoTenants, Ciphers: keys.Ring()})
		if err == nil {
			db.Close()
			t.Errorf("Open as %s: got nil error", name)
		}
	}
}

// TestTenantIsIncarnation checks that a tenant deleted and created again
// under another storage id starts empty, and that Drop removes exactly its
// incarnation's rows.
func TestTenantIsIncarnation(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	scope := authtest.Scope(t, storetest.Acme, "alice")
	fill(t, f.DB, scope)
	fill(t, f.DB, authtest.Scope(t, storetest.Globex, "alice"))

	again := storetest.Locator{storetest.Acme: "acme1storage", storetest.Globex: storetest.TwoTenants[storetest.Globex]}
	db2, err := postgres.Open(ctx, postgres.Options{URL: f.appURL, OwnerURL: f.ownerURL, Locator: again, Ciphers: f.keys.Ring()})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if msgs, err := db2.Messages(ctx, scope, "s1", 0); err != nil || len(msgs) != 0 {
		t.Errorf("the new incarnation's messages: got %d, %v; want none", len(msgs), err)
	}
	if recs, err := db2.AuditRecords(ctx, scope, 0, 0); err != nil || len(recs) != 0 {
		t.Errorf("the new incarnation's audit log: got %d records, %v; want none", len(recs), err)
	}

	if err := f.Drop(ctx, storetest.TwoTenants.Incarnation(storetest.Acme)); err != nil {
		t.Fatal(err)
	}
	for _, table := range tenantTables(t, f.super) {
		var acme, globex int
		if err := f.super.QueryRow(ctx, "SELECT count(*) FILTER (WHERE tenant_id = $1), count(*) FILTER (WHERE tenant_id = $2) FROM tenant_data."+table,
			storetest.TwoTenants[storetest.Acme], storetest.TwoTenants[storetest.Globex]).Scan(&acme, &globex); err != nil {
			t.Fatal(err)
		}
		if acme != 0 || globex == 0 {
			t.Errorf("%s after acme's Drop: %d rows of acme, %d of globex; want 0 and some", table, acme, globex)
		}
	}
	for _, bad := range []tenant.Incarnation{"acme", "acme@../x", tenant.Incarnation("acme@" + strings.Repeat("a", 65))} {
		if err := f.Drop(ctx, bad); err == nil {
			t.Errorf("Drop(%q): got nil error", bad)
		}
	}
}

func TestOpenOptions(t *testing.T) {
	keys := storetest.NewKeys(t, storetest.Acme)
	for name, opts := range map[string]postgres.Options{
		"no URL":       {OwnerURL: "postgres://o@127.0.0.1/x", Locator: storetest.TwoTenants, Ciphers: keys.Ring()},
		"no owner URL": {URL: "postgres://a@127.0.0.1/x", Locator: storetest.TwoTenants, Ciphers: keys.Ring()},
		"no locator":   {URL: "postgres://a@127.0.0.1/x", OwnerURL: "postgres://o@127.0.0.1/x", Ciphers: keys.Ring()},
		"no ciphers":   {URL: "postgres://a@127.0.0.1/x", OwnerURL: "postgres://o@127.0.0.1/x", Locator: storetest.TwoTenants},
		"same role":    {URL: "postgres://a@127.0.0.1:1/x", OwnerURL: "postgres://a@127.0.0.1:1/x", Locator: storetest.TwoTenants, Ciphers: keys.Ring()},
	} {
		if db, err := postgres.Open(t.Context(), opts); err == nil {
			db.Close()
			t.Errorf("Open with %s: got nil error", name)
		}
	}
}

// execer is a connection or a transaction.
type execer interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func beginTenant(t *testing.T, conn *pgx.Conn, id string) pgx.Tx {
	t.Helper()
	tx, err := conn.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(t.Context(), "SELECT set_config('app.tenant_id', $1, true)", id); err != nil {
		t.Fatal(err)
	}
	return tx
}

func rollback(t *testing.T, tx pgx.Tx) {
	t.Helper()
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// wantDenied checks that err is PostgreSQL's insufficient_privilege, not
// some other failure of the statement.
func wantDenied(t *testing.T, what string, err error) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Errorf("%s as the application role: got %v, want insufficient privilege (42501)", what, err)
	}
}

func wantRLSError(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), "row-level security") {
		t.Errorf("%s: got %v, want a row-level security violation", what, err)
	}
}

// TestOpenConcurrently starts several stores on one new database at once, as
// replicas starting together do: migrations and grants take turns, and
// every store works.
func TestOpenConcurrently(t *testing.T) {
	ownerURL, appURL := testenv.PostgresRoles(t)
	keys := storetest.NewKeys(t, storetest.Acme)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			db, err := postgres.Open(t.Context(), postgres.Options{URL: appURL, OwnerURL: ownerURL, Locator: storetest.TwoTenants, Ciphers: keys.Ring()})
			if err != nil {
				t.Errorf("Open %d: %v", i, err)
				return
			}
			defer db.Close()
			if err := db.PutSecret(t.Context(), authtest.Scope(t, storetest.Acme, "alice"), "api_token", []byte("v")); err != nil {
				t.Errorf("store %d: %v", i, err)
			}
		})
	}
	wg.Wait()
}
