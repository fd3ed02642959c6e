package testenv

import (
	"context"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) {
	code := m.Run()
	StopPostgres()
	os.Exit(code)
}

func TestPostgresGivesEachTestItsOwnDatabase(t *testing.T) {
	first, second := Postgres(t), Postgres(t)
	if first == second {
		t.Fatalf("two calls returned the same database %s", first)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, first)
	if err != nil {
		t.Fatalf("connecting to %s: %v", first, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE t (x int)"); err != nil {
		t.Fatalf("creating a table in the test database: %v", err)
	}
	other, err := pgx.Connect(ctx, second)
	if err != nil {
		t.Fatalf("connecting to %s: %v", second, err)
	}
	defer other.Close(ctx)
	var n int
	if err := other.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 't'").Scan(&n); err != nil {
		t.Fatalf("listing tables: %v", err)
	}
	if n != 0 {
		t.Fatalf("a table made in one test database is visible in another")
	}
}

func TestPostgresRolesAreUnprivileged(t *testing.T) {
	ownerURL, appURL := PostgresRoles(t)
	ctx := context.Background()
	owner, err := pgx.Connect(ctx, ownerURL)
	if err != nil {
		t.Fatalf("connecting as owner: %v", err)
	}
	defer owner.Close(ctx)
	if _, err := owner.Exec(ctx, "CREATE TABLE t (x int)"); err != nil {
		t.Fatalf("owner cannot create a table: %v", err)
	}
	app, err := pgx.Connect(ctx, appURL)
	if err != nil {
		t.Fatalf("connecting as app: %v", err)
	}
	defer app.Close(ctx)
	var super, bypass bool
	if err := app.QueryRow(ctx, "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user").Scan(&super, &bypass); err != nil {
		t.Fatalf("reading the app role: %v", err)
	}
	if super || bypass {
		t.Fatalf("app role: superuser %v, bypassrls %v; want neither", super, bypass)
	}
	for _, stmt := range []string{"CREATE TABLE u (x int)", "SELECT * FROM t", "DROP TABLE t"} {
		if _, err := app.Exec(ctx, stmt); err == nil {
			t.Errorf("app role could %q without a grant", stmt)
		}
	}
	u, err := url.Parse(ownerURL)
	if err != nil {
		t.Fatalf("parsing the owner URL: %v", err)
	}
	ownerName := u.User.Username()
	if _, err := app.Exec(ctx, "SET ROLE "+ownerName); err == nil {
		t.Errorf("app role could SET ROLE %s", ownerName)
	}
}
