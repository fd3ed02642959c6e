package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresURLEnv names a superuser connection URL of a PostgreSQL server the
// tests may create databases and roles on. CI sets it; without it the tests
// start a throwaway cluster with the Debian binaries (initdb, pg_ctl).
const PostgresURLEnv = "BULKHEAD_TEST_POSTGRES_URL"

// Postgres returns a superuser URL to a new, empty database of its own, dropped
// when the test ends. Roles are cluster-wide: a test that creates roles must
// give them names of its own (the database name is unique, so derive from it).
func Postgres(t testing.TB) string {
	t.Helper()
	server, err := postgresServer()
	Require(t, "PostgreSQL", err == nil, fmt.Sprintf("set %s to a superuser URL or install postgresql (initdb, pg_ctl): %v", PostgresURLEnv, err))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, server)
	if err != nil {
		t.Fatalf("connecting to PostgreSQL at %s: %v", redactURL(server), err)
	}
	defer admin.Close(context.Background())

	name := "bh_test_" + randomHex(6)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("creating test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, server)
		if err != nil {
			t.Errorf("dropping test database %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("dropping test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(server)
	if err != nil {
		t.Fatalf("parsing %s: %v", PostgresURLEnv, err)
	}
	u.Path = "/" + name
	return u.String()
}

// PostgresServer returns the superuser URL of the server the tests use,
// for a test that makes databases and roles itself. Each test must clean up
// what it makes.
func PostgresServer(t testing.TB) string {
	t.Helper()
	server, err := postgresServer()
	Require(t, "PostgreSQL", err == nil, fmt.Sprintf("set %s to a superuser URL or install postgresql (initdb, pg_ctl): %v", PostgresURLEnv, err))
	return server
}

var cluster struct {
	once sync.Once
	url  string
	err  error
}

// postgresServer returns the superuser URL of the server tests use: the one
// PostgresURLEnv names, or a throwaway cluster started once per test binary.
// The throwaway cluster is stopped by StopPostgres, which packages using it
// call from TestMain.
func postgresServer() (string, error) {
	if u := os.Getenv(PostgresURLEnv); u != "" {
		return u, nil
	}
	cluster.once.Do(func() { cluster.url, cluster.err = startCluster() })
	return cluster.url, cluster.err
}

func startCluster() (string, error) {
	initdb, err := findPGBinary("initdb")
	if err != nil {
		return "", err
	}
	pgctl, err := findPGBinary("pg_ctl")
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "bulkhead-pg-")
	if err != nil {
		return "", fmt.Errorf("making cluster directory: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	// PostgreSQL refuses to run as root: run it as the postgres user then.
	var as []string
	if os.Geteuid() == 0 {
		pg, err := user.Lookup("postgres")
		if err != nil {
			return "", fmt.Errorf("running as root and no postgres user to run the cluster as: %w", err)
		}
		uid, _ := strconv.Atoi(pg.Uid)
		gid, _ := strconv.Atoi(pg.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return "", fmt.Errorf("handing the cluster directory to postgres: %w", err)
		}
		as = []string{"runuser", "-u", "postgres", "--"}
	}
	data := filepath.Join(dir, "data")
	cmd := func(args ...string) *exec.Cmd {
		full := append(append([]string{}, as...), args...)
		return exec.Command(full[0], full[1:]...)
	}
	if out, err := cmd(initdb, "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8").CombinedOutput(); err != nil {
		return "", fmt.Errorf("initdb: %v: %s", err, out)
	}
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", port, dir)
	if out, err := cmd(pgctl, "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "start").CombinedOutput(); err != nil {
		return "", fmt.Errorf("pg_ctl start: %v: %s", err, out)
	}
	stopCluster = func() {
		_ = cmd(pgctl, "-D", data, "-m", "immediate", "stop").Run()
		_ = os.RemoveAll(dir)
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port), nil
}

var stopCluster = func() {}

// StopPostgres stops the throwaway cluster, if this test binary started one.
// Packages that use Postgres call it from TestMain after m.Run.
func StopPostgres() { stopCluster() }

func findPGBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(matches) > 0 {
		return matches[len(matches)-1], nil
	}
	return "", fmt.Errorf("%s not found on PATH or in /usr/lib/postgresql/*/bin", name)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// PostgresRoles is a fresh database (as Postgres) with the two roles the
// PostgreSQL backends expect: owner, which owns the database and runs the
// migrations, and app, which the application connects as: it logs in, owns
// nothing, is neither superuser nor BYPASSRLS, and is no member of owner. Both
// roles are named after the database, so parallel tests never share one, and
// are dropped when the test ends.
func PostgresRoles(t testing.TB) (ownerURL, appURL string) {
	t.Helper()
	super := Postgres(t)
	u, err := url.Parse(super)
	if err != nil {
		t.Fatalf("parsing %s: %v", redactURL(super), err)
	}
	db := u.Path[1:]
	owner, app := db+"_owner", db+"_app"

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, super)
	if err != nil {
		t.Fatalf("connecting to the test database: %v", err)
	}
	defer conn.Close(context.Background())
	for _, stmt := range []string{
		"CREATE ROLE " + owner + " LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB",
		"CREATE ROLE " + app + " LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB NOINHERIT",
		"ALTER DATABASE " + db + " OWNER TO " + owner,
		"ALTER SCHEMA public OWNER TO " + owner,
		"REVOKE ALL ON SCHEMA public FROM PUBLIC",
		"GRANT USAGE ON SCHEMA public TO " + app,
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatalf("setting up roles (%s): %v", stmt, err)
		}
	}
	// Cleanups run last-registered first, so this runs before Postgres's own:
	// drop the database here, then the roles nothing depends on any more.
	t.Cleanup(func() {
		server, _ := postgresServer()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, server)
		if err != nil {
			t.Errorf("dropping test roles: %v", err)
			return
		}
		defer conn.Close(context.Background())
		for _, stmt := range []string{
			"DROP DATABASE IF EXISTS " + db + " WITH (FORCE)",
			"DROP ROLE IF EXISTS " + owner,
			"DROP ROLE IF EXISTS " + app,
		} {
			if _, err := conn.Exec(ctx, stmt); err != nil {
				t.Errorf("dropping test roles (%s): %v", stmt, err)
			}
		}
	})
	withUser := func(name string) string {
		v := *u
		v.User = url.User(name)
		return v.String()
	}
	return withUser(owner), withUser(app)
}
