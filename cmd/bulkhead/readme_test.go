package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/bulkhead-ai/bulkhead/internal/testenv"
)

// readmeBlock returns the shell block of README.md between the markers.
func readmeBlock(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "<!-- "+name+":begin -->")
	block, _, ok2 := strings.Cut(rest, "<!-- "+name+":end -->")
	if !ok || !ok2 {
		t.Fatalf("README.md has no %s block", name)
	}
	block = strings.TrimSpace(block)
	block = strings.TrimPrefix(block, "```sh")
	return strings.TrimSuffix(block, "```")
}

// TestReadmeReplicas runs the README's "Running several replicas" commands
// as written, with a bulkhead binary built from this tree, a database and
// ports of the test's own, then checks the replicas share one state: a key
// revoked through one is refused by the other within a second.
func TestReadmeReplicas(t *testing.T) {
	server := testenv.PostgresServer(t)
	_, psqlErr := exec.LookPath("psql")
	testenv.Require(t, "psql", psqlErr == nil, "install postgresql-client")
	redisAddr := os.Getenv("BULKHEAD_TEST_REDIS")
	if redisAddr == "" {
		redisAddr = "127.0.0.1:6379"
	}
	rc := redis.NewClient(&redis.Options{Addr: redisAddr, DialTimeout: time.Second})
	redisErr := rc.Ping(t.Context()).Err()
	rc.Close()
	testenv.Require(t, "Redis", redisErr == nil, "start redis-server or set BULKHEAD_TEST_REDIS")
	su, err := url.Parse(server)
	if err != nil {
		t.Fatal(err)
	}
	if su.Port() != "5432" || su.Hostname() != "127.0.0.1" {
		// The README's URLs name 127.0.0.1:5432, as a reader's server is.
		testenv.Require(t, "PostgreSQL at 127.0.0.1:5432", false, "point BULKHEAD_TEST_POSTGRES_URL at 127.0.0.1:5432")
	}

	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, "bulkhead"), ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	db := fmt.Sprintf("bh_readme_%d", time.Now().UnixNano()%1_000_000_000)
	t.Cleanup(func() { dropReadmeDatabase(t, server, db) })
	port1, port2 := freePort(t), freePort(t)
	const admin = "bka_readme_admin_token_0123456789ab"
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", readmeBlock(t, "replicas"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"PG="+(&url.URL{Scheme: su.Scheme, User: su.User, Host: su.Host}).String(),
		"DB="+db, "REDIS="+redisAddr, "PORT1="+strconv.Itoa(port1), "PORT2="+strconv.Itoa(port2),
		"BULKHEAD_ADMIN_TOKEN="+admin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the README's commands failed: %v\n%s", err, out)
	}
	for _, f := range []string{"replica1", "replica2"} {
		b, err := os.ReadFile(filepath.Join(dir, f+".pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		t.Cleanup(func() {
			syscall.Kill(pid, syscall.SIGTERM)
			if t.Failed() {
				log, _ := os.ReadFile(filepath.Join(dir, f+".log"))
				t.Logf("%s log:\n%s", f, log)
			}
		})
	}
	base1, base2 := fmt.Sprintf("http://127.0.0.1:%d", port1), fmt.Sprintf("http://127.0.0.1:%d", port2)
	for _, base := range []string{base1, base2} {
		waitHealthy(t, base)
	}

	createTenantKey(t, base1, admin, map[string]any{"id": "acme"})
	status, b := call(t, http.MethodPost, base1+"/admin/v1/tenants/acme/keys", admin, nil)
	var k struct{ ID, Key string }
	if err := json.Unmarshal(b, &k); status != http.StatusCreated || err != nil {
		t.Fatalf("create key through replica 1: %d %s", status, b)
	}
	key, keyID := k.Key, k.ID
	start := time.Now()
	for {
		status, _ := call(t, http.MethodGet, base2+"/v1/models", key, nil)
		if status == http.StatusOK {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("replica 2 does not accept a key made through replica 1 after %v", time.Since(start))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if status, b := call(t, http.MethodDelete, base1+"/admin/v1/tenants/acme/keys/"+keyID, admin, nil); status != http.StatusNoContent {
		t.Fatalf("revoke through replica 1: %d %s", status, b)
	}
	start = time.Now()
	for {
		status, _ := call(t, http.MethodGet, base2+"/v1/models", key, nil)
		if status == http.StatusUnauthorized {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("replica 2 still accepts the key revoked through replica 1 after %v", time.Since(start))
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("replica 2 refused the revoked key %v after replica 1 revoked it", time.Since(start))
}

func freePort(t *testing.T) int {
	t.Helper()
	addr := freeAddr(t)
	_, p, _ := strings.Cut(addr, ":")
	n, _ := strconv.Atoi(p)
	return n
}

func waitHealthy(t *testing.T, base string) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := client.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not healthy after 30s", base)
		}
	}
}

// dropReadmeDatabase removes what the README's commands made.
func dropReadmeDatabase(t *testing.T, server, db string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		t.Errorf("cleaning up %s: %v", db, err)
		return
	}
	defer conn.Close(context.Background())
	for _, stmt := range []string{"DROP DATABASE IF EXISTS " + db + " WITH (FORCE)", "DROP ROLE IF EXISTS " + db + "_owner", "DROP ROLE IF EXISTS " + db + "_app"} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Errorf("cleaning up (%s): %v", stmt, err)
		}
	}
}
