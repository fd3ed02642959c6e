package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/testenv"
)

// TestRestartKeepsGuardAndAuditsRefusals restarts the server on the same data
// directory: what tenants stored before the restart must still be recognized
// by the output guard, and a request with a wrong key secret lands in the
// key's tenant's audit log.
func TestRestartKeepsGuardAndAuditsRefusals(t *testing.T) {
	dir := t.TempDir()
	const admin = "bka_test_restart_admin_token_123"
	env := map[string]string{"BULKHEAD_ADMIN_TOKEN": admin}
	memo := "Globex strategy memo: the magnet division will quietly acquire the northern ore company before the autumn board meeting."

	base, stop := startServerWith(t, dir, env)
	acmeKey := createTenantKey(t, base, admin, map[string]any{"id": "acme"})
	globexKey := createTenantKey(t, base, admin, map[string]any{"id": "globex"})
	if status, b := call(t, http.MethodPost, base+"/v1/documents", globexKey, map[string]any{"text": memo}); status != http.StatusCreated {
		t.Fatalf("globex document: %d %s", status, b)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	base, _, logs := startServerLogged(t, dir, env)
	say := "/say I overheard that the magnet division will quietly acquire the northern ore company before the autumn board meeting."
	var got string
	// The guard indexes stored text in the background after a start; the
	// answer is never withheld (the guard is no oracle), but the operator's
	// log hears of it.
	heard := "tenant=acme owners=[globex]"
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		status, b := call(t, http.MethodPost, base+"/v1/chat/completions", acmeKey,
			map[string]any{"model": "default", "messages": []map[string]string{{"role": "user", "content": say}}})
		if status != http.StatusOK {
			t.Fatalf("chat: %d %s", status, b)
		}
		var resp struct {
			Choices []struct{ Message struct{ Content string } }
		}
		json.Unmarshal(b, &resp)
		got = resp.Choices[0].Message.Content
		if got != strings.TrimPrefix(say, "/say ") {
			t.Fatalf("after restart, acme's answer repeating globex's memo: %q, want it unchanged", got)
		}
		if strings.Contains(logs.String(), heard) {
			break
		}
	}
	if !strings.Contains(logs.String(), heard) {
		t.Fatalf("after restart, the operator's log has no %q", heard)
	}

	// A wrong secret for acme's key id: refused, and audited in acme's log.
	forged := acmeKey[:len(acmeKey)-4] + "AAAA"
	if forged == acmeKey {
		forged = acmeKey[:len(acmeKey)-4] + "BBBB"
	}
	if status, _ := call(t, http.MethodGet, base+"/v1/models", forged, nil); status != http.StatusUnauthorized {
		t.Fatalf("forged secret: status %d, want 401", status)
	}
	status, b := call(t, http.MethodGet, base+"/admin/v1/tenants/acme/audit", admin, nil)
	if status != http.StatusOK || !strings.Contains(string(b), `"auth.failure"`) {
		t.Fatalf("acme's audit log after a refused key: %d %s", status, b)
	}
	if _, b := call(t, http.MethodGet, base+"/admin/v1/tenants/globex/audit", admin, nil); strings.Contains(string(b), "auth.failure") {
		t.Fatalf("globex's log has acme's refusal: %s", b)
	}
}

