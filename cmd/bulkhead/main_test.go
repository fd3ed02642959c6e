package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/testenv"
)

// lockedBuffer is a bytes.Buffer safe for a server goroutine to write while
// the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// TestMain runs the tests, or, in a process a test started with
// serveArgsEnv set, `bulkhead` itself (see startServerProcess).
func TestMain(m *testing.M) {
	if v := os.Getenv(serveArgsEnv); v != "" {
		var args []string
		if err := json.Unmarshal([]byte(v), &args); err != nil {
			fmt.Fprintln(os.Stderr, "bad", serveArgsEnv, err)
			os.Exit(2)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := run(ctx, args, os.Getenv, os.Stdout, os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	testenv.StopPostgres()
	os.Exit(code)
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// envMap is a getenv that sees only the given variables, so tests do not
// depend on the environment they run in.
func envMap(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatalf("close probe listener: %v", err)
	}
	return addr
}

// startServer runs `bulkhead serve` in-process on a fresh data directory and
// returns its URL and admin token. It stops when the test ends.
func startServer(t *testing.T) (base, adminToken string) {
	t.Helper()
	var raw [16]byte
	rand.Read(raw[:])
	adminToken = "bka_test_" + hex.EncodeToString(raw[:])
	base, stop := startServerWith(t, t.TempDir(), map[string]string{"BULKHEAD_ADMIN_TOKEN": adminToken})
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("run(serve) = %v, want nil after cancel", err)
		}
	})
	return base, adminToken
}

// startServerWith runs `bulkhead serve` on dataDir (with no --data flag if
// empty) with env and waits until it is healthy. stop cancels it and returns
// what run returned.
func startServerWith(t *testing.T, dataDir string, env map[string]string, extraArgs ...string) (base string, stop func() error) {
	t.Helper()
	base, stop, _ = startServerLogged(t, dataDir, env, extraArgs...)
	return base, stop
}

// startServerLogged is startServerWith that also returns the server's log.
func startServerLogged(t *testing.T, dataDir string, env map[string]string, extraArgs ...string) (base string, stop func() error, logs *lockedBuffer) {
	t.Helper()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	logs = &lockedBuffer{}
	errc := make(chan error, 1)
	args := []string{"serve", "--addr", addr}
	if dataDir != "" {
		args = append(args, "--data", dataDir)
	}
	go func() {
		errc <- run(ctx, append(args, extraArgs...), envMap(env), io.Discard, logs)
	}()
	var stopped bool
	var stopErr error
	stop = func() error {
		if stopped {
			return stopErr
		}
		stopped = true
		cancel()
		select {
		case stopErr = <-errc:
		case <-time.After(20 * time.Second):
			stopErr = errors.New("run(serve) did not return within 20s of cancel")
		}
		if stopErr != nil || t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
		return stopErr
	}
	t.Cleanup(func() { stop() })

	base = "http://" + addr
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-errc:
			errc <- err // let stop see it too
			t.Fatalf("server exited before it was ready: %v\nlog:\n%s", err, logs.String())
		default:
		}
		resp, err := client.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base, stop, logs
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server at %s not healthy after 15s (last error %v)\nlog:\n%s", base, err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func call(t testing.TB, method, url, token string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatalf("encode %s %s body: %v", method, url, err)
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatalf("build %s %s: %v", method, url, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, b
}

// createTenantKey creates a tenant over the admin API and returns a new key
// for it.
func createTenantKey(t testing.TB, base, admin string, tenant map[string]any) string {
	t.Helper()
	id, _ := tenant["id"].(string)
	if status, b := call(t, http.MethodPost, base+"/admin/v1/tenants", admin, tenant); status != http.StatusCreated {
		t.Fatalf("create tenant %s: status %d, want %d: %s", id, status, http.StatusCreated, b)
	}
	status, b := call(t, http.MethodPost, base+"/admin/v1/tenants/"+id+"/keys", admin, nil)
	if status != http.StatusCreated {
		t.Fatalf("create key for %s: status %d, want %d: %s", id, status, http.StatusCreated, b)
	}
	var k struct{ ID, Key string }
	if err := json.Unmarshal(b, &k); err != nil || k.Key == "" || k.ID == "" {
		t.Fatalf("create key for %s: response %s: want {\"id\",\"key\"} (err %v)", id, b, err)
	}
	return k.Key
}

