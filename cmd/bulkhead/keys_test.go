package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestKeyBody(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name, expires string
		want          map[string]any
		wantErr       bool
	}{
		{"", "", nil, false},
		{"ci", "", map[string]any{"name": "ci"}, false},
		{"", "48h", map[string]any{"expires_at": "2026-12-05T12:00:00Z"}, false},
		{"ci", "2027-01-01T00:00:00+01:00", map[string]any{"name": "ci", "expires_at": "2026-12-31T23:00:00Z"}, false},
		{"", "-1h", nil, true},
		{"", "tomorrow", nil, true},
	}
	for _, tt := range tests {
		got, err := keyBody(tt.name, tt.expires, now)
		if (err != nil) != tt.wantErr || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("keyBody(%q, %q) = %v, %v; want %v (error %v)", tt.name, tt.expires, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestKeyCreateAndListWithNameAndExpiry: `bulkhead key create --name
// --expires` makes a named key that `bulkhead key list` shows with its
// expiry and, once used, its last use; and --metrics-addr serves /metrics
// without a token while the main address wants the admin token.
func TestKeyCreateAndListWithNameAndExpiry(t *testing.T) {
	const admin = "bka_test_key_names_admin_token_1"
	metricsAddr := freeAddr(t)
	base, stop := startServerWith(t, t.TempDir(), map[string]string{"BULKHEAD_ADMIN_TOKEN": admin}, "--metrics-addr", metricsAddr)
	t.Cleanup(func() { stop() })
	if status, b := call(t, http.MethodPost, base+"/admin/v1/tenants", admin, map[string]any{"id": "acme"}); status != http.StatusCreated {
		t.Fatalf("create tenant: %d %s", status, b)
	}
	env := envMap(map[string]string{"BULKHEAD_ADMIN_TOKEN": admin, "BULKHEAD_SERVER": base})
	var out bytes.Buffer
	if err := run(t.Context(), []string{"key", "create", "acme", "--name", "support bot", "--expires", "720h"}, env, &out, &out); err != nil {
		t.Fatalf("key create: %v\n%s", err, out.String())
	}
	var made struct{ ID, Key string }
	if err := json.Unmarshal(out.Bytes(), &made); err != nil || made.Key == "" {
		t.Fatalf("key create printed %s (%v)", out.String(), err)
	}
	if status, b := call(t, http.MethodGet, base+"/v1/models", made.Key, nil); status != http.StatusOK {
		t.Fatalf("use the key: %d %s", status, b)
	}
	out.Reset()
	if err := run(t.Context(), []string{"key", "list", "--tenant", "acme"}, env, &out, &out); err != nil {
		t.Fatalf("key list: %v\n%s", err, out.String())
	}
	var list struct {
		Data []struct {
			ID, Name   string
			ExpiresAt  *time.Time `json:"expires_at"`
			LastUsedAt *time.Time `json:"last_used_at"`
		}
	}
	if err := json.Unmarshal(out.Bytes(), &list); err != nil || len(list.Data) != 1 {
		t.Fatalf("key list printed %s (%v)", out.String(), err)
	}
	k := list.Data[0]
	if k.ID != made.ID || k.Name != "support bot" || k.ExpiresAt == nil || k.ExpiresAt.Before(time.Now().Add(719*time.Hour)) || k.LastUsedAt == nil {
		t.Errorf("listed key = %+v, want its name, an expiry in 720h and a last use", k)
	}

	if status, _ := call(t, http.MethodGet, base+"/metrics", "", nil); status != http.StatusUnauthorized {
		t.Errorf("/metrics on --addr without a token: %d, want 401", status)
	}
	status, b := call(t, http.MethodGet, "http://"+metricsAddr+"/metrics", "", nil)
	if status != http.StatusOK || !strings.Contains(string(b), `bulkhead_http_requests_total{route="GET /v1/models",status="200",tenant=""} 1`) {
		t.Errorf("/metrics on --metrics-addr: %d\n%s", status, b)
	}
}
