package main

import (
	"context"
	"encoding/base64"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
)

// TestCrashMidDeleteCleanedAtStart leaves the state a crash in the middle of
// a tenant delete leaves: the control record (with its keys and wrapped data
// key) committed away, the tenant's files still on disk. The next start
// removes the files; the old key stays refused, and the id can be created
// again empty.
func TestCrashMidDeleteCleanedAtStart(t *testing.T) {
	dir := t.TempDir()
	const admin = "bka_test_crash_delete_admin_token"
	master, err := keyring.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"BULKHEAD_ADMIN_TOKEN": admin, "BULKHEAD_MASTER_KEY": base64.StdEncoding.EncodeToString(master)}
	const fact = "acme's crash-test fact 71c2"

	base, stop := startServerWith(t, dir, env)
	acmeKey := createTenantKey(t, base, admin, map[string]any{"id": "acme"})
	if status, b := call(t, http.MethodPost, base+"/v1/documents", acmeKey, map[string]any{"text": fact}); status != http.StatusCreated {
		t.Fatalf("document: %d %s", status, b)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// The delete's first step, then the "crash": nothing else runs.
	kek, err := keyring.NewLocalKEK(master)
	if err != nil {
		t.Fatal(err)
	}
	plane, err := control.Open(context.Background(), filepath.Join(dir, "control.db"), kek, nil)
	if err != nil {
		t.Fatal(err)
	}
	deleted, err := plane.DeleteTenant(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	if err := plane.Close(); err != nil {
		t.Fatal(err)
	}
	storeDir := filepath.Join(dir, "tenants", deleted.StorageID)
	if _, err := os.Stat(storeDir); err != nil {
		t.Fatalf("before restart, the deleted tenant's files should still be there: %v", err)
	}

	base, _ = startServerWith(t, dir, env)
	if _, err := os.Stat(storeDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after restart, stat %s: got %v, want it removed", storeDir, err)
	}
	if status, _ := call(t, http.MethodGet, base+"/v1/models", acmeKey, nil); status != http.StatusUnauthorized {
		t.Errorf("the deleted tenant's key after restart: status %d, want 401", status)
	}
	newKey := createTenantKey(t, base, admin, map[string]any{"id": "acme"})
	status, b := call(t, http.MethodPost, base+"/v1/search", newKey, map[string]any{"query": "crash-test fact"})
	if status != http.StatusOK || strings.Contains(string(b), fact) {
		t.Errorf("re-created tenant's search: %d %s, want 200 without the old fact", status, b)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "tenants"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == deleted.StorageID {
			t.Errorf("the deleted tenant's store %s is back", e.Name())
		}
	}
}