func TestDemo(t *testing.T) {
	t.Parallel()
	var stdout, stderr lockedBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := run(ctx, []string{"demo"}, envMap(nil), &stdout, &stderr)
	out := stdout.String()
	if err != nil {
		t.Fatalf("run(demo) = %v, want nil\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}
	for _, want := range []string{"All", "checks passed"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output does not contain %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "FAILED") {
		t.Errorf("demo output reports a failed check:\n%s", out)
	}
}

// cliSecret is the secret value TestAdminCLI sets.
const cliSecret = "globex-crm-token-0d9e71"

func TestAdminCLI(t *testing.T) {
	t.Parallel()
	base, admin := startServer(t)
	secretFile := filepath.Join(t.TempDir(), "secret")
	shortFile := filepath.Join(t.TempDir(), "short")
	for path, v := range map[string]string{secretFile: cliSecret + "\n", shortFile: "abc"} {
		if err := os.WriteFile(path, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{"BULKHEAD_SERVER": base, "BULKHEAD_ADMIN_TOKEN": admin}
	const prompt = "You are Globex's agent."

	var key struct{ ID, Key string }
	// wantStatus checks what the tenant API says to the key created below.
	wantStatus := func(want int) func(t *testing.T, out string) {
		return func(t *testing.T, _ string) {
			t.Helper()
			if status, b := call(t, http.MethodGet, base+"/v1/models", key.Key, nil); status != want {
				t.Errorf("GET /v1/models with the CLI-made key: status %d, want %d: %s", status, want, b)
			}
		}
	}

	// The steps run in order against one server; later ones use what earlier
	// ones created. "{key_id}" in args is replaced by the created key's id.
	steps := []struct {
		name    string
		env     map[string]string // overrides env
		args    []string
		wantOut []string // substrings of stdout
		wantErr string   // substring of the error; "" means success
		check   func(t *testing.T, out string)
	}{
		{name: "create", args: []string{"tenant", "create", "globex", "--system-prompt", prompt},
			wantOut: []string{`"id": "globex"`, `"system_prompt": "You are Globex's agent."`, `"status": "active"`}},
		{name: "create again", args: []string{"tenant", "create", "globex"}, wantErr: "409"},
		{name: "list", args: []string{"tenant", "list"}, wantOut: []string{`"id": "globex"`}},
		{name: "get", args: []string{"tenant", "get", "globex"},
			wantOut: []string{`"id": "globex"`, `"system_prompt": "You are Globex's agent."`}},
		{name: "key create", args: []string{"key", "create", "globex"}, wantOut: []string{`"key": "bk_`},
			check: func(t *testing.T, out string) {
				if err := json.Unmarshal([]byte(out), &key); err != nil || key.ID == "" || key.Key == "" {
					t.Fatalf("key create output %q: want JSON with id and key (err %v)", out, err)
				}
				wantStatus(http.StatusOK)(t, out)
			}},
		{name: "key list", args: []string{"key", "list", "--tenant", "globex"}, wantOut: []string{`"id": "{key_id}"`, `"revoked_at": null`},
			check: func(t *testing.T, out string) {
				if strings.Contains(out, key.Key[len("bk_")+17:]) {
					t.Errorf("key list shows the key's secret: %s", out)
				}
			}},
		{name: "key list, tenant first", args: []string{"key", "list", "globex"}, wantOut: []string{`"id": "{key_id}"`}},
		{name: "key list, no tenant", args: []string{"key", "list"}, wantErr: "--tenant"},
		{name: "key list, two tenants", args: []string{"key", "list", "acme", "--tenant", "globex"}, wantErr: "two tenants"},
		{name: "key list, missing tenant", args: []string{"key", "list", "--tenant", "nosuch"}, wantErr: "not found"},
		{name: "suspend", args: []string{"tenant", "update", "globex", "--status", "suspended"},
			wantOut: []string{`"status": "suspended"`, `"system_prompt": "You are Globex's agent."`},
			check:   wantStatus(http.StatusForbidden)},
		{name: "bad status", args: []string{"tenant", "update", "globex", "--status", "sleeping"}, wantErr: "400"},
		{name: "secret set", args: []string{"secret", "set", "globex", "crm_token", "--from-file", "{secret_file}"}, wantOut: []string{"ok"}},
		{name: "secret short", args: []string{"secret", "set", "globex", "crm_token", "--from-file", "{short_file}"}, wantErr: "at least"},
		{name: "export shows no value", args: []string{"tenant", "export", "globex"}, wantOut: []string{`"crm_token"`},
			check: func(t *testing.T, out string) {
				if strings.Contains(out, cliSecret) {
					t.Errorf("export shows the secret value: %s", out)
				}
			}},
		{name: "secret delete", args: []string{"secret", "delete", "globex", "crm_token"}, wantOut: []string{"ok"}},
		{name: "secret delete again", args: []string{"secret", "delete", "globex", "crm_token"}, wantErr: "not found"},
		{name: "key revoke", args: []string{"key", "revoke", "globex", "{key_id}"}, wantOut: []string{"ok"},
			check: wantStatus(http.StatusUnauthorized)},
		{name: "key list after revoke", args: []string{"key", "list", "--tenant", "globex"}, wantOut: []string{`"id": "{key_id}"`, `"revoked_at": "20`}},
		{name: "delete", args: []string{"tenant", "delete", "globex"}, wantOut: []string{"ok"}},
		{name: "get deleted", args: []string{"tenant", "get", "globex"}, wantErr: "not found"},
		{name: "get missing", args: []string{"tenant", "get", "nosuch"}, wantErr: "not found"},
		{name: "key for missing tenant", args: []string{"key", "create", "nosuch"}, wantErr: "not found"},
		{name: "no admin token", env: map[string]string{"BULKHEAD_ADMIN_TOKEN": ""},
			args: []string{"tenant", "list"}, wantErr: "BULKHEAD_ADMIN_TOKEN"},
		{name: "wrong admin token", env: map[string]string{"BULKHEAD_ADMIN_TOKEN": "bka_wrong"},
			args: []string{"tenant", "list"}, wantErr: "401"},
		{name: "server flag wins", env: map[string]string{"BULKHEAD_SERVER": "http://127.0.0.1:1"},
			args: []string{"tenant", "list", "--server", base}, wantOut: []string{`"object": "list"`}},
	}
	for _, st := range steps {
		ok := t.Run(st.name, func(t *testing.T) {
			vars := map[string]string{}
			for k, v := range env {
				vars[k] = v
			}
			for k, v := range st.env {
				vars[k] = v
			}
			args := make([]string, len(st.args))
			for i, a := range st.args {
				args[i] = strings.NewReplacer("{key_id}", key.ID, "{secret_file}", secretFile, "{short_file}", shortFile).Replace(a)
			}
			var stdout, stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := run(ctx, args, envMap(vars), &stdout, &stderr)
			out := stdout.String()
			switch {
			case st.wantErr == "" && err != nil:
				t.Fatalf("run(%q) = %v, want nil\nstdout:\n%s", args, err, out)
			case st.wantErr != "" && err == nil:
				t.Fatalf("run(%q) = nil, want an error containing %q\nstdout:\n%s", args, st.wantErr, out)
			case st.wantErr != "" && !strings.Contains(err.Error(), st.wantErr):
				t.Fatalf("run(%q) = %v, want an error containing %q", args, err, st.wantErr)
			}
			for _, want := range st.wantOut {
				want = strings.ReplaceAll(want, "{key_id}", key.ID)
				if !strings.Contains(out, want) {
					t.Errorf("run(%q) output does not contain %q:\n%s", args, want, out)
				}
			}
			if st.check != nil {
				st.check(t, out)
			}
		})
		if !ok {
			t.Fatalf("step %q failed; later steps depend on it", st.name)
		}
	}
}
