package sqlite_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/store/sqlite"
	"github.com/bulkhead-ai/bulkhead/internal/store/storetest"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// TestOldIncarnationRefused uses a Scope of a tenant that was deleted and
// created again under the same id, against the real control plane: every
// store call with it is refused, and nothing of it reaches the new tenant.
func TestOldIncarnationRefused(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	master, err := keyring.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	kek, err := keyring.NewLocalKEK(master)
	if err != nil {
		t.Fatal(err)
	}
	plane, err := control.Open(ctx, filepath.Join(dir, "control.db"), kek, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plane.Close() })
	db := open(t, filepath.Join(dir, "tenants"), 0, plane, keyring.NewRing(kek, plane, 0))
	def := control.Tenant{ID: "acme", Profiles: map[string]control.Profile{control.DefaultProfile: {Model: "offline/default"}}}

	// As the lifecycle provisions: the control record, then the store.
	first, err := plane.CreateTenant(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Create(ctx, first.Incarnation()); err != nil {
		t.Fatal(err)
	}
	old := authtest.ScopeIn(t, first.Incarnation(), "alice")
	msg := []store.Message{{Role: "user", Content: "from the first acme"}}
	if err := db.AppendMessages(ctx, old, "s1", msg); err != nil {
		t.Fatalf("current incarnation: %v", err)
	}
	if _, err := plane.DeleteTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if err := db.Drop(ctx, first.Incarnation()); err != nil {
		t.Fatal(err)
	}
	second, err := plane.CreateTenant(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Create(ctx, second.Incarnation()); err != nil {
		t.Fatal(err)
	}
	current := authtest.ScopeIn(t, second.Incarnation(), "alice")

	calls := []struct {
		name string
		call func(scope auth.Scope) error
	}{
		{"AppendMessages", func(s auth.Scope) error { return db.AppendMessages(ctx, s, "s1", msg) }},
		{"Messages", func(s auth.Scope) error { _, err := db.Messages(ctx, s, "s1", 0); return err }},
		{"AppendAudit", func(s auth.Scope) error {
			return db.AppendAudit(ctx, s, []store.AuditRecord{{Type: "x", Data: []byte("{}")}})
		}},
		{"Secrets", func(s auth.Scope) error { _, err := db.Secrets(ctx, s); return err }},
	}
	for _, c := range calls {
		if err := c.call(old); !errors.Is(err, store.ErrUnknownTenant) {
			t.Errorf("%s with the old incarnation: got %v, want ErrUnknownTenant", c.name, err)
		}
	}
	got, err := db.Messages(ctx, current, "s1", 0)
	if err != nil || len(got) != 0 {
		t.Errorf("new incarnation's history: got %v, %v; want empty", got, err)
	}
	recs, err := db.AuditRecords(ctx, current, 0, 0)
	if err != nil || len(recs) != 0 {
		t.Errorf("new incarnation's audit: got %v, %v; want empty", recs, err)
	}
	// The refused calls did not bring the old store back.
	if _, err := os.Stat(filepath.Join(dir, "tenants", first.StorageID)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("old store directory after refused calls: %v, want none", err)
	}
}

var _ sqlite.Locator = (*control.Plane)(nil)

// deletedWhileOpening locates its tenant the first time and reports it
// unknown from then on, as if the tenant were deleted while its store opened.
type deletedWhileOpening struct{ calls atomic.Int32 }

func (l *deletedWhileOpening) StorageID(_ context.Context, inc tenant.Incarnation) (string, error) {
	if l.calls.Add(1) == 1 {
		return "acme0storage", nil
	}
	return "", store.ErrUnknownTenant
}

// TestDeletedWhileOpening deletes the tenant between locating its store and
// using it: the call is refused and leaves no directory behind.
func TestDeletedWhileOpening(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir, 0, &deletedWhileOpening{}, newKeys(t, storetest.Acme).Ring())
	scope := authtest.Scope(t, storetest.Acme, "alice")
	err := db.AppendMessages(t.Context(), scope, "s1", []store.Message{{Role: "user", Content: "late"}})
	if !errors.Is(err, store.ErrUnknownTenant) {
		t.Fatalf("AppendMessages: got %v, want ErrUnknownTenant", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "acme0storage")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("store directory of the deleted tenant: %v, want none", err)
	}
}
