package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/control/controltest"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/testenv"
	"github.com/bulkhead-ai/bulkhead/internal/tools"
)

// TestRecordsSQLiteToPostgres moves a SQLite control plane's records into
// PostgreSQL as stored: the same tenants with the same wrapped data keys,
// live keys that still authenticate their own tenant, a revoked key that
// still does not, the same tools; and a second import is refused.
func TestRecordsSQLiteToPostgres(t *testing.T) {
	ctx := context.Background()
	kek := controltest.NewKEK(t)
	src, err := control.Open(ctx, filepath.Join(t.TempDir(), "control.db"), kek, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	acme := controltest.NewTenant("acme", "You are acme.")
	acme.Policy, acme.AllowedHosts, acme.Canaries = `forbid (principal, action, resource);`, []string{"example.com"}, []string{"canary-acme"}
	for _, tn := range []control.Tenant{acme, controltest.NewTenant("globex", "You are globex.")} {
		if _, err := src.CreateTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
	}
	live, _ := controltest.AddKey(t, src, "acme")
	revoked, _ := controltest.AddKey(t, src, "acme")
	globexKey, _ := controltest.AddKey(t, src, "globex")
	if err := src.RevokeKey(ctx, "acme", revoked); err != nil {
		t.Fatal(err)
	}
	for _, d := range []tools.Definition{tool("crm_lookup", ""), tool("globex_export", "globex")} {
		if _, err := src.CreateTool(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := src.ExportRecords(ctx)
	if err != nil {
		t.Fatal(err)
	}

	owner, app := testenv.PostgresRoles(t)
	dst, err := control.OpenPostgres(ctx, control.PostgresOptions{URL: app, OwnerURL: owner}, kek, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if err := dst.ImportRecords(ctx, recs); err != nil {
		t.Fatal(err)
	}

	if got, want := mustJSON(t, dst.Tenants()), mustJSON(t, src.Tenants()); got != want {
		t.Errorf("tenants differ:\n got %s\nwant %s", got, want)
	}
	if got, want := mustJSON(t, dst.Tools()), mustJSON(t, src.Tools()); got != want {
		t.Errorf("tools differ:\n got %s\nwant %s", got, want)
	}
	for _, tt := range []struct {
		key   tenant.KeyID
		owner tenant.ID // "" when the key must not authenticate
	}{{live, "acme"}, {globexKey, "globex"}, {revoked, ""}} {
		rec, ok := dst.KeyRecord(tt.key)
		if ok != (tt.owner != "") || (ok && rec.Tenant != tt.owner) {
			t.Errorf("key %s after import: %+v, %v; want owner %q", tt.key, rec, ok, tt.owner)
		}
	}
	// The wrapped data keys are the stored bytes, not rewrapped.
	for _, tn := range src.Tenants() {
		w, err := dst.WrappedKey(ctx, tn.Incarnation())
		if err != nil || string(w) != string(tn.WrappedKey) {
			t.Errorf("wrapped key of %s: %x (%v), want %x", tn.ID, w, err, tn.WrappedKey)
		}
	}

	// Into a control plane with tenants: refused, nothing written.
	if err := dst.ImportRecords(ctx, recs); !errors.Is(err, kind.Conflict) {
		t.Errorf("second import: %v, want kind.Conflict", err)
	}
	if n := len(dst.Tenants()); n != 2 {
		t.Errorf("%d tenants after the refused import, want 2", n)
	}
	// SQLite is only a source, PostgreSQL only a target.
	if err := src.ImportRecords(ctx, recs); err == nil {
		t.Error("SQLite imported records")
	}
	if _, err := dst.ExportRecords(ctx); err == nil {
		t.Error("PostgreSQL exported records")
	}
}

func tool(name string, owner tenant.ID) tools.Definition {
	return tools.Definition{Name: name, Description: "d", Scope: tools.ScopeTenant, Owner: owner,
		Parameters: json.RawMessage(`{"type":"object","properties":{"q":{"type":"string"}}}`),
		HTTP:       &tools.HTTPSpec{Method: "POST", URL: "http://127.0.0.1:9/x"}}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
