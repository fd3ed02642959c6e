package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/store/sqlite"
	"github.com/bulkhead-ai/bulkhead/internal/store/storetest"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// locator maps tenants to storage ids; any other tenant is unknown.
type locator map[tenant.ID]string

func (l locator) StorageID(_ context.Context, inc tenant.Incarnation) (string, error) {
	id := inc.Tenant()
	s, ok := l[id]
	if !ok {
		return "", fmt.Errorf("tenant %q: %w", id, store.ErrUnknownTenant)
	}
	return s, nil
}

// keys holds tenants' data keys wrapped by a random master key, as the
// control plane does; ring hands out their Ciphers through a real
// keyring.Ring.
type keys struct {
	kek  *keyring.LocalKEK
	ring *keyring.Ring

	mu      sync.Mutex
	wrapped map[tenant.ID][]byte
}

var _ sqlite.Ciphers = (*keyring.Ring)(nil)

func newKeys(tb testing.TB, ids ...tenant.ID) *keys {
	tb.Helper()
	master, err := keyring.NewKey()
	if err != nil {
		tb.Fatal(err)
	}
	kek, err := keyring.NewLocalKEK(master)
	if err != nil {
		tb.Fatal(err)
	}
	k := &keys{kek: kek, wrapped: map[tenant.ID][]byte{}}
	k.ring = keyring.NewRing(kek, k, 0)
	for _, id := range ids {
		k.replace(tb, id)
	}
	return k
}

// replace gives tenant id a new random data key, as deleting and re-creating
// the tenant would; what the old key sealed no longer opens.
func (k *keys) replace(tb testing.TB, id tenant.ID) {
	tb.Helper()
	dataKey, err := keyring.NewKey()
	if err != nil {
		tb.Fatal(err)
	}
	w, err := keyring.WrapKey(context.Background(), k.kek, id, dataKey)
	if err != nil {
		tb.Fatal(err)
	}
	k.mu.Lock()
	k.wrapped[id] = w
	k.mu.Unlock()
}

// destroy forgets tenant id's data key (crypto-shredding).
func (k *keys) destroy(id tenant.ID) {
	k.mu.Lock()
	delete(k.wrapped, id)
	k.mu.Unlock()
	k.ring.Forget(tenant.Incarnation(id))
}

func (k *keys) WrappedKey(_ context.Context, inc tenant.Incarnation) ([]byte, error) {
	id := inc.Tenant()
	k.mu.Lock()
	defer k.mu.Unlock()
	w, ok := k.wrapped[id]
	if !ok {
		return nil, fmt.Errorf("tenant %q has no data key: %w", id, store.ErrUnknownTenant)
	}
	return w, nil
}

// ciphersFunc adapts a function to sqlite.Ciphers.
type ciphersFunc func(ctx context.Context, id tenant.ID) (*keyring.Cipher, error)

func (f ciphersFunc) Cipher(ctx context.Context, inc tenant.Incarnation) (*keyring.Cipher, error) {
	return f(ctx, inc.Tenant())
}

func open(tb testing.TB, dir string, maxOpen int, l sqlite.Locator, c sqlite.Ciphers) *sqlite.DB {
	tb.Helper()
	db, err := sqlite.Open(sqlite.Options{Dir: dir, MaxOpen: maxOpen, Locator: l, Ciphers: c})
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return db
}

var twoTenants = locator{storetest.Acme: "acme0storage", storetest.Globex: "globex0storage"}

// openTwo opens a store under a new directory in which Acme and Globex have
// data keys, and returns it with the directory.
func openTwo(tb testing.TB) (*sqlite.DB, string) {
	tb.Helper()
	dir := tb.TempDir()
	return open(tb, dir, 0, twoTenants, newKeys(tb, storetest.Acme, storetest.Globex).ring), dir
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		db, _ := openTwo(t)
		return db
	})
}

func TestManyTenantsFewHandles(t *testing.T) {
	const maxOpen, tenants, rounds = 4, 50, 3
	l := locator{}
	for i := range tenants {
		l[tenant.ID(fmt.Sprint("t", i))] = fmt.Sprintf("store%04d", i)
	}
	k := newKeys(t)
	for id := range l {
		k.replace(t, id)
	}
	db := open(t, t.TempDir(), maxOpen, l, k.ring)
	ctx := t.Context()

	var (
		mu   sync.Mutex
		most int
	)
	observe := func() {
		n := db.OpenHandles()
		mu.Lock()
		most = max(most, n)
		mu.Unlock()
	}
	stop := make(chan struct{})
	var watcher sync.WaitGroup
	watcher.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				observe()
			}
		}
	})

	// Every tenant writes a few rounds; with 50 tenants and 4 handles, each
	// round finds its database evicted and reopens it.
	var wg sync.WaitGroup
	for i := range tenants {
		wg.Go(func() {
			scope := authtest.Scope(t, tenant.ID(fmt.Sprint("t", i)), "alice")
			for r := range rounds {
				msg := store.Message{Role: "user", Content: fmt.Sprintf("t%d-r%d", i, r)}
				if err := db.AppendMessages(ctx, scope, "s1", []store.Message{msg}); err != nil {
					t.Errorf("tenant %d round %d: %v", i, r, err)
					return
				}
				observe()
			}
		})
	}
	wg.Wait()
	close(stop)
	watcher.Wait()

	if most > maxOpen {
		t.Errorf("most open handles: got %d, want <= %d", most, maxOpen)
	}
	for i := range tenants {
		scope := authtest.Scope(t, tenant.ID(fmt.Sprint("t", i)), "alice")
		msgs, err := db.Messages(ctx, scope, "s1", 0)
		if err != nil {
			t.Fatalf("tenant %d: %v", i, err)
		}
		var got []string
		for _, m := range msgs {
			got = append(got, m.Content)
		}
		want := []string{fmt.Sprintf("t%d-r0", i), fmt.Sprintf("t%d-r1", i), fmt.Sprintf("t%d-r2", i)}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("tenant %d after eviction: got %q, want %q", i, got, want)
		}
	}
	if got := db.OpenHandles(); got > maxOpen {
		t.Errorf("open handles at the end: got %d, want <= %d", got, maxOpen)
	}
}

