package server

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"github.com/bulkhead-ai/bulkhead/internal/store/sqlite"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/bulkhead-ai/bulkhead/internal/config"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/testenv"
)

// What Open opens, in the order it opens it, with the default configuration
// and with Redis.
var (
	wantOpened = []string{"control plane", "tenant stores", "mcp tool sessions", "tracing",
		"audit log", "key last-used times", "usage records", "refused-key records", "guard text check", "guard index of stored text"}
	wantOpenedRedis = slices.Insert(slices.Clone(wantOpened), 2, "redis client")
)

// testRedisConfig returns a Redis configuration for BULKHEAD_TEST_REDIS
// (host:port; default 127.0.0.1:6379) under a fresh prefix, whose keys are
// deleted when the test ends.
func testRedisConfig(t *testing.T) *config.Redis {
	t.Helper()
	addr := cmpOr(os.Getenv("BULKHEAD_TEST_REDIS"), "127.0.0.1:6379")
	client := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second})
	err := client.Ping(t.Context()).Err()
	testenv.Require(t, "Redis", err == nil, "start redis-server or set BULKHEAD_TEST_REDIS")
	prefix := "bulkhead-test-open-" + rand.Text()
	t.Cleanup(func() {
		ctx := context.Background()
		for iter := client.Scan(ctx, 0, prefix+":*", 1000).Iterator(); iter.Next(ctx); {
			client.Del(ctx, iter.Val())
		}
		client.Close()
	})
	return &config.Redis{Addr: addr, Prefix: prefix}
}

// leakCheck records the open file descriptors and goroutines, and checks
// both are back to that when called again.
func leakCheck(t *testing.T) func() {
	t.Helper()
	fds := func() int {
		entries, err := os.ReadDir("/proc/self/fd")
		testenv.Require(t, "/proc/self/fd", err == nil, "counting open files needs Linux's /proc")
		return len(entries)
	}
	fdsBefore, goBefore := fds(), runtime.NumGoroutine()
	return func() {
		t.Helper()
		// Closed goroutines (database/sql's, the HTTP transport's) exit
		// just after Close returns: wait for them, not for a fixed time.
		var fdsNow, goNow int
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			fdsNow, goNow = fds(), runtime.NumGoroutine()
			if (fdsNow <= fdsBefore && goNow <= goBefore) || time.Now().After(deadline) {
				break
			}
		}
		if fdsNow > fdsBefore {
			t.Errorf("open files: %d before, %d after; want none left open", fdsBefore, fdsNow)
		}
		if goNow > goBefore {
			buf := make([]byte, 1<<20)
			t.Errorf("goroutines: %d before, %d after; want none left running:\n%s", goBefore, goNow, buf[:runtime.Stack(buf, true)])
		}
	}
}

func testOptions(t *testing.T, dir string) Options {
	t.Helper()
	key, err := keyring.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return Options{DataDir: dir, AdminToken: testAdminToken, MasterKey: key}
}

// TestOpenCloseReleasesEverything opens a server, stores a document, and
// closes it: every resource is released once, newest first, and no file or
// goroutine is left. The data directory opens again afterwards with the
// document still there.
func TestOpenCloseReleasesEverything(t *testing.T) {
	tests := []struct {
		name       string
		redis      bool
		wantOpened []string
	}{
		{"in-process limits and cache", false, wantOpened},
		{"redis", true, wantOpenedRedis},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testOptions(t, t.TempDir())
			if tt.redis {
				o.Config.Redis = testRedisConfig(t)
			}
			checkOpenClose(t, o, tt.wantOpened)
		})
	}
}

