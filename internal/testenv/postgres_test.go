package testenv

import (
	"context"
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