func TestDrop(t *testing.T) {
	db, dir := openTwo(t)
	ctx := t.Context()
	acme := authtest.Scope(t, storetest.Acme, "alice")
	globex := authtest.Scope(t, storetest.Globex, "alice")
	for _, scope := range []auth.Scope{acme, globex} {
		if err := db.AppendMessages(ctx, scope, "s1", []store.Message{{Role: "user", Content: "hi"}}); err != nil {
			t.Fatal(err)
		}
	}
	acmeDir := filepath.Join(dir, twoTenants[storetest.Acme])
	if _, err := os.Stat(filepath.Join(acmeDir, "tenant.db")); err != nil {
		t.Fatalf("before Drop: %v", err)
	}

	if err := db.Drop(ctx, twoTenants[storetest.Acme]); err != nil {
		t.Fatalf("Drop: %v", err)
	}
	if _, err := os.Stat(acmeDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Drop, stat %s: got %v, want %v", acmeDir, err, fs.ErrNotExist)
	}
	if got := db.OpenHandles(); got != 1 {
		t.Errorf("open handles after Drop: got %d, want 1 (globex)", got)
	}
	if msgs, err := db.Messages(ctx, globex, "s1", 0); err != nil || len(msgs) != 1 {
		t.Errorf("globex after acme's Drop: got %d messages, %v; want 1, nil", len(msgs), err)
	}
	// The locator still knows acme, so it starts again from an empty database.
	if msgs, err := db.Messages(ctx, acme, "s1", 0); err != nil || len(msgs) != 0 {
		t.Errorf("acme after Drop: got %d messages, %v; want 0, nil", len(msgs), err)
	}
	// Dropping a tenant that was never opened removes nothing and succeeds.
	if err := db.Drop(ctx, "neverused"); err != nil {
		t.Errorf("Drop of an unused storage id: %v", err)
	}
}