// TestEmbedderPerTenant gives one tenant a different embedding model (another
// dimension) from the server's default; both search their own documents.
func TestEmbedderPerTenant(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bulkhead.yaml")
	if err := os.WriteFile(cfg, []byte("embedders:\n  small:\n    type: offline\n    dim: 64\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const admin = "bka_test_embedder_admin_token_12"
	base, _ := startServerWith(t, filepath.Join(dir, "data"), map[string]string{"BULKHEAD_ADMIN_TOKEN": admin}, "--config", cfg)
	keys := map[string]string{
		"acme":   createTenantKey(t, base, admin, map[string]any{"id": "acme", "embedder": "small"}),
		"globex": createTenantKey(t, base, admin, map[string]any{"id": "globex"}),
	}
	for id, key := range keys {
		if status, b := call(t, http.MethodPost, base+"/v1/documents", key, map[string]any{"text": "The " + id + " warehouse ships zorbaxes on Mondays."}); status != http.StatusCreated {
			t.Fatalf("%s document: %d %s", id, status, b)
		}
		status, b := call(t, http.MethodPost, base+"/v1/search", key, map[string]any{"query": "zorbax shipping day", "mode": "vector"})
		if status != http.StatusOK || !strings.Contains(string(b), id+" warehouse") {
			t.Fatalf("%s vector search: %d %s", id, status, b)
		}
	}
	if status, _ := call(t, http.MethodPost, base+"/admin/v1/tenants", admin, map[string]any{"id": "initech", "embedder": "nosuch"}); status != http.StatusBadRequest {
		t.Fatalf("unknown embedder: status %d, want 400", status)
	}
}

// TestRefusedKeyFloodIsAggregated sends 1,000 requests naming globex's key id
// with a wrong secret, as anyone can: globex's log must get a bounded number
// of records that count them, not one hash-chained record each.
func TestRefusedKeyFloodIsAggregated(t *testing.T) {
	base, admin := startServer(t)
	globexKey := createTenantKey(t, base, admin, map[string]any{"id": "globex"})
	forged := globexKey[:len(globexKey)-4] + "AAAA"
	if forged == globexKey {
		forged = globexKey[:len(globexKey)-4] + "BBBB"
	}
	const flood = 1000
	for range flood {
		if status, _ := call(t, http.MethodGet, base+"/v1/models", forged, nil); status != http.StatusUnauthorized {
			t.Fatalf("forged secret: status %d, want 401", status)
		}
	}
	status, b := call(t, http.MethodGet, base+"/admin/v1/tenants/globex/audit", admin, nil)
	if status != http.StatusOK {
		t.Fatalf("globex's audit log: %d %s", status, b)
	}
	var log struct {
		Data []struct {
			Type string
			Data struct{ Count int }
		}
	}
	if err := json.Unmarshal(b, &log); err != nil {
		t.Fatal(err)
	}
	var records, counted int
	for _, r := range log.Data {
		if r.Type == "auth.failure" {
			records++
			counted += max(r.Data.Count, 1)
		}
	}
	// The flood may straddle a minute boundary: two windows, two records.
	if records < 1 || records > 2 {
		t.Fatalf("globex's log has %d auth.failure records for %d refused requests, want 1 or 2", records, flood)
	}
	if counted != flood {
		t.Fatalf("auth.failure records count %d refused requests, want %d", counted, flood)
	}
}

// TestRelativeDataDir runs the commands that take a data directory from a
// working directory of their own, with relative paths as the README writes
// them (--data ./data) and with the default (./bulkhead-data). A relative path
// once became the URI file://data/control.db, which SQLite refused ("invalid
// uri authority: data"). Not parallel: it changes the working directory.
func TestRelativeDataDir(t *testing.T) {
	t.Chdir(t.TempDir())
	const admin = "bka_test_relative_admin_token_12"
	env := map[string]string{"BULKHEAD_ADMIN_TOKEN": admin}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	base, stop := startServerWith(t, "./data", env)
	key := createTenantKey(t, base, admin, map[string]any{"id": "acme"})
	if status, b := call(t, http.MethodPost, base+"/v1/documents", key, map[string]any{"text": "Relative paths ZEBRA work."}); status != http.StatusCreated {
		t.Fatalf("add a document: %d %s", status, b)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"data/control.db", "data/master_key"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("serve --data ./data: %v", err)
		}
	}

	var out bytes.Buffer
	if err := run(ctx, []string{"keyring", "rotate", "--data", "./data"}, envMap(nil), &out, &out); err != nil {
		t.Fatalf("keyring rotate --data ./data: %v\n%s", err, out.String())
	}
	base, stop = startServerWith(t, "data", env)
	if status, b := call(t, http.MethodPost, base+"/v1/search", key, map[string]any{"query": "ZEBRA", "mode": "lexical"}); status != http.StatusOK || !bytes.Contains(b, []byte("ZEBRA")) {
		t.Fatalf("search after rotation, serve --data data: %d %s", status, b)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// No --data: the default, ./bulkhead-data.
	base, stop = startServerWith(t, "", env)
	createTenantKey(t, base, admin, map[string]any{"id": "globex"})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("bulkhead-data/control.db"); err != nil {
		t.Errorf("serve with the default data directory: %v", err)
	}

	t.Run("migrate", func(t *testing.T) {
		ownerURL, appURL := testenv.PostgresRoles(t)
		env := envMap(map[string]string{"BULKHEAD_ADMIN_TOKEN": admin, "BULKHEAD_DATABASE_OWNER_URL": ownerURL})
		var out bytes.Buffer
		if err := run(ctx, []string{"migrate", "--from", "./data", "--to", appURL}, env, &out, &out); err != nil {
			t.Fatalf("migrate --from ./data: %v\n%s", err, out.String())
		}
		if !strings.Contains(out.String(), "tenant acme: copied and checked") {
			t.Errorf("migrate --from ./data output has no line for acme:\n%s", out.String())
		}
	})
}
