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
type locator = storetest.Locator

var _ sqlite.Ciphers = (*keyring.Ring)(nil)

func newKeys(tb testing.TB, ids ...tenant.ID) *storetest.Keys { return storetest.NewKeys(tb, ids...) }

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

var twoTenants = storetest.TwoTenants

// acmeIncarnation is Acme's incarnation in twoTenants, as Drop takes it.
var acmeIncarnation = tenant.NewIncarnation(storetest.Acme, twoTenants[storetest.Acme])

// openTwo opens a store under a new directory in which Acme and Globex have
// data keys, and returns it with the directory.
func openTwo(tb testing.TB) (*sqlite.DB, string) {
	tb.Helper()
	dir := tb.TempDir()
	return open(tb, dir, 0, twoTenants, newKeys(tb, storetest.Acme, storetest.Globex).Ring()), dir
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		dir := t.TempDir()
		k := newKeys(t, storetest.Acme, storetest.Globex)
		return &atRest{DB: open(t, dir, 0, twoTenants, k.Ring()), dir: dir, keys: k}
	})
}

// atRest gives the conformance suite the files under the store's directory,
// read and written as someone with access to them would.
type atRest struct {
	*sqlite.DB
	dir  string
	keys *storetest.Keys
}

var _ storetest.AtRestBackend = (*atRest)(nil)

func (a *atRest) Keys() *storetest.Keys { return a.keys }

func (a *atRest) Incarnation(id tenant.ID) tenant.Incarnation { return twoTenants.Incarnation(id) }