// syncBuffer is a log destination for tests.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestLostStoreRefused deletes or truncates acme's database under a running
// store, open in the pool or not, and after a restart: acme's requests fail
// with store.ErrLost and the operator hears it once; nothing is created in
// its place; globex is unaffected.
func TestLostStoreRefused(t *testing.T) {
	damages := []struct {
		name   string
		damage func(t *testing.T, dir string) // dir is acme's store directory
	}{
		{"file deleted", func(t *testing.T, dir string) { remove(t, filepath.Join(dir, "tenant.db")) }},
		{"file and WAL deleted", func(t *testing.T, dir string) {
			for _, f := range []string{"tenant.db", "tenant.db-wal", "tenant.db-shm"} {
				if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					t.Fatal(err)
				}
			}
		}},
		{"directory deleted", func(t *testing.T, dir string) {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated to nothing", func(t *testing.T, dir string) { truncate(t, filepath.Join(dir, "tenant.db"), 0) }},
		{"cut mid-page", func(t *testing.T, dir string) { truncate(t, filepath.Join(dir, "tenant.db"), 4096+100) }},
		{"cut by a page", func(t *testing.T, dir string) {
			path := filepath.Join(dir, "tenant.db")
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			truncate(t, path, fi.Size()-4096)
		}},
	}
	// Where acme's database is when the damage is done.
	states := []struct {
		name    string
		maxOpen int
		restart bool
	}{
		{"open in the pool", 2, false},
		{"evicted from the pool", 1, false},
		{"after a restart", 2, true},
	}
	for _, d := range damages {
		for _, st := range states {
			if d.name == "directory deleted" && st.restart {
				// Not detected: a store whose directory is gone when the
				// server starts looks like one never used, and is created
				// on first use (with a warning).
				continue
			}
			t.Run(d.name+"/"+st.name, func(t *testing.T) {
				ctx := t.Context()
				dir := t.TempDir()
				keys := newKeys(t, storetest.Acme, storetest.Globex)
				logs := &syncBuffer{}
				opts := sqlite.Options{Dir: dir, MaxOpen: st.maxOpen, Locator: twoTenants, Ciphers: keys.ring,
					Logger: slog.New(slog.NewTextHandler(logs, nil))}
				db, err := sqlite.Open(opts)
				if err != nil {
					t.Fatal(err)
				}
				defer func() { db.Close() }()
				acme := authtest.Scope(t, storetest.Acme, "alice")
				globex := authtest.Scope(t, storetest.Globex, "alice")
				if err := db.Create(ctx, acme.Incarnation()); err != nil {
					t.Fatalf("Create: %v", err)
				}
				// Enough rows to fill several pages once checkpointed.
				for range 20 {
					if err := db.AppendMessages(ctx, acme, "s1", benchTurn); err != nil {
						t.Fatal(err)
					}
				}
				if err := db.AppendMessages(ctx, globex, "s1", benchTurn); err != nil {
					t.Fatal(err)
				}
				if st.restart {
					if err := db.Close(); err != nil {
						t.Fatal(err)
					}
				} else if _, err := db.Messages(ctx, acme, "s1", 0); err != nil {
					t.Fatal(err) // acme most recently used: evicted only if the pool holds one
				}
				acmeDir := filepath.Join(dir, twoTenants[storetest.Acme])
				d.damage(t, acmeDir)
				if st.restart {
					if db, err = sqlite.Open(opts); err != nil {
						t.Fatal(err)
					}
				} else if st.maxOpen == 1 {
					if _, err := db.Messages(ctx, globex, "s1", 0); err != nil {
						t.Fatal(err)
					}
				}
				before, _ := os.Stat(filepath.Join(acmeDir, "tenant.db"))

				for range 2 {
					err := db.AppendMessages(ctx, acme, "s1", benchTurn)
					if !errors.Is(err, store.ErrLost) || !errors.Is(err, kind.Damaged) {
						t.Errorf("AppendMessages after the damage: got %v, want %v", err, store.ErrLost)
					}
					if _, err := db.Messages(ctx, acme, "s1", 0); !errors.Is(err, store.ErrLost) {
						t.Errorf("Messages after the damage: got %v, want %v", err, store.ErrLost)
					}
				}
				if msgs, err := db.Messages(ctx, globex, "s1", 0); err != nil || len(msgs) != len(benchTurn) {
					t.Errorf("globex: got %d messages, %v; want %d", len(msgs), err, len(benchTurn))
				}
				if err := db.AppendMessages(ctx, globex, "s1", benchTurn); err != nil {
					t.Errorf("globex AppendMessages: %v", err)
				}
				after, _ := os.Stat(filepath.Join(acmeDir, "tenant.db"))
				if (before == nil) != (after == nil) || (after != nil && after.Size() != before.Size()) {
					t.Errorf("acme's file changed after it was refused: before %v, after %v", before, after)
				}
				if _, err := os.Stat(acmeDir); before == nil && err == nil && d.name == "directory deleted" {
					t.Errorf("acme's directory was created again")
				}
				if n := strings.Count(logs.String(), "tenant store lost"); n != 1 {
					t.Errorf("operator log: %d lines about the lost store, want 1:\n%s", n, logs)
				}
			})
		}
	}
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func truncate(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

func TestUnknownTenant(t *testing.T) {
	db, dir := openTwo(t)
	scope := authtest.Scope(t, "initech", "alice")
	err := db.AppendMessages(t.Context(), scope, "s1", []store.Message{{Role: "user", Content: "x"}})
	if !errors.Is(err, store.ErrUnknownTenant) {
		t.Errorf("AppendMessages: got %v, want %v", err, store.ErrUnknownTenant)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("unknown tenant created %d entries in the store directory, want 0", len(entries))
	}
}

var badStorageIDs = []string{
	"../x",
	"../../../../tmp/evilevil",
	"aaaaaaaa/../bbbbbbbb",
	"/etc/passwd",
	".",
	"..",
	"",
	"short",
	"UPPERCASE1",
	"with-dash-1",
	"tenant.db0",
	strings.Repeat("a", 65),
}

func TestBadStorageIDRefused(t *testing.T) {
	for _, id := range badStorageIDs {
		parent := t.TempDir()
		dir := filepath.Join(parent, "tenants")
		db := open(t, dir, 0, locator{storetest.Acme: id}, newKeys(t, storetest.Acme).ring)
		scope := authtest.Scope(t, storetest.Acme, "alice")

		if err := db.AppendMessages(t.Context(), scope, "s1", []store.Message{{Role: "user", Content: "x"}}); err == nil {
			t.Errorf("AppendMessages with storage id %q: got nil error, want refusal", id)
		}
		if _, err := db.Messages(t.Context(), scope, "s1", 0); err == nil {
			t.Errorf("Messages with storage id %q: got nil error, want refusal", id)
		}
		if err := db.Drop(t.Context(), id); err == nil {
			t.Errorf("Drop(%q): got nil error, want refusal", id)
		}
		var created []string
		err := filepath.WalkDir(parent, func(path string, _ fs.DirEntry, err error) error {
			if path != parent && path != dir {
				created = append(created, path)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(created) != 0 {
			t.Errorf("storage id %q: files created: %q", id, created)
		}
	}
}

func TestInvalidSessionRefused(t *testing.T) {
	db, _ := openTwo(t)
	scope := authtest.Scope(t, storetest.Acme, "alice")
	for _, s := range []tenant.SessionID{"", "a/b", "x\x00y"} {
		if err := db.AppendMessages(t.Context(), scope, s, nil); !errors.Is(err, tenant.ErrInvalid) {
			t.Errorf("AppendMessages(session %q): got %v, want %v", s, err, tenant.ErrInvalid)
		}
		if _, err := db.Messages(t.Context(), scope, s, 0); !errors.Is(err, tenant.ErrInvalid) {
			t.Errorf("Messages(session %q): got %v, want %v", s, err, tenant.ErrInvalid)
		}
	}
}

func TestFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tenants")
	db := open(t, dir, 0, twoTenants, newKeys(t, storetest.Acme).ring)
	scope := authtest.Scope(t, storetest.Acme, "alice")
	if err := db.AppendMessages(t.Context(), scope, "s1", []store.Message{{Role: "user", Content: "x"}}); err != nil {
		t.Fatal(err)
	}
	tenantDir := filepath.Join(dir, twoTenants[storetest.Acme])
	want := map[string]fs.FileMode{dir: 0o700, tenantDir: 0o700}
	entries, err := os.ReadDir(tenantDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		want[filepath.Join(tenantDir, e.Name())] = 0o600
	}
	if _, ok := want[filepath.Join(tenantDir, "tenant.db")]; !ok {
		t.Fatalf("no tenant.db in %s", tenantDir)
	}
	for path, mode := range want {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != mode {
			t.Errorf("%s: got mode %o, want %o", path, got, mode)
		}
	}
}

func TestClosed(t *testing.T) {
	db, err := sqlite.Open(sqlite.Options{Dir: t.TempDir(), Locator: twoTenants, Ciphers: newKeys(t, storetest.Acme).ring})
	if err != nil {
		t.Fatal(err)
	}
	scope := authtest.Scope(t, storetest.Acme, "alice")
	if err := db.AppendMessages(t.Context(), scope, "s1", []store.Message{{Role: "user", Content: "x"}}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := db.Messages(t.Context(), scope, "s1", 0); err == nil {
		t.Error("Messages after Close: got nil error")
	}
	if got := db.OpenHandles(); got != 0 {
		t.Errorf("open handles after Close: got %d, want 0", got)
	}
	if err := db.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestOpenOptions(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ring := newKeys(t, storetest.Acme).ring
	tests := []struct {
		name string
		opts sqlite.Options
	}{
		{"no dir", sqlite.Options{Locator: twoTenants, Ciphers: ring}},
		{"no locator", sqlite.Options{Dir: dir, Ciphers: ring}},
		{"no ciphers", sqlite.Options{Dir: dir, Locator: twoTenants}},
		{"negative MaxOpen", sqlite.Options{Dir: dir, Locator: twoTenants, Ciphers: ring, MaxOpen: -1}},
		{"dir is a file", sqlite.Options{Dir: file, Locator: twoTenants, Ciphers: ring}},
	}
	for _, tt := range tests {
		db, err := sqlite.Open(tt.opts)
		if err == nil {
			t.Errorf("Open with %s: got nil error", tt.name)
			if err := db.Close(); err != nil {
				t.Error(err)
			}
		}
	}
}

// rawDB opens the database file of storage id under dir with a handle of its
// own, as someone with access to the files would.
func rawDB(t *testing.T, dir, id string) *sql.DB {
	t.Helper()
	path := filepath.Join(dir, id, "tenant.db")
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite", "file:"+filepath.ToSlash(path)+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := raw.Close(); err != nil {
			t.Error(err)
		}
	})
	return raw
}

func rawExec(t *testing.T, db *sql.DB, query string, args ...any) {
	t.Helper()
	res, err := db.ExecContext(t.Context(), query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		t.Fatalf("%s: %d rows affected, %v", query, n, err)
	}
}

func rawBytes(t *testing.T, db *sql.DB, query string, args ...any) []byte {
	t.Helper()
	var b []byte
	if err := db.QueryRowContext(t.Context(), query, args...).Scan(&b); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	if len(b) == 0 {
		t.Fatalf("%s: empty", query)
	}
	return b
}

// TestCiphertextMoved moves ciphertexts between tenants, sessions, end users,
// columns and secret names behind the store's back: every read of a moved
// ciphertext must fail with keyring.ErrDecrypt and show none of its text.
func TestCiphertextMoved(t *testing.T) {
	const (
		acmeText   = "acme-only-text-4c1f"
		acmeMeta   = `{"note":"acme-only-meta-9d0e"}`
		acmeSecret = "acme-only-secret-71ab"
	)
	acmeID, globexID := twoTenants[storetest.Acme], twoTenants[storetest.Globex]
	selectContent := `SELECT content FROM messages WHERE user_id = 'alice' AND session_id = 's1'`
	selectMeta := `SELECT meta FROM messages WHERE user_id = 'alice' AND session_id = 's1'`

	tests := []struct {
		name   string
		tamper func(t *testing.T, acme, globex *sql.DB)
		// read is the call that meets the moved ciphertext.
		read func(ctx context.Context, db *sqlite.DB, acme, globex auth.Scope) (any, error)
	}{
		{
			name: "content copied to globex's same user and session",
			tamper: func(t *testing.T, acme, globex *sql.DB) {
				rawExec(t, globex, `UPDATE messages SET content = ? WHERE user_id = 'alice' AND session_id = 's1'`, rawBytes(t, acme, selectContent))
			},
			read: readMessages("s1", false),
		},
		{
			name: "meta copied to globex's same user and session",
			tamper: func(t *testing.T, acme, globex *sql.DB) {
				rawExec(t, globex, `UPDATE messages SET meta = ? WHERE user_id = 'alice' AND session_id = 's1'`, rawBytes(t, acme, selectMeta))
			},
			read: readMessages("s1", false),
		},
		{
			name: "whole row inserted into globex's same user and session",
			tamper: func(t *testing.T, acme, globex *sql.DB) {
				rawExec(t, globex, `INSERT INTO messages (user_id, session_id, role, content, meta, created_at)
					VALUES ('alice', 's1', 'user', ?, ?, '2024-01-01T00:00:00.000000000Z')`,
					rawBytes(t, acme, selectContent), rawBytes(t, acme, selectMeta))
			},
			read: readMessages("s1", false),
		},
		{
			name: "globex's export meets a copied row",
			tamper: func(t *testing.T, acme, globex *sql.DB) {
				rawExec(t, globex, `UPDATE messages SET content = ? WHERE user_id = 'alice' AND session_id = 's1'`, rawBytes(t, acme, selectContent))
			},
			read: func(ctx context.Context, db *sqlite.DB, _, globex auth.Scope) (any, error) {
				return db.Export(ctx, globex)
			},
		},
		{
			name: "content moved to another session",
			tamper: func(t *testing.T, acme, _ *sql.DB) {
				rawExec(t, acme, `UPDATE messages SET content = ? WHERE user_id = 'alice' AND session_id = 's2'`, rawBytes(t, acme, selectContent))
			},
			read: readMessages("s2", true),
		},
		{
			name: "content moved to another end user",
			tamper: func(t *testing.T, acme, _ *sql.DB) {
				rawExec(t, acme, `UPDATE messages SET content = ? WHERE user_id = 'bob' AND session_id = 's1'`, rawBytes(t, acme, selectContent))
			},
			read: func(ctx context.Context, db *sqlite.DB, acme, _ auth.Scope) (any, error) {
				return db.Messages(ctx, acme.WithUser("bob"), "s1", 0)
			},
		},
		{
			name: "content swapped into meta",
			tamper: func(t *testing.T, acme, _ *sql.DB) {
				rawExec(t, acme, `UPDATE messages SET meta = content WHERE user_id = 'alice' AND session_id = 's1'`)
			},
			read: readMessages("s1", true),
		},
		{
			name: "meta swapped into content",
			tamper: func(t *testing.T, acme, _ *sql.DB) {
				rawExec(t, acme, `UPDATE messages SET content = meta WHERE user_id = 'alice' AND session_id = 's1'`)
			},
			read: readMessages("s1", true),
		},
		{
			name: "secret copied to globex's same name",
			tamper: func(t *testing.T, acme, globex *sql.DB) {
				rawExec(t, globex, `UPDATE secrets SET value = ? WHERE name = 'api_token'`, rawBytes(t, acme, `SELECT value FROM secrets WHERE name = 'api_token'`))
			},
			read: func(ctx context.Context, db *sqlite.DB, _, globex auth.Scope) (any, error) {
				return db.Secrets(ctx, globex)
			},
		},
		{
			name: "secret moved to another name",
			tamper: func(t *testing.T, acme, _ *sql.DB) {
				rawExec(t, acme, `UPDATE secrets SET value = (SELECT value FROM secrets WHERE name = 'api_token') WHERE name = 'other'`)
			},
			read: func(ctx context.Context, db *sqlite.DB, acme, _ auth.Scope) (any, error) {
				return db.Secrets(ctx, acme)
			},
		},
		{
			name: "secret moved into a message",
			tamper: func(t *testing.T, acme, _ *sql.DB) {
				rawExec(t, acme, `UPDATE messages SET content = (SELECT value FROM secrets WHERE name = 'api_token') WHERE user_id = 'alice' AND session_id = 's2'`)
			},
			read: readMessages("s2", true),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, dir := openTwo(t)
			ctx := t.Context()
			acme := authtest.Scope(t, storetest.Acme, "alice")
			globex := authtest.Scope(t, storetest.Globex, "alice")
			for _, w := range []struct {
				scope   auth.Scope
				session tenant.SessionID
				msg     store.Message
			}{
				{acme, "s1", store.Message{Role: "user", Content: acmeText, Meta: []byte(acmeMeta)}},
				{acme, "s2", store.Message{Role: "user", Content: "acme second session", Meta: []byte(`{}`)}},
				{acme.WithUser("bob"), "s1", store.Message{Role: "user", Content: "bob's text"}},
				{globex, "s1", store.Message{Role: "user", Content: "globex text", Meta: []byte(`{"globex":1}`)}},
			} {
				if err := db.AppendMessages(ctx, w.scope, w.session, []store.Message{w.msg}); err != nil {
					t.Fatal(err)
				}
			}
			for _, s := range []struct {
				scope       auth.Scope
				name, value string
			}{
				{acme, "api_token", acmeSecret},
				{acme, "other", "acme other secret"},
				{globex, "api_token", "globex secret"},
			} {
				if err := db.PutSecret(ctx, s.scope, tenant.SecretName(s.name), []byte(s.value)); err != nil {
					t.Fatal(err)
				}
			}

			tt.tamper(t, rawDB(t, dir, acmeID), rawDB(t, dir, globexID))

			got, err := tt.read(ctx, db, acme, globex)
			if !errors.Is(err, keyring.ErrDecrypt) {
				t.Errorf("read after tampering: got error %v, want %v", err, keyring.ErrDecrypt)
			}
			shown := fmt.Sprintf("%+v %v", got, err)
			for _, plain := range []string{acmeText, "acme-only-meta", acmeSecret} {
				if strings.Contains(shown, plain) {
					t.Errorf("read after tampering shows %q: %s", plain, shown)
				}
			}
		})
	}
}

// readMessages reads session of alice of acme (or of globex).
func readMessages(session tenant.SessionID, ofAcme bool) func(context.Context, *sqlite.DB, auth.Scope, auth.Scope) (any, error) {
	return func(ctx context.Context, db *sqlite.DB, acme, globex auth.Scope) (any, error) {
		scope := globex
		if ofAcme {
			scope = acme
		}
		msgs, err := db.Messages(ctx, scope, session, 0)
		return msgs, err
	}
}

// TestFilesHoldNoPlaintext writes messages and secrets and looks for their
// text in the raw bytes of every file of the tenant's directory.
func TestFilesHoldNoPlaintext(t *testing.T) {
	const (
		text    = "plaintext-message-marker-8f3a"
		meta    = "plaintext-meta-marker-77c1"
		secret  = "plaintext-secret-marker-2b9d"
		session = "visible-session-5e21" // stored in clear, to show the scan sees the data
		rounds  = 300                    // past a background checkpoint, so the main file has pages too
	)
	db, dir := openTwo(t)
	ctx := t.Context()
	scope := authtest.Scope(t, storetest.Acme, "alice")
	for i := range rounds {
		msgs := []store.Message{
			{Role: "user", Content: fmt.Sprint(text, i)},
			{Role: "assistant", Content: text, Meta: []byte(fmt.Sprintf(`{"note":%q}`, meta))},
		}
		if err := db.AppendMessages(ctx, scope, session, msgs); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []tenant.SecretName{"api_token", "db_password"} {
		if err := db.PutSecret(ctx, scope, name, []byte(secret)); err != nil {
			t.Fatal(err)
		}
	}
	// Overwritten and deleted values leave old pages behind; they are sealed too.
	if err := db.PutSecret(ctx, scope, "api_token", []byte(secret+"-new")); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteSecret(ctx, scope, "db_password"); err != nil {
		t.Fatal(err)
	}
	// The store still reads everything back.
	if msgs, err := db.Messages(ctx, scope, session, 1); err != nil || len(msgs) != 1 || msgs[0].Content != text {
		t.Fatalf("Messages: got %+v, %v", msgs, err)
	}

	tenantDir := filepath.Join(dir, twoTenants[storetest.Acme])
	scan := func(when string) {
		t.Helper()
		entries, err := os.ReadDir(tenantDir)
		if err != nil {
			t.Fatal(err)
		}
		var all []byte
		var names []string
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(tenantDir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, fmt.Sprintf("%s (%d bytes)", e.Name(), len(b)))
			for _, plain := range []string{text, meta, secret} {
				if bytes.Contains(b, []byte(plain)) {
					t.Errorf("%s: %s holds %q", when, e.Name(), plain)
				}
			}
			all = append(all, b...)
		}
		if !bytes.Contains(all, []byte(session)) {
			t.Errorf("%s: the session id, stored in clear, is in none of %q: the scan misses the data", when, names)
		}
		t.Logf("%s: scanned %q", when, names)
	}
	scan("while open")
	raw := rawDB(t, dir, twoTenants[storetest.Acme])
	if _, err := raw.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	scan("after a full checkpoint")
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}

	if err := db.Drop(ctx, twoTenants[storetest.Acme]); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tenantDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Drop, stat %s: got %v, want %v", tenantDir, err, fs.ErrNotExist)
	}
}

// TestCipherUnavailable checks that a tenant without a usable key is refused
// before its database is opened, so nothing of it reaches a file.
func TestCipherUnavailable(t *testing.T) {
	k := newKeys(t, storetest.Globex)
	globexCipher, err := k.ring.Cipher(t.Context(), tenant.Incarnation(storetest.Globex))
	if err != nil {
		t.Fatal(err)
	}
	errKMS := errors.New("kms unavailable")
	tests := []struct {
		name    string
		ciphers sqlite.Ciphers
	}{
		{"no key", k.ring},
		{"lookup fails", ciphersFunc(func(context.Context, tenant.ID) (*keyring.Cipher, error) { return nil, errKMS })},
		{"another tenant's cipher", ciphersFunc(func(context.Context, tenant.ID) (*keyring.Cipher, error) { return globexCipher, nil })},
		{"nil cipher", ciphersFunc(func(context.Context, tenant.ID) (*keyring.Cipher, error) { return nil, nil })},
	}
	const plain = "must-not-be-written-3e8b"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			db := open(t, dir, 0, twoTenants, tt.ciphers)
			ctx := t.Context()
			acme := authtest.Scope(t, storetest.Acme, "alice")

			if err := db.AppendMessages(ctx, acme, "s1", []store.Message{{Role: "user", Content: plain}}); err == nil {
				t.Error("AppendMessages: got nil error")
			}
			if err := db.PutSecret(ctx, acme, "api_token", []byte(plain)); err == nil {
				t.Error("PutSecret: got nil error")
			}
			if err := db.DeleteSecret(ctx, acme, "api_token"); err == nil {
				t.Error("DeleteSecret: got nil error")
			}
			if msgs, err := db.Messages(ctx, acme, "s1", 0); err == nil || msgs != nil {
				t.Errorf("Messages: got %v, %v; want nil and an error", msgs, err)
			}
			if secrets, err := db.Secrets(ctx, acme); err == nil || secrets != nil {
				t.Errorf("Secrets: got %d secrets, %v; want none and an error", len(secrets), err)
			}
			if exp, err := db.Export(ctx, acme); err == nil || exp.Sessions != nil || exp.SecretNames != nil {
				t.Errorf("Export: got %+v, %v; want nothing and an error", exp, err)
			}
			checkKnowledgeUnavailable(t, db, acme, plain)
			if tt.name == "lookup fails" {
				if err := db.AppendMessages(ctx, acme, "s1", nil); !errors.Is(err, errKMS) {
					t.Errorf("AppendMessages: got %v, want it to wrap %v", err, errKMS)
				}
			}

			var files []string
			err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
				if path != dir {
					files = append(files, path)
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(files) != 0 {
				t.Errorf("files created for a tenant without a key: %q", files)
			}
		})
	}
}