func checkOpenClose(t *testing.T, o Options, wantOpened []string) {
	checkLeaks := leakCheck(t)
	c := &closers{}
	in, err := open(t.Context(), o, c)
	if err != nil {
		t.Fatal(errors.Join(err, c.closeAll()))
	}
	var pushed []string
	for _, cl := range c.stack {
		pushed = append(pushed, cl.name)
	}
	if !slices.Equal(pushed, wantOpened) {
		t.Errorf("opened %q, want %q", pushed, wantOpened)
	}
	var ran []string
	c.ran = func(name string) { ran = append(ran, name) }

	h := in.Handler()
	serve := func(method, path, token string, body any) (int, []byte) {
		t.Helper()
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequestWithContext(t.Context(), method, path, strings.NewReader(string(b)))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.Bytes()
	}
	if code, b := serve("POST", "/admin/v1/tenants", testAdminToken, map[string]any{"id": "acme"}); code != http.StatusCreated {
		t.Fatalf("create tenant: %d %s", code, b)
	}
	code, b := serve("POST", "/admin/v1/tenants/acme/keys", testAdminToken, nil)
	var k struct{ Key string }
	if err := json.Unmarshal(b, &k); code != http.StatusCreated || err != nil {
		t.Fatalf("create key: %d %s", code, b)
	}
	const doc = "acme keeps its launch codes in the blue binder"
	if code, b := serve("POST", "/v1/documents", k.Key, map[string]any{"text": doc}); code != http.StatusCreated {
		t.Fatalf("add document: %d %s", code, b)
	}
	if in.Stores().(*sqlite.DB).OpenHandles() == 0 {
		t.Fatal("no tenant database open after a write; the leak check below would prove nothing")
	}

	if err := in.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	want := slices.Clone(wantOpened)
	slices.Reverse(want)
	if !slices.Equal(ran, want) {
		t.Errorf("closed %q, want %q", ran, want)
	}
	ran = nil
	if err := in.Close(); err != nil || len(ran) != 0 {
		t.Errorf("second Close: closed %q, err %v; want nothing, nil", ran, err)
	}
	checkLeaks()

	again, err := Open(t.Context(), o)
	if err != nil {
		t.Fatalf("open the same data directory again: %v", err)
	}
	h = again.Handler()
	code, b = serve("POST", "/v1/search", k.Key, map[string]any{"query": "launch codes"})
	if code != http.StatusOK || !strings.Contains(string(b), doc) {
		t.Errorf("search after reopening: %d %s, want 200 with the document", code, b)
	}
	if err := again.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestOpenFailureClosesWhatWasOpened makes Open fail at each point where it
// can, and checks it released exactly what it had opened by then, newest
// first, and left no file or goroutine behind.
func TestOpenFailureClosesWhatWasOpened(t *testing.T) {
	tests := []struct {
		name       string
		setup      func(t *testing.T, o *Options) // breaks o or its data directory
		wantErr    string
		wantClosed []string
	}{
		{
			name:    "no data directory",
			setup:   func(t *testing.T, o *Options) { o.DataDir = "" },
			wantErr: "no data directory",
		},
		{
			name: "bad provider config",
			setup: func(t *testing.T, o *Options) {
				o.Config.Providers = []config.Provider{{Name: "x", Type: "bogus"}}
			},
			wantErr: `unknown type "bogus"`,
		},
		{
			name: "bad embedder config",
			setup: func(t *testing.T, o *Options) {
				o.Config.Embedder = config.Embedder{Type: "bogus"}
			},
			wantErr: `unknown type "bogus"`,
		},
		{
			name:    "short master key",
			setup:   func(t *testing.T, o *Options) { o.MasterKey = o.MasterKey[:16] },
			wantErr: "key",
		},
		{
			name: "data directory is a file",
			setup: func(t *testing.T, o *Options) {
				o.DataDir = filepath.Join(o.DataDir, "file")
				writeFile(t, o.DataDir)
			},
			wantErr: "create data directory",
		},
		{
			name: "control database unopenable",
			setup: func(t *testing.T, o *Options) {
				if err := os.Mkdir(filepath.Join(o.DataDir, "control.db"), 0o700); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "control",
		},
		{
			name: "wrong master key for the data",
			setup: func(t *testing.T, o *Options) {
				first := *o
				first.MasterKey = testOptions(t, o.DataDir).MasterKey
				in, err := Open(t.Context(), first)
				if err != nil {
					t.Fatal(err)
				}
				if err := in.Close(); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "master key does not match",
		},
		{
			name:       "tenant store directory unopenable",
			setup:      func(t *testing.T, o *Options) { writeFile(t, filepath.Join(o.DataDir, "tenants")) },
			wantErr:    "tenants",
			wantClosed: []string{"control plane"},
		},
		{
			name:       "admin token too short",
			setup:      func(t *testing.T, o *Options) { o.AdminToken = "short" },
			wantErr:    "admin token",
			wantClosed: []string{"tenant stores", "control plane"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testOptions(t, t.TempDir())
			tt.setup(t, &o)
			checkLeaks := leakCheck(t)
			var closed []string
			c := &closers{ran: func(name string) { closed = append(closed, name) }}
			in, err := open(t.Context(), o, c)
			if err == nil {
				c.closeAll()
				t.Fatalf("open succeeded, want an error holding %q", tt.wantErr)
			}
			if in != nil {
				t.Errorf("open returned an Instance with its error")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("open: got %q, want it to hold %q", err, tt.wantErr)
			}
			if err := c.closeAll(); err != nil {
				t.Errorf("closing after the failure: %v", err)
			}
			if !slices.Equal(closed, tt.wantClosed) {
				t.Errorf("closed %q, want %q", closed, tt.wantClosed)
			}
			checkLeaks()

			// Open itself runs the stack and returns nothing to close.
			if in, err := Open(t.Context(), o); err == nil || in != nil {
				t.Errorf("Open: got %v, %v; want nil and an error", in, err)
			}
			checkLeaks()
		})
	}
}

// TestOpenBadConfigCreatesNothing checks the configuration is refused before
// anything is written to the data directory.
func TestOpenBadConfigCreatesNothing(t *testing.T) {
	o := testOptions(t, filepath.Join(t.TempDir(), "data"))
	o.Config.Providers = []config.Provider{{Name: "up", Type: "openai", BaseURL: "http://127.0.0.1:1/v1", APIKeyEnv: "UP_KEY"}}
	if _, err := Open(t.Context(), o); err == nil || !strings.Contains(err.Error(), "UP_KEY") {
		t.Fatalf("Open: got %v, want the empty UP_KEY refused", err)
	}
	if _, err := os.Stat(o.DataDir); !os.IsNotExist(err) {
		t.Errorf("stat %s: got %v, want it never created", o.DataDir, err)
	}
	o.Getenv = func(k string) string { return map[string]string{"UP_KEY": "k"}[k] }
	in, err := Open(t.Context(), o)
	if err != nil {
		t.Fatalf("Open with UP_KEY set: %v", err)
	}
	if err := in.Close(); err != nil {
		t.Error(err)
	}
	if _, err := fs.Stat(os.DirFS(o.DataDir), "control.db"); err != nil {
		t.Errorf("after a good Open: %v, want control.db", err)
	}
}

func writeFile(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestDeleteCutShortIsFinishedAtStart crashes a PostgreSQL deployment's
// tenant delete between its two steps: the control record is gone (the
// delete took effect), the tenant's rows are not. The next start of any
// replica removes the rows; a delete that ran to its end leaves nothing for
// a start to do.
func TestDeleteCutShortIsFinishedAtStart(t *testing.T) {
	db, env := postgresDatabase(t)
	key, err := keyring.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	first := newTestEnv(t, envOptions{database: db, env: env, masterKey: key})
	for _, id := range []string{"acme", "globex"} {
		first.createTenant(t, map[string]any{"id": id})
		_, k := first.newKey(t, id)
		if r := first.do(t, "POST", "/v1/documents", k, map[string]any{"text": id + " ships rockets on Tuesdays."}, nil); r.status != http.StatusCreated {
			t.Fatalf("ingest for %s: %v", id, r)
		}
	}
	acme, globex := first.incarnation(t, "acme"), first.incarnation(t, "globex")
	owner, err := pgx.Connect(t.Context(), env[config.DefaultOwnerURLEnv])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { owner.Close(context.Background()) })
	rows := func(inc tenant.Incarnation) int {
		t.Helper()
		// As the owner, which row-level security binds too: as the tenant.
		if _, err := owner.Exec(t.Context(), `SELECT set_config('app.tenant_id', $1, false)`, inc.Storage()); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := owner.QueryRow(t.Context(), `SELECT count(*) FROM tenant_data.documents WHERE tenant_id = $1`, inc.Storage()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// globex's delete runs to its end; acme's stops after the commit.
	first.admin(t, "DELETE", "/admin/v1/tenants/globex", nil, http.StatusNoContent)
	if _, err := first.plane.DeleteTenant(t.Context(), "acme"); err != nil {
		t.Fatal(err)
	}
	if rows(acme) == 0 || rows(globex) != 0 {
		t.Fatalf("before the restart: acme has %d rows (want some), globex %d (want 0)", rows(acme), rows(globex))
	}
	left, err := first.plane.DeletedIncarnations(t.Context())
	if err != nil || len(left) != 1 || left[0] != acme {
		t.Fatalf("tombstones before the restart = %v, %v; want acme's only", left, err)
	}

	second := newTestEnv(t, envOptions{database: db, env: env, masterKey: key})
	if n := rows(acme); n != 0 {
		t.Errorf("after a restart, the cut-short delete left %d of acme's rows", n)
	}
	if left, err := second.plane.DeletedIncarnations(t.Context()); err != nil || len(left) != 0 {
		t.Errorf("tombstones after the restart = %v, %v; want none", left, err)
	}
}