// Raw returns the bytes of every file under the directory: databases and
// their write-ahead logs.
func (a *atRest) Raw(t *testing.T) []byte {
	t.Helper()
	var all []byte
	err := filepath.WalkDir(a.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		all = append(all, b...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// place returns the table, column and row condition of p.
func place(t *testing.T, p storetest.Place) (table, column, where string, args []any) {
	t.Helper()
	firstMessage := `id = (SELECT min(id) FROM messages WHERE user_id = ? AND session_id = ?)`
	switch p.Column {
	case storetest.MessageContent:
		return "messages", "content", firstMessage, []any{p.User, p.Session}
	case storetest.MessageMeta:
		return "messages", "meta", firstMessage, []any{p.User, p.Session}
	case storetest.SecretValue:
		return "secrets", "value", "name = ?", []any{p.Secret}
	case storetest.DocumentText:
		return "documents", "text", "id = ?", []any{p.Document}
	case storetest.DocumentMetadata:
		return "documents", "metadata", "id = ?", []any{p.Document}
	case storetest.DocumentHash:
		return "documents", "hash", "id = ?", []any{p.Document}
	case storetest.ChunkText:
		return "chunks", "text", "document_id = ? AND ordinal = ?", []any{p.Document, p.Ordinal}
	case storetest.ChunkEmbedding:
		return "chunks", "embedding", "document_id = ? AND ordinal = ?", []any{p.Document, p.Ordinal}
	case storetest.MemoryText:
		return "memories", "text", "user_id = ? AND id = ?", []any{p.User, p.Memory}
	case storetest.MemoryEmbedding:
		return "memories", "embedding", "user_id = ? AND id = ?", []any{p.User, p.Memory}
	}
	t.Fatalf("unknown column %d", p.Column)
	return "", "", "", nil
}

func (a *atRest) Sealed(t *testing.T, p storetest.Place) []byte {
	t.Helper()
	table, column, where, args := place(t, p)
	return rawBytes(t, rawDB(t, a.dir, twoTenants[p.Tenant]), "SELECT "+column+" FROM "+table+" WHERE "+where, args...)
}

func (a *atRest) Overwrite(t *testing.T, p storetest.Place, value []byte) {
	t.Helper()
	table, column, where, args := place(t, p)
	rawExec(t, rawDB(t, a.dir, twoTenants[p.Tenant]), "UPDATE "+table+" SET "+column+" = ? WHERE "+where, append([]any{value}, args...)...)
}

func TestManyTenantsFewHandles(t *testing.T) {
	const maxOpen, tenants, rounds = 4, 50, 3
	l := locator{}
	for i := range tenants {
		l[tenant.ID(fmt.Sprint("t", i))] = fmt.Sprintf("store%04d", i)
	}
	k := newKeys(t)
	for id := range l {
		k.Replace(t, id)
	}
	db := open(t, t.TempDir(), maxOpen, l, k.Ring())
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

	if err := db.Drop(ctx, acmeIncarnation); err != nil {
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
	if err := db.Drop(ctx, tenant.NewIncarnation("nobody", "neverused")); err != nil {
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
			t.Run(d.name+"/"+st.name, func(t *testing.T) {
				ctx := t.Context()
				dir := t.TempDir()
				keys := newKeys(t, storetest.Acme, storetest.Globex)
				logs := &syncBuffer{}
				opts := sqlite.Options{Dir: dir, MaxOpen: st.maxOpen, Locator: provisionedLocator{twoTenants}, Ciphers: keys.Ring(),
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

// provisionedLocator is a Locator for which Acme's store was made when it
// was provisioned (as control.Plane reports for tenants created now) and
// Globex's was not (a tenant created before: made on first use).
type provisionedLocator struct{ storetest.Locator }

func (provisionedLocator) StoreMadeAtProvision(inc tenant.Incarnation) bool {
	return inc.Tenant() == storetest.Acme
}

// TestReadBeforeProvisionedStoreIsMade: the control record of a new tenant
// is committed before its store is made, so a reader walking the tenants can
// come first. It is refused, and the store made a moment later is usable:
// the refusal of a missing store is not kept against one still being made.
func TestReadBeforeProvisionedStoreIsMade(t *testing.T) {
	keys := newKeys(t, storetest.Acme, storetest.Globex)
	db, err := sqlite.Open(sqlite.Options{Dir: t.TempDir(), Locator: provisionedLocator{twoTenants}, Ciphers: keys.Ring()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	acme := authtest.Scope(t, storetest.Acme, "alice")
	if _, err := db.Messages(t.Context(), acme, "s1", 0); !errors.Is(err, store.ErrLost) {
		t.Fatalf("read before the store is made: got %v, want %v", err, store.ErrLost)
	}
	if err := db.Create(t.Context(), acme.Incarnation()); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := db.AppendMessages(t.Context(), acme, "s1", benchTurn); err != nil {
		t.Fatalf("write once the store is made: %v", err)
	}
	if msgs, err := db.Messages(t.Context(), acme, "s1", 0); err != nil || len(msgs) != len(benchTurn) {
		t.Fatalf("read once the store is made: %d messages, %v", len(msgs), err)
	}
}

// TestUnprovisionedStoreMadeOnFirstUse keeps the other side of the rule: a
// tenant created before stores were made at provisioning has its store made
// when it is first used, directory or not.
func TestUnprovisionedStoreMadeOnFirstUse(t *testing.T) {
	keys := newKeys(t, storetest.Acme, storetest.Globex)
	db, err := sqlite.Open(sqlite.Options{Dir: t.TempDir(), Locator: twoTenants, Ciphers: keys.Ring()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	acme := authtest.Scope(t, storetest.Acme, "alice")
	if err := db.AppendMessages(t.Context(), acme, "s1", benchTurn); err != nil {
		t.Fatalf("first use of a store never made: %v", err)
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
		db := open(t, dir, 0, locator{storetest.Acme: id}, newKeys(t, storetest.Acme).Ring())
		scope := authtest.Scope(t, storetest.Acme, "alice")

		if err := db.AppendMessages(t.Context(), scope, "s1", []store.Message{{Role: "user", Content: "x"}}); err == nil {
			t.Errorf("AppendMessages with storage id %q: got nil error, want refusal", id)
		}
		if _, err := db.Messages(t.Context(), scope, "s1", 0); err == nil {
			t.Errorf("Messages with storage id %q: got nil error, want refusal", id)
		}
		if err := db.Drop(t.Context(), tenant.NewIncarnation(storetest.Acme, id)); err == nil {
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
	db := open(t, dir, 0, twoTenants, newKeys(t, storetest.Acme).Ring())
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
	db, err := sqlite.Open(sqlite.Options{Dir: t.TempDir(), Locator: twoTenants, Ciphers: newKeys(t, storetest.Acme).Ring()})
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
	ring := newKeys(t, storetest.Acme).Ring()
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

// TestCipherUnavailable checks that a tenant without a usable key is refused
// before its database is opened, so nothing of it reaches a file.
func TestCipherUnavailable(t *testing.T) {
	k := newKeys(t, storetest.Globex)
	globexCipher, err := k.Ring().Cipher(t.Context(), tenant.Incarnation(storetest.Globex))
	if err != nil {
		t.Fatal(err)
	}
	errKMS := errors.New("kms unavailable")
	tests := []struct {
		name    string
		ciphers sqlite.Ciphers
	}{
		{"no key", k.Ring()},
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
	db := open(b, b.TempDir(), 0, twoTenants, newKeys(b, storetest.Acme).Ring())
	return db, authtest.Scope(b, storetest.Acme, "alice")
}

// benchTurn is one chat turn: the user's message and the assistant's answer.
var benchTurn = storetest.BenchTurn

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
			db := open(b, b.TempDir(), 64, loc, k.Ring())
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
	ring := newKeys(b).Ring()
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
