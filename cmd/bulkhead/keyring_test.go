package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMasterKey covers the master key's life: generated once into the data
// directory, refused when wrong, rotated without losing data.
func TestMasterKey(t *testing.T) {
	dir := t.TempDir()
	const admin = "bka_test_master_key_admin_token"
	env := map[string]string{"BULKHEAD_ADMIN_TOKEN": admin}

	base, stop := startServerWith(t, dir, env)
	key := createTenantKey(t, base, admin, map[string]any{"id": "acme"})
	chat := map[string]any{"user": "alice", "messages": []map[string]string{{"role": "user", "content": "remember ORDER-4242"}}}
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/chat/completions", strings.NewReader(mustJSON(t, chat)))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("X-Session-Id", "s1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("chat: %v %v", resp, err)
	}
	resp.Body.Close()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "master_key")
	first, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatalf("no generated master key: %v", err)
	}
	if fi, _ := os.Stat(keyFile); fi.Mode().Perm() != 0o600 {
		t.Fatalf("master key file mode %v, want 0600", fi.Mode().Perm())
	}

	// A wrong key fails at start, clearly, instead of serving.
	wrong := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = run(ctx, []string{"serve", "--addr", freeAddr(t), "--data", dir},
		envMap(map[string]string{"BULKHEAD_ADMIN_TOKEN": admin, "BULKHEAD_MASTER_KEY": wrong}), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "master key does not match") {
		t.Fatalf("serve with a wrong master key: err = %v, want a clear refusal", err)
	}
	// So does a data directory whose key file went missing.
	if err := os.Rename(keyFile, keyFile+".aside"); err != nil {
		t.Fatal(err)
	}
	err = run(ctx, []string{"serve", "--addr", freeAddr(t), "--data", dir}, envMap(env), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "no master key") {
		t.Fatalf("serve without the key file: err = %v, want a clear refusal", err)
	}
	if err := os.Rename(keyFile+".aside", keyFile); err != nil {
		t.Fatal(err)
	}

	// Rotation rewraps the data keys; the old data is readable with the new key.
	var out bytes.Buffer
	if err := run(ctx, []string{"keyring", "rotate", "--data", dir}, envMap(nil), &out, &out); err != nil {
		t.Fatalf("keyring rotate: %v\n%s", err, out.String())
	}
	second, err := os.ReadFile(keyFile)
	if err != nil || bytes.Equal(first, second) {
		t.Fatalf("key file after rotation: %v (unchanged: %v)", err, bytes.Equal(first, second))
	}
	err = run(ctx, []string{"serve", "--addr", freeAddr(t), "--data", dir},
		envMap(map[string]string{"BULKHEAD_ADMIN_TOKEN": admin, "BULKHEAD_MASTER_KEY": strings.TrimSpace(string(first))}), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "master key does not match") {
		t.Fatalf("serve with the pre-rotation key: err = %v, want a refusal", err)
	}
	base, _ = startServerWith(t, dir, env)
	status, body := call(t, http.MethodGet, base+"/admin/v1/tenants/acme/export", admin, nil)
	if status != http.StatusOK || !bytes.Contains(body, []byte("ORDER-4242")) {
		t.Fatalf("export after rotation: %d %s", status, body)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
