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
)

func TestAuditVerify(t *testing.T) {
	t.Parallel()
	base, admin := startServer(t)
	createTenantKey(t, base, admin, map[string]any{"id": "acme"})
	call(t, http.MethodPut, base+"/admin/v1/tenants/acme/secrets/crm", admin, map[string]string{"value": "acme-crm-token-12345"})
	env := envMap(map[string]string{"BULKHEAD_SERVER": base, "BULKHEAD_ADMIN_TOKEN": admin})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var out bytes.Buffer
	if err := run(ctx, []string{"audit", "verify", "--tenant", "acme"}, env, &out, &out); err != nil {
		t.Fatalf("verify: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "3 records verified") {
		t.Fatalf("verify output: %s", out.String())
	}

	// Offline: a saved copy verifies; each kind of tampering does not.
	status, body := call(t, http.MethodGet, base+"/admin/v1/tenants/acme/audit", admin, nil)
	if status != http.StatusOK {
		t.Fatalf("GET audit: %d", status)
	}
	var page struct{ Data []map[string]any }
	if err := json.Unmarshal(body, &page); err != nil || len(page.Data) != 3 {
		t.Fatalf("audit page: %s", body)
	}
	dir := t.TempDir()
	write := func(name string, recs []map[string]any) string {
		b, _ := json.Marshal(map[string]any{"data": recs})
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	clone := func() []map[string]any {
		var c []map[string]any
		b, _ := json.Marshal(page.Data)
		json.Unmarshal(b, &c)
		return c
	}
	edited := clone()
	edited[1]["type"] = "secret.delete"
	reordered := clone()
	reordered[1], reordered[2] = reordered[2], reordered[1]
	removed := append(clone()[:1], clone()[2:]...)
	for name, tc := range map[string]struct {
		recs []map[string]any
		ok   bool
	}{"intact": {clone(), true}, "edited": {edited, false}, "reordered": {reordered, false}, "removed": {removed, false}} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(ctx, []string{"audit", "verify", write(name+".json", tc.recs)}, env, &out, &out)
			if (err == nil) != tc.ok {
				t.Fatalf("verify %s: err = %v, want ok=%v", name, err, tc.ok)
			}
		})
	}
}
