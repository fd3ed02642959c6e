package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/store/sqlite"
	"github.com/bulkhead-ai/bulkhead/internal/store/storetest"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// locator maps tenants to storage ids; any other tenant is unknown.
type locator map[tenant.ID]string

func (l locator) StorageID(_ context.Context, id tenant.ID) (string, error) {
	s, ok := l[id]
	if !ok {
		return "", fmt.Errorf("tenant %q: %w", id, store.ErrUnknownTenant)
	}
	return s, nil
}

func open(t *testing.T, dir string, maxOpen int, l sqlite.Locator) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(sqlite.Options{Dir: dir, MaxOpen: maxOpen, Locator: l})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

var twoTenants = locator{storetest.Acme: "acme0storage", storetest.Globex: "globex0storage"}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		return open(t, t.TempDir(), 0, twoTenants)
	})
}

func TestManyTenantsFewHandles(t *testing.T) {
	const maxOpen, tenants, rounds = 4, 50, 3
	l := locator{}
	for i := range tenants {
		l[tenant.ID(fmt.Sprint("t", i))] = fmt.Sprintf("store%04d", i)
	}
	db := open(t, t.TempDir(), maxOpen, l)
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
			scope := auth.TestScope(t, tenant.ID(fmt.Sprint("t", i)), "alice")
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
		scope := auth.TestScope(t, tenant.ID(fmt.Sprint("t", i)), "alice")
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
	dir := t.TempDir()
	db := open(t, dir, 0, twoTenants)
	ctx := t.Context()
	acme := auth.TestScope(t, storetest.Acme, "alice")
	globex := auth.TestScope(t, storetest.Globex, "alice")
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

func TestUnknownTenant(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir, 0, twoTenants)
	scope := auth.TestScope(t, "initech", "alice")
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
		db := open(t, dir, 0, locator{storetest.Acme: id})
		scope := auth.TestScope(t, storetest.Acme, "alice")

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
	db := open(t, t.TempDir(), 0, twoTenants)
	scope := auth.TestScope(t, storetest.Acme, "alice")
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
	db := open(t, dir, 0, twoTenants)
	scope := auth.TestScope(t, storetest.Acme, "alice")
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
	db, err := sqlite.Open(sqlite.Options{Dir: t.TempDir(), Locator: twoTenants})
	if err != nil {
		t.Fatal(err)
	}
	scope := auth.TestScope(t, storetest.Acme, "alice")
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
	tests := []struct {
		name string
		opts sqlite.Options
	}{
		{"no dir", sqlite.Options{Locator: twoTenants}},
		{"no locator", sqlite.Options{Dir: dir}},
		{"negative MaxOpen", sqlite.Options{Dir: dir, Locator: twoTenants, MaxOpen: -1}},
		{"dir is a file", sqlite.Options{Dir: file, Locator: twoTenants}},
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
