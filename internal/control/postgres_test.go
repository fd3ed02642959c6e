package control_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/control/controltest"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/testenv"
)

// postgresBackend is a fresh database with an owner and an unprivileged
// application role; Planes connect as the application role.
func postgresBackend(t *testing.T) controltest.Backend {
	owner, app := testenv.PostgresRoles(t)
	return controltest.Backend{Open: func(t testing.TB, kek keyring.KEK) (*control.Plane, error) {
		return control.OpenPostgres(context.Background(), control.PostgresOptions{URL: app, OwnerURL: owner}, kek, nil)
	}}
}

func TestPostgres(t *testing.T) {
	controltest.Run(t, postgresBackend)
	controltest.RunReplicas(t, postgresBackend)
}

func connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// TestPostgresApplicationRole: the server works as a role that owns
// nothing, which can use the control tables only through the grants and
// cannot change their shape or erase the key check.
func TestPostgresApplicationRole(t *testing.T) {
	ctx := context.Background()
	owner, app := testenv.PostgresRoles(t)
	p, err := control.OpenPostgres(ctx, control.PostgresOptions{URL: app, OwnerURL: owner}, controltest.NewKEK(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.CreateTenant(ctx, controltest.NewTenant("acme", "")); err != nil {
		t.Fatal(err)
	}
	appConn, ownerConn := connect(t, app), connect(t, owner)
	appRole, ownerRole := appConn.Config().User, ownerConn.Config().User

	var owners []string
	rows, _ := ownerConn.Query(ctx, `SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'control\_%'`)
	owners, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(owners) != 1 || owners[0] != ownerRole {
		t.Fatalf("control tables owned by %v (%v), want only %s", owners, err, ownerRole)
	}
	var version, defaultTable *string
	if err := ownerConn.QueryRow(ctx, `SELECT to_regclass('bulkhead_control_version')::text, to_regclass('goose_db_version')::text`).Scan(&version, &defaultTable); err != nil {
		t.Fatal(err)
	}
	if version == nil || defaultTable != nil {
		t.Fatalf("goose version tables: bulkhead_control_version %v, goose_db_version %v; want only the first", version, defaultTable)
	}

	var n int
	if err := appConn.QueryRow(ctx, `SELECT count(*) FROM control_tenants`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("application role reading tenants: %d, %v", n, err)
	}
	for _, stmt := range []string{
		`DROP TABLE control_tenants`,
		`ALTER TABLE control_tenants ADD COLUMN x int`,
		`TRUNCATE control_tenants`,
		`DELETE FROM control_keyring`,
		`DELETE FROM control_state`,
		`SELECT * FROM bulkhead_control_version`,
		`CREATE TABLE control_extra (x int)`,
		`SET ROLE ` + pgx.Identifier{ownerRole}.Sanitize(),
	} {
		if _, err := appConn.Exec(ctx, stmt); err == nil || !slices.Contains([]string{"42501", "42P01"}, pgCode(err)) {
			t.Errorf("application role: %s: err = %v, want permission denied", stmt, err)
		}
	}
	// Its access is the grants' and nothing else: without them it reads
	// nothing.
	if _, err := ownerConn.Exec(ctx, `REVOKE SELECT ON control_tenants FROM `+pgx.Identifier{appRole}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	if err := appConn.QueryRow(ctx, `SELECT count(*) FROM control_tenants`).Scan(&n); pgCode(err) != "42501" {
		t.Fatalf("application role reading tenants without the grant: err = %v, want permission denied", err)
	}
}

// TestPostgresListenerDropped: a replica whose listening connection dies
// reconnects and catches up with what it missed.
func TestPostgresListenerDropped(t *testing.T) {
	ctx := context.Background()
	owner, app := testenv.PostgresRoles(t)
	kek := controltest.NewKEK(t)
	opts := control.PostgresOptions{URL: app, OwnerURL: owner}
	p1, err := control.OpenPostgres(ctx, opts, kek, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p1.Close()
	p2, err := control.OpenPostgres(ctx, opts, kek, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if _, err := p1.CreateTenant(ctx, controltest.NewTenant("acme", "")); err != nil {
		t.Fatal(err)
	}
	key, _ := controltest.AddKey(t, p1, "acme")
	controltest.Eventually(t, "key", func() bool { _, ok := p2.KeyRecord(key); return ok })

	// Kill every listening connection (both replicas'), then change things
	// while they reconnect.
	conn := connect(t, app)
	var killed int
	if err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1`, control.ListenerApplicationName).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed != 2 {
		t.Fatalf("terminated %d listening connections, want 2", killed)
	}
	if err := p1.RevokeKey(ctx, "acme", key); err != nil {
		t.Fatal(err)
	}
	t.Logf("revoke after the listener dropped: in force on the other replica after %v",
		controltest.Eventually(t, "revoke", func() bool { _, ok := p2.KeyRecord(key); return !ok }))
}

// TestPostgresMissedNotification: a change that came without its
// notification is found by the periodic version check.
func TestPostgresMissedNotification(t *testing.T) {
	ctx := context.Background()
	owner, app := testenv.PostgresRoles(t)
	p, err := control.OpenPostgres(ctx, control.PostgresOptions{URL: app, OwnerURL: owner, PollInterval: 50 * time.Millisecond}, controltest.NewKEK(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.CreateTenant(ctx, controltest.NewTenant("acme", "")); err != nil {
		t.Fatal(err)
	}
	key, _ := controltest.AddKey(t, p, "acme")
	conn := connect(t, owner)
	if _, err := conn.Exec(ctx, `UPDATE control_api_keys SET revoked_at = now() WHERE id = $1`, key); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `UPDATE control_state SET version = version + 1`); err != nil {
		t.Fatal(err)
	}
	t.Logf("revoke without notification: in force after %v",
		controltest.Eventually(t, "silent revoke", func() bool { _, ok := p.KeyRecord(key); return !ok }))
}

// BenchmarkPropagation measures how long a change made through one replica
// takes to be in force on another: each op is the write on replica 1 and
// the wait until replica 2 shows it; after-commit-ms is the part after
// replica 1's call returned.
func BenchmarkPropagation(b *testing.B) {
	ctx := context.Background()
	owner, app := testenv.PostgresRoles(b)
	kek := controltest.NewKEK(b)
	opts := control.PostgresOptions{URL: app, OwnerURL: owner}
	p1, err := control.OpenPostgres(ctx, opts, kek, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer p1.Close()
	p2, err := control.OpenPostgres(ctx, opts, kek, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer p2.Close()
	if _, err := p1.CreateTenant(ctx, controltest.NewTenant("acme", "")); err != nil {
		b.Fatal(err)
	}
	exists := func(id tenant.ID) func() bool {
		return func() bool { _, err := p2.Tenant(id); return err == nil }
	}
	controltest.Eventually(b, "tenant", exists("acme"))

	// measure times do on replica 1 until seen holds on replica 2, after
	// setup (not timed).
	measure := func(b *testing.B, setup func(i int), do func(i int) error, seen func(i int) bool) {
		var after time.Duration
		for i := 0; b.Loop(); i++ {
			b.StopTimer()
			setup(i)
			b.StartTimer()
			if err := do(i); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			for !seen(i) {
				if time.Since(start) > controltest.Propagation {
					b.Fatalf("not seen within %v", controltest.Propagation)
				}
				time.Sleep(50 * time.Microsecond)
			}
			after += time.Since(start)
		}
		b.ReportMetric(float64(after.Microseconds())/1000/float64(b.N), "after-commit-ms")
	}
	b.Run("revoke", func(b *testing.B) {
		var key tenant.KeyID
		measure(b, func(int) {
			key, _ = controltest.AddKey(b, p1, "acme")
			controltest.Eventually(b, "key", func() bool { _, ok := p2.KeyRecord(key); return ok })
		}, func(int) error { return p1.RevokeKey(ctx, "acme", key) },
			func(int) bool { _, ok := p2.KeyRecord(key); return !ok })
	})
	b.Run("suspend", func(b *testing.B) {
		status := func(i int) tenant.Status {
			if i%2 == 0 {
				return tenant.StatusSuspended
			}
			return tenant.StatusActive
		}
		measure(b, func(int) {}, func(i int) error {
			_, err := p1.UpdateTenant(ctx, "acme", func(t *control.Tenant) error { t.Status = status(i); return nil })
			return err
		}, func(i int) bool { t, _ := p2.Tenant("acme"); return t.Status == status(i) })
	})
	id := func(i int) tenant.ID { return tenant.ID(fmt.Sprintf("t%06d", i)) }
	b.Run("delete", func(b *testing.B) {
		measure(b, func(i int) {
			if _, err := p1.CreateTenant(ctx, controltest.NewTenant(id(i), "")); err != nil {
				b.Fatal(err)
			}
			controltest.Eventually(b, "tenant", exists(id(i)))
		}, func(i int) error { _, err := p1.DeleteTenant(ctx, id(i)); return err },
			func(i int) bool { return !exists(id(i))() })
	})
	b.Run("recreate", func(b *testing.B) {
		var old tenant.Incarnation
		measure(b, func(int) {
			t, err := p1.Tenant("acme")
			if err != nil {
				b.Fatal(err)
			}
			old = t.Incarnation()
			if _, err := p1.DeleteTenant(ctx, "acme"); err != nil {
				b.Fatal(err)
			}
			controltest.Eventually(b, "delete", func() bool { return !exists("acme")() })
		}, func(int) error { _, err := p1.CreateTenant(ctx, controltest.NewTenant("acme", "")); return err },
			func(int) bool { t, err := p2.Tenant("acme"); return err == nil && t.Incarnation() != old })
	})
}

// TestPostgresCutOffReplicaFailsClosed: a replica that cannot reach the
// database stops authenticating keys after MaxStaleness (it cannot know
// which the others revoked), and recovers once it catches up.
func TestPostgresCutOffReplicaFailsClosed(t *testing.T) {
	ctx := context.Background()
	owner, app := testenv.PostgresRoles(t)
	opts := control.PostgresOptions{URL: app, OwnerURL: owner, PollInterval: 50 * time.Millisecond, MaxStaleness: 300 * time.Millisecond}
	p, err := control.OpenPostgres(ctx, opts, controltest.NewKEK(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.CreateTenant(ctx, controltest.NewTenant("acme", "")); err != nil {
		t.Fatal(err)
	}
	key, _ := controltest.AddKey(t, p, "acme")
	if _, ok := p.KeyRecord(key); !ok {
		t.Fatal("key not found while connected")
	}

	ownerConn, appConn := connect(t, owner), connect(t, app)
	db := ownerConn.Config().Database
	role := pgx.Identifier{appConn.Config().User}.Sanitize()
	if _, err := ownerConn.Exec(ctx, `REVOKE CONNECT ON DATABASE `+db+` FROM PUBLIC, `+role); err != nil {
		t.Fatal(err)
	}
	// Only a member of the role may end its sessions: the app role itself.
	if _, err := appConn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1`, control.ListenerApplicationName); err != nil {
		t.Fatal(err)
	}
	t.Logf("cut off: keys refused after %v", controltest.Eventually(t, "fail closed", func() bool { _, ok := p.KeyRecord(key); return !ok }))
	if _, err := ownerConn.Exec(ctx, `GRANT CONNECT ON DATABASE `+db+` TO `+role); err != nil {
		t.Fatal(err)
	}
	t.Logf("reconnected: keys accepted again after %v", controltest.Eventually(t, "recover", func() bool { _, ok := p.KeyRecord(key); return ok }))
}
