package control_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// testKEK is one master key for the whole test binary.
var testKEK = func() *keyring.LocalKEK {
	k, err := keyring.NewKey()
	if err != nil {
		panic(err)
	}
	kek, err := keyring.NewLocalKEK(k)
	if err != nil {
		panic(err)
	}
	return kek
}()

func open(t testing.TB, path string) *control.Plane {
	t.Helper()
	return openWith(t, path, testKEK)
}

func openWith(t testing.TB, path string, kek keyring.KEK) *control.Plane {
	t.Helper()
	p, err := control.Open(context.Background(), path, kek, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func newTenant(id tenant.ID, prompt string) control.Tenant {
	return control.Tenant{ID: id, Name: string(id), Profiles: map[string]control.Profile{
		control.DefaultProfile: {SystemPrompt: prompt, Model: "offline/default"},
	}}
}

func TestTenantLifecycle(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "control.db")
	p := open(t, path)

	acme, err := p.CreateTenant(ctx, newTenant("acme", "You are Acme."))
	if err != nil {
		t.Fatal(err)
	}
	if acme.Status != tenant.StatusActive || acme.StorageID == "" {
		t.Fatalf("created tenant: status %q storage %q, want active and a storage id", acme.Status, acme.StorageID)
	}
	if _, err := p.CreateTenant(ctx, newTenant("acme", "again")); !errors.Is(err, kind.Conflict) {
		t.Fatalf("duplicate create: err = %v, want Conflict", err)
	}
	if _, err := p.UpdateTenant(ctx, "acme", func(t *control.Tenant) error {
		t.Status = tenant.StatusSuspended
		t.StorageID = "attacker-chosen" // must be ignored
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// Everything survives a restart.
	p.Close()
	p = open(t, path)
	got, err := p.Tenant("acme")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != tenant.StatusSuspended || got.StorageID != acme.StorageID || got.Profiles["default"].SystemPrompt != "You are Acme." {
		t.Fatalf("after reopen: got %+v", got)
	}

	deleted, err := p.DeleteTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if deleted.StorageID != acme.StorageID {
		t.Fatalf("DeleteTenant returned storage %q, want %q", deleted.StorageID, acme.StorageID)
	}
	if _, err := p.Tenant("acme"); !errors.Is(err, kind.NotFound) {
		t.Fatalf("deleted tenant: err = %v, want NotFound", err)
	}
	if _, err := p.StorageID(ctx, acme.Incarnation()); !errors.Is(err, store.ErrUnknownTenant) {
		t.Fatalf("StorageID of deleted tenant: err = %v, want ErrUnknownTenant", err)
	}
	again, err := p.CreateTenant(ctx, newTenant("acme", "new"))
	if err != nil {
		t.Fatal(err)
	}
	if again.StorageID == acme.StorageID {
		t.Fatal("re-created tenant reuses its predecessor's storage id")
	}
}

func TestValidation(t *testing.T) {
	p := open(t, filepath.Join(t.TempDir(), "control.db"))
	long := make([]byte, 64<<10+1)
	tests := []struct {
		name string
		t    control.Tenant
	}{
		{"bad id", newTenant("Acme!", "x")},
		{"no default profile", control.Tenant{ID: "acme", Profiles: map[string]control.Profile{"other": {Model: "offline/x"}}}},
		{"no model", control.Tenant{ID: "acme", Profiles: map[string]control.Profile{"default": {}}}},
		{"bad profile name", control.Tenant{ID: "acme", Profiles: map[string]control.Profile{"default": {Model: "m/x"}, "Bad Name": {Model: "m/x"}}}},
		{"prompt too long", newTenant("acme", string(long))},
		{"negative limit", func() control.Tenant { t := newTenant("acme", ""); t.Limits.MaxConcurrent = -1; return t }()},
		{"bad status", func() control.Tenant { t := newTenant("acme", ""); t.Status = "deleted"; return t }()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := p.CreateTenant(context.Background(), tt.t); !errors.Is(err, kind.Invalid) {
				t.Fatalf("err = %v, want Invalid", err)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "control.db")
	p := open(t, path)
	for _, id := range []tenant.ID{"acme", "globex"} {
		if _, err := p.CreateTenant(ctx, newTenant(id, "")); err != nil {
			t.Fatal(err)
		}
	}
	keyID, _, hash, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AddKey(ctx, "acme", keyID, hash); err != nil {
		t.Fatal(err)
	}
	if err := p.AddKey(ctx, "nosuch", "0000000000000000", hash); !errors.Is(err, kind.NotFound) {
		t.Fatalf("key for unknown tenant: err = %v, want NotFound", err)
	}
	rec, ok := p.KeyRecord(keyID)
	if !ok || rec.Tenant != "acme" || rec.Hash != hash || rec.Status != tenant.StatusActive {
		t.Fatalf("KeyRecord = %+v, %v", rec, ok)
	}
	// globex cannot revoke (or learn about) acme's key.
	if err := p.RevokeKey(ctx, "globex", keyID); !errors.Is(err, kind.NotFound) {
		t.Fatalf("globex revoking acme's key: err = %v, want NotFound", err)
	}
	if _, ok := p.KeyRecord(keyID); !ok {
		t.Fatal("acme's key vanished after globex's revoke attempt")
	}
	// Suspension shows in the key record at once.
	if _, err := p.UpdateTenant(ctx, "acme", func(t *control.Tenant) error { t.Status = tenant.StatusSuspended; return nil }); err != nil {
		t.Fatal(err)
	}
	if rec, _ := p.KeyRecord(keyID); rec.Status != tenant.StatusSuspended {
		t.Fatalf("status after suspend = %q", rec.Status)
	}
	if err := p.RevokeKey(ctx, "acme", keyID); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.KeyRecord(keyID); ok {
		t.Fatal("revoked key still found")
	}
	p.Close()
	p = open(t, path)
	if _, ok := p.KeyRecord(keyID); ok {
		t.Fatal("revoked key found again after reopen")
	}

	// Deleting a tenant drops its keys.
	k2, _, h2, _ := auth.NewKey()
	if err := p.AddKey(ctx, "globex", k2, h2); err != nil {
		t.Fatal(err)
	}
	if _, err := p.DeleteTenant(ctx, "globex"); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.KeyRecord(k2); ok {
		t.Fatal("deleted tenant's key still found")
	}
}

func newKEK(t *testing.T) *keyring.LocalKEK {
	t.Helper()
	k, err := keyring.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	kek, err := keyring.NewLocalKEK(k)
	if err != nil {
		t.Fatal(err)
	}
	return kek
}

func TestWrongMasterKeyFailsAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.db")
	p := openWith(t, path, newKEK(t))
	if _, err := p.CreateTenant(context.Background(), newTenant("acme", "")); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if _, err := control.Open(context.Background(), path, newKEK(t), nil); !errors.Is(err, control.ErrWrongMasterKey) {
		t.Fatalf("Open with another master key: err = %v, want ErrWrongMasterKey", err)
	}
}

func TestDataKeys(t *testing.T) {
	ctx := context.Background()
	kek := newKEK(t)
	p := openWith(t, filepath.Join(t.TempDir(), "control.db"), kek)
	for _, id := range []tenant.ID{"acme", "globex"} {
		if _, err := p.CreateTenant(ctx, newTenant(id, "")); err != nil {
			t.Fatal(err)
		}
	}
	ring := keyring.NewRing(kek, p, 0)
	oldAcme := incarnation(t, p, "acme")
	acme, err := ring.Cipher(ctx, oldAcme)
	if err != nil {
		t.Fatal(err)
	}
	globex, err := ring.Cipher(ctx, incarnation(t, p, "globex"))
	if err != nil {
		t.Fatal(err)
	}
	ct := acme.Seal([]byte("acme data"), "c")
	if _, err := globex.Open(ct, "c"); !errors.Is(err, keyring.ErrDecrypt) {
		t.Fatalf("globex opened acme's data: %v", err)
	}
	if _, err := p.DeleteTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	ring.Forget(oldAcme)
	if _, err := ring.Cipher(ctx, oldAcme); !errors.Is(err, store.ErrUnknownTenant) {
		t.Fatalf("deleted tenant's key: err = %v, want ErrUnknownTenant", err)
	}
	if _, err := p.CreateTenant(ctx, newTenant("acme", "")); err != nil {
		t.Fatal(err)
	}
	// The earlier incarnation gets nothing, not even the new tenant's key.
	if _, err := ring.Cipher(ctx, oldAcme); !errors.Is(err, store.ErrUnknownTenant) {
		t.Fatalf("earlier incarnation after re-create: err = %v, want ErrUnknownTenant", err)
	}
	again, err := ring.Cipher(ctx, incarnation(t, p, "acme"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Open(ct, "c"); !errors.Is(err, keyring.ErrDecrypt) {
		t.Fatalf("re-created tenant opened its predecessor's data: %v", err)
	}
}

// incarnation returns tenant id's current incarnation.
func incarnation(t *testing.T, p *control.Plane, id tenant.ID) tenant.Incarnation {
	t.Helper()
	tn, err := p.Tenant(id)
	if err != nil {
		t.Fatal(err)
	}
	return tn.Incarnation()
}

func TestRotateKEK(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "control.db")
	oldKEK, newKEKv := newKEK(t), newKEK(t)
	p := openWith(t, path, oldKEK)
	if _, err := p.CreateTenant(ctx, newTenant("acme", "")); err != nil {
		t.Fatal(err)
	}
	before, err := keyring.NewRing(oldKEK, p, 0).Cipher(ctx, incarnation(t, p, "acme"))
	if err != nil {
		t.Fatal(err)
	}
	ct := before.Seal([]byte("sealed before rotation"), "c")
	if err := p.RotateKEK(ctx, newKEKv); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if _, err := control.Open(ctx, path, oldKEK, nil); !errors.Is(err, control.ErrWrongMasterKey) {
		t.Fatalf("old master key after rotation: err = %v, want ErrWrongMasterKey", err)
	}
	p = openWith(t, path, newKEKv)
	after, err := keyring.NewRing(newKEKv, p, 0).Cipher(ctx, incarnation(t, p, "acme"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := after.Open(ct, "c"); err != nil || string(pt) != "sealed before rotation" {
		t.Fatalf("data after rotation: %q, %v", pt, err)
	}
	if _, err := p.CreateTenant(ctx, newTenant("globex", "")); err != nil {
		t.Fatalf("create after rotation: %v", err)
	}
}

// BenchmarkAuthenticate is key verification plus Scope creation per request
// against the real control plane holding 10,000 tenants.
func BenchmarkAuthenticate(b *testing.B) {
	ctx := context.Background()
	p := open(b, filepath.Join(b.TempDir(), "control.db"))
	var token string
	for i := range 10_000 {
		id := tenant.ID(fmt.Sprintf("t%05d", i))
		if _, err := p.CreateTenant(ctx, newTenant(id, "")); err != nil {
			b.Fatal(err)
		}
		keyID, secret, hash, err := auth.NewKey()
		if err != nil {
			b.Fatal(err)
		}
		if err := p.AddKey(ctx, id, keyID, hash); err != nil {
			b.Fatal(err)
		}
		token = secret.Reveal()
	}
	a, err := auth.New(p, "admin-token-for-benchmarks")
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.Tenant(r); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func tenantID(s string) tenant.ID { return tenant.ID(s) }