// TestKeyReplaced checks crypto-shredding: once a tenant's data key is
// replaced or destroyed, its stored content does not come back.
func TestKeyReplaced(t *testing.T) {
	dir := t.TempDir()
	k := newKeys(t, storetest.Acme, storetest.Globex)
	db := open(t, dir, 0, twoTenants, k.ring)
	ctx := t.Context()
	acme := authtest.Scope(t, storetest.Acme, "alice")
	globex := authtest.Scope(t, storetest.Globex, "alice")
	for _, scope := range []auth.Scope{acme, globex} {
		if err := db.AppendMessages(ctx, scope, "s1", []store.Message{{Role: "user", Content: "hello"}}); err != nil {
			t.Fatal(err)
		}
		if err := db.PutSecret(ctx, scope, "api_token", []byte("token")); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := db.PutDocument(ctx, scope, storetest.NewDocument("hello world", ""), []store.Chunk{{Text: "hello world", Embedding: []float32{1, 2}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.PutMemory(ctx, scope, store.Memory{Text: "hello memory", Embedding: []float32{1, 2}}); err != nil {
			t.Fatal(err)
		}
	}
	acmeDocs, err := db.Documents(ctx, acme)
	if err != nil || len(acmeDocs) != 1 {
		t.Fatalf("Documents: got %v, %v", acmeDocs, err)
	}

	k.replace(t, storetest.Acme)
	if _, err := db.Messages(ctx, acme, "s1", 0); !errors.Is(err, keyring.ErrDecrypt) {
		t.Errorf("Messages under a new key: got %v, want %v", err, keyring.ErrDecrypt)
	}
	if _, err := db.Secrets(ctx, acme); !errors.Is(err, keyring.ErrDecrypt) {
		t.Errorf("Secrets under a new key: got %v, want %v", err, keyring.ErrDecrypt)
	}
	if _, err := db.Export(ctx, acme); !errors.Is(err, keyring.ErrDecrypt) {
		t.Errorf("Export under a new key: got %v, want %v", err, keyring.ErrDecrypt)
	}

	for name, read := range map[string]func() error{
		"Document":        func() error { _, err := db.Document(ctx, acme, acmeDocs[0].ID); return err },
		"Documents":       func() error { _, err := db.Documents(ctx, acme); return err },
		"Chunks":          func() error { _, err := db.Chunks(ctx, acme, []int64{1}); return err },
		"ChunkEmbeddings": func() error { _, err := db.ChunkEmbeddings(ctx, acme); return err },
		"Memories":        func() error { _, err := db.Memories(ctx, acme, 0); return err },
	} {
		if err := read(); !errors.Is(err, keyring.ErrDecrypt) {
			t.Errorf("%s under a new key: got %v, want %v", name, err, keyring.ErrDecrypt)
		}
	}
	// The blind index still holds the old tokens, which no query under the
	// new key produces.
	if hits, err := db.SearchChunks(ctx, acme, "hello world", 10); err != nil || len(hits) != 0 {
		t.Errorf("SearchChunks under a new key: got %v, %v; want no hits", hits, err)
	}
	if hits, err := db.SearchMemories(ctx, acme, "hello memory", 10); err != nil || len(hits) != 0 {
		t.Errorf("SearchMemories under a new key: got %v, %v; want no hits", hits, err)
	}

	k.destroy(storetest.Acme)
	if _, err := db.Messages(ctx, acme, "s1", 0); err == nil {
		t.Error("Messages with the key destroyed: got nil error")
	}
	if _, err := db.SearchChunks(ctx, acme, "hello", 10); err == nil {
		t.Error("SearchChunks with the key destroyed: got nil error")
	}
	if hits, err := db.SearchChunks(ctx, globex, "hello", 10); err != nil || len(hits) != 1 {
		t.Errorf("globex's search after acme's key changed: got %v, %v; want one hit", hits, err)
	}

	if msgs, err := db.Messages(ctx, globex, "s1", 0); err != nil || len(msgs) != 1 || msgs[0].Content != "hello" {
		t.Errorf("globex after acme's key changed: got %+v, %v", msgs, err)
	}
}

func TestExportSessionWithoutMessages(t *testing.T) {
	db, _ := openTwo(t)
	ctx := t.Context()
	scope := authtest.Scope(t, storetest.Acme, "alice")
	if err := db.AppendMessages(ctx, scope, "empty", nil); err != nil {
		t.Fatal(err)
	}
	exp, err := db.Export(ctx, scope)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(exp.Sessions)
	if err != nil {
		t.Fatal(err)
	}
	if len(exp.Sessions) != 1 || exp.Sessions[0].Messages == nil || !bytes.Contains(data, []byte(`"messages":[]`)) {
		t.Errorf("export of a session without messages: got %s, want one session with \"messages\":[]", data)
	}
}

func TestEmptyMetaIsNil(t *testing.T) {
	db, _ := openTwo(t)
	ctx := t.Context()
	scope := authtest.Scope(t, storetest.Acme, "alice")
	msgs := []store.Message{{Role: "user", Content: "a", Meta: []byte{}}, {Role: "user", Content: "b"}}
	if err := db.AppendMessages(ctx, scope, "s1", msgs); err != nil {
		t.Fatal(err)
	}
	got, err := db.Messages(ctx, scope, "s1", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range got {
		if m.Meta != nil {
			t.Errorf("message %d: got meta %q, want nil", i, m.Meta)
		}
	}
}

func benchStore(b *testing.B) (*sqlite.DB, auth.Scope) {
	b.Helper()
	db := open(b, b.TempDir(), 0, twoTenants, newKeys(b, storetest.Acme).ring)
	return db, authtest.Scope(b, storetest.Acme, "alice")
}

// benchTurn is one chat turn: the user's message and the assistant's answer.
var benchTurn = []store.Message{
	{Role: "user", Content: strings.Repeat("What is the weather like in Lisbon today? ", 4)},
	{Role: "assistant", Content: strings.Repeat("It is sunny and 24°C in Lisbon. ", 8), Meta: []byte(`{"tool_calls":[{"id":"call_1","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Lisbon\"}"}}]}`)},
}

// BenchmarkAppendMessages appends turns to one tenant one after another, and
// from 16 goroutines at once (as concurrent chat turns do); writes/fsync is
// how many appends shared one commit, and so one fsync of the WAL.
func BenchmarkAppendMessages(b *testing.B) {
	for _, parallel := range []bool{false, true} {
		b.Run(fmt.Sprintf("parallel=%v", parallel), func(b *testing.B) {
			db, scope := benchStore(b)
			ctx := b.Context()
			if err := db.AppendMessages(ctx, scope, "s1", benchTurn); err != nil {
				b.Fatal(err)
			}
			batches0, writes0 := db.CommitStats()
			b.ReportAllocs()
			if parallel {
				b.SetParallelism(8)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := db.AppendMessages(ctx, scope, "s1", benchTurn); err != nil {
							b.Error(err)
							return
						}
					}
				})
			} else {
				for b.Loop() {
					if err := db.AppendMessages(ctx, scope, "s1", benchTurn); err != nil {
						b.Fatal(err)
					}
				}
			}
			batches, writes := db.CommitStats()
			b.ReportMetric(float64(writes-writes0)/float64(batches-batches0), "writes/fsync")
		})
	}
}

// BenchmarkMessages reads the last 20 messages of a 100-message session.
func BenchmarkMessages(b *testing.B) {
	db, scope := benchStore(b)
	ctx := b.Context()
	for range 50 {
		if err := db.AppendMessages(ctx, scope, "s1", benchTurn); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		msgs, err := db.Messages(ctx, scope, "s1", 20)
		if err != nil {
			b.Fatal(err)
		}
		if len(msgs) != 20 {
			b.Fatalf("got %d messages, want 20", len(msgs))
		}
	}
}

// cpuTime returns the CPU time the process has used.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPoolMiss reads one message of a session, round-robin over many
// tenants with a pool far smaller than them, so (with 10,000 tenants)
// every read opens a database, against 10 tenants that all stay open.
func BenchmarkPoolMiss(b *testing.B) {
	for _, n := range []int{10, 1000, 10_000} {
		b.Run(fmt.Sprintf("tenants=%d", n), func(b *testing.B) {
			ids := make([]tenant.ID, n)
			loc := locator{}
			for i := range ids {
				ids[i] = tenant.ID(fmt.Sprintf("t%05d", i))
				loc[ids[i]] = fmt.Sprintf("storage%05d", i)
			}
			k := newKeys(b, ids...)
			db := open(b, b.TempDir(), 64, loc, k.ring)
			ctx := b.Context()
			scopes := make([]auth.Scope, n)
			for i, id := range ids {
				scopes[i] = authtest.Scope(b, id, "alice")
				if err := db.AppendMessages(ctx, scopes[i], "s1", benchTurn[:1]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			cpu0 := cpuTime(b)
			i := 0
			for b.Loop() {
				if _, err := db.Messages(ctx, scopes[i%n], "s1", 1); err != nil {
					b.Fatal(err)
				}
				i++
			}
			// CPU time of the whole process: the machine may be shared,
			// which ns/op does not survive.
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(i), "cpu-ns/op")
		})
	}
}

// BenchmarkStart is what a start does with the stores of 10,000 tenants
// before it listens: Open (which lists the store directories) and
// DropOrphans. Neither opens a database.
func BenchmarkStart(b *testing.B) {
	dir := b.TempDir()
	for i := range 10_000 {
		if err := os.Mkdir(filepath.Join(dir, fmt.Sprintf("storage%05d", i)), 0o700); err != nil {
			b.Fatal(err)
		}
	}
	keep := func(string) bool { return true }
	ring := newKeys(b).ring
	b.ReportAllocs()
	for b.Loop() {
		db, err := sqlite.Open(sqlite.Options{Dir: dir, Locator: twoTenants, Ciphers: ring})
		if err != nil {
			b.Fatal(err)
		}
		if removed, err := db.DropOrphans(b.Context(), keep); err != nil || len(removed) != 0 {
			b.Fatalf("DropOrphans: removed %d, %v", len(removed), err)
		}
		if err := db.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
