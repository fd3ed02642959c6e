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

// TestMigrateToPostgres moves a SQLite data directory written through the
// real server into PostgreSQL, serves it from there, and checks that each
// tenant reads its own data, and only its own, with the keys it had.
func TestMigrateToPostgres(t *testing.T) {
	dir := t.TempDir()
	const admin = "bka_test_migrate_admin_token_123"
	base, stop := startServerWith(t, dir, map[string]string{"BULKHEAD_ADMIN_TOKEN": admin})

	tenants := []string{"acme", "globex"}
	keys, docs := map[string]string{}, map[string]string{}
	for _, id := range tenants {
		keys[id] = createTenantKey(t, base, admin, map[string]any{"id": id})
		chat(t, base, keys[id], "remember ORDER-"+id)
		// Fillers, so the document's rare term weighs in BM25.
		for _, text := range []string{"Shipping takes five days.", "Support answers by email.", "Invoices are monthly."} {
			if status, b := call(t, http.MethodPost, base+"/v1/documents", keys[id], map[string]any{"text": text}); status != http.StatusCreated {
				t.Fatalf("add a document for %s: %d %s", id, status, b)
			}
		}
		status, b := call(t, http.MethodPost, base+"/v1/documents", keys[id],
			map[string]any{"text": "The " + id + " handbook: refunds within thirty days, code ZEBRA" + id + "."})
		var doc struct{ ID string }
		if status != http.StatusCreated || json.Unmarshal(b, &doc) != nil || doc.ID == "" {
			t.Fatalf("add document for %s: %d %s", id, status, b)
		}
		docs[id] = doc.ID
		if status, b := call(t, http.MethodPost, base+"/v1/search", keys[id], map[string]any{"query": "ZEBRA" + id, "mode": "lexical"}); status != http.StatusOK || !bytes.Contains(b, []byte("ZEBRA"+id)) {
			t.Fatalf("search in SQLite: %d %s", status, b)
		}
		// Several memories: the copy keeps their ids, and must draw new
		// ones past them.
		for _, text := range []string{"alice prefers email, " + id + " account KIWI" + id, "alice is in Lisbon", "alice pays yearly"} {
			if status, b := call(t, http.MethodPost, base+"/v1/memories", keys[id], map[string]any{"user": "alice", "text": text}); status != http.StatusCreated {
				t.Fatalf("add memory for %s: %d %s", id, status, b)
			}
		}
		if status, b := call(t, http.MethodPut, base+"/admin/v1/tenants/"+id+"/secrets/crm", admin,
			map[string]string{"value": id + "-crm-token-12345"}); status/100 != 2 {
			t.Fatalf("put secret for %s: %d %s", id, status, b)
		}
	}
	// A key revoked before the migration stays revoked after it.
	status, b := call(t, http.MethodPost, base+"/admin/v1/tenants/acme/keys", admin, nil)
	var old struct{ ID, Key string }
	if status != http.StatusCreated || json.Unmarshal(b, &old) != nil {
		t.Fatalf("create a second acme key: %d %s", status, b)
	}
	if status, b := call(t, http.MethodDelete, base+"/admin/v1/tenants/acme/keys/"+old.ID, admin, nil); status/100 != 2 {
		t.Fatalf("revoke it: %d %s", status, b)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	ownerURL, appURL := testenv.PostgresRoles(t)
	env := envMap(map[string]string{"BULKHEAD_ADMIN_TOKEN": admin, "BULKHEAD_DATABASE_OWNER_URL": ownerURL})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, []string{"migrate", "--from", dir, "--to", appURL}, env, &out, &out); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out.String())
	}
	t.Logf("migrate:\n%s", out.String())
	for _, id := range tenants {
		if !strings.Contains(out.String(), "tenant "+id+": copied and checked") {
			t.Fatalf("migrate output has no line for %s:\n%s", id, out.String())
		}
	}
	// Again into the same database: refused, nothing doubled.
	out.Reset()
	err := run(ctx, []string{"migrate", "--from", dir, "--to", appURL}, env, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "already holds tenants") {
		t.Fatalf("migrate into a database with tenants: err = %v, want a refusal\n%s", err, out.String())
	}

	masterKey, err := os.ReadFile(filepath.Join(dir, "master_key"))
	if err != nil {
		t.Fatal(err)
	}
	pgEnv := map[string]string{"BULKHEAD_ADMIN_TOKEN": admin, "BULKHEAD_DATABASE_OWNER_URL": ownerURL,
		"BULKHEAD_MASTER_KEY": strings.TrimSpace(string(masterKey))}
	base, _ = startServerWith(t, t.TempDir(), pgEnv, "--database", appURL)

	for i, id := range tenants {
		other := tenants[1-i]
		key := keys[id]
		t.Run(id, func(t *testing.T) {
			if status, b := call(t, http.MethodGet, base+"/v1/documents/"+docs[id], key, nil); status != http.StatusOK || !bytes.Contains(b, []byte("ZEBRA"+id)) {
				t.Errorf("own document: %d %s", status, b)
			}
			if status, b := call(t, http.MethodPost, base+"/v1/search", key, map[string]any{"query": "ZEBRA" + id, "mode": "lexical"}); status != http.StatusOK || !bytes.Contains(b, []byte("ZEBRA"+id)) {
				t.Errorf("search own document: %d %s", status, b)
			}
			if status, b := call(t, http.MethodGet, base+"/v1/memories?user=alice", key, nil); status != http.StatusOK || !bytes.Contains(b, []byte("KIWI"+id)) || bytes.Contains(b, []byte("KIWI"+other)) {
				t.Errorf("own memories: %d %s", status, b)
			}
			status, b := call(t, http.MethodGet, base+"/admin/v1/tenants/"+id+"/export", admin, nil)
			if status != http.StatusOK || !bytes.Contains(b, []byte("ORDER-"+id)) || !bytes.Contains(b, []byte("KIWI"+id)) || bytes.Contains(b, []byte(other)) {
				t.Errorf("export (history, memories): %d %s", status, b)
			}
			var verify bytes.Buffer
			if err := run(ctx, []string{"audit", "verify", "--tenant", id}, envMap(map[string]string{"BULKHEAD_SERVER": base, "BULKHEAD_ADMIN_TOKEN": admin}), &verify, &verify); err != nil {
				t.Errorf("audit verify: %v\n%s", err, verify.String())
			}

			// The copy takes new writes: a memory (its id drawn past the
			// migrated ones) and a chat turn.
			if status, b := call(t, http.MethodPost, base+"/v1/memories", key, map[string]any{"user": "alice", "text": "after the move " + id}); status != http.StatusCreated {
				t.Errorf("add a memory after the migration: %d %s", status, b)
			}
			chat(t, base, key, "and now ORDER2-"+id)

			// Negative: this tenant's key reaches none of the other's data.
			if status, b := call(t, http.MethodGet, base+"/v1/documents/"+docs[other], key, nil); status != http.StatusNotFound {
				t.Errorf("%s reads %s's document: %d %s", id, other, status, b)
			}
			if _, b := call(t, http.MethodPost, base+"/v1/search", key, map[string]any{"query": "ZEBRA" + other, "mode": "lexical"}); bytes.Contains(b, []byte("ZEBRA"+other)) {
				t.Errorf("%s finds %s's document: %s", id, other, b)
			}
		})
	}
	if status, b := call(t, http.MethodGet, base+"/v1/memories?user=alice", old.Key, nil); status != http.StatusUnauthorized {
		t.Errorf("key revoked before the migration: %d %s, want 401", status, b)
	}
	status, b = call(t, http.MethodGet, base+"/admin/v1/tenants/acme/export", admin, nil)
	if status != http.StatusOK || !bytes.Contains(b, []byte("ORDER2-acme")) {
		t.Errorf("export after new writes: %d %s", status, b)
	}
}

// TestMigrateRefusesMissingData: no data directory, nothing to copy (and no
// master key generated for it).
func TestMigrateRefusesMissingData(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "none")
	err := run(context.Background(), []string{"migrate", "--from", dir, "--to", "postgres://nobody@127.0.0.1:1/none"}, envMap(nil), &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "no data to migrate") {
		t.Fatalf("migrate from a missing directory: err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "master_key")); err == nil {
		t.Fatal("a master key was generated for a directory with no data")
	}
}

// chat sends one chat turn as user alice in session s1.
func chat(t *testing.T, base, key, content string) {
	t.Helper()
	body := map[string]any{"user": "alice", "messages": []map[string]string{{"role": "user", "content": content}}}
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/chat/completions", strings.NewReader(mustJSON(t, body)))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("X-Session-Id", "s1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("chat: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("chat: status %d", resp.StatusCode)
	}
}
