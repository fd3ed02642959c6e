// Package controltest is the conformance suite of the control plane's
// backends: every backend runs the same tests, cross-tenant negatives
// included, and backends that serve several replicas also the tests of
// replicas following each other.
package controltest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/tools"
)

// Backend opens Planes on one durable store of its own.
type Backend struct {
	// Open opens a Plane on the store with kek. A call after the previous
	// Plane's Close is a restart; for RunReplicas, several Planes are open at
	// once, as replicas. The suite closes every Plane it opens.
	Open func(t testing.TB, kek keyring.KEK) (*control.Plane, error)
}

// Propagation bounds how long a replica may take to follow another's
// change in these tests: generous, so a loaded machine does not fail them;
// the figure itself is measured by the backends' benchmarks.
const Propagation = 5 * time.Second

type suiteTest struct {
	name string
	f    func(*testing.T, Backend)
}

// Run runs the suite every backend passes; newBackend returns a fresh,
// empty store per test.
func Run(t *testing.T, newBackend func(t *testing.T) Backend) {
	run(t, newBackend, []suiteTest{
		{"TenantLifecycle", testTenantLifecycle},
		{"Validation", testValidation},
		{"Keys", testKeys},
		{"KeyList", testKeyList},
		{"KeyMetadata", testKeyMetadata},
		{"Incarnations", testIncarnations},
		{"CrossTenant", testCrossTenant},
		{"DataKeys", testDataKeys},
		{"WrongMasterKey", testWrongMasterKey},
		{"RotateKEK", testRotateKEK},
		{"ToolCatalog", testToolCatalog},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"UpdateNeverReachesNextIncarnation", testUpdateNeverReachesNextIncarnation},
		{"Issuers", testIssuers},
		{"Usage", testUsage},
		{"UsageSaturates", testUsageSaturates},
	})
}

// RunReplicas runs the tests of several Planes open on one store at once,
// for backends that serve replicas.
func RunReplicas(t *testing.T, newBackend func(t *testing.T) Backend) {
	run(t, newBackend, []suiteTest{
		{"ReplicasFollow", testReplicasFollow},
		{"ReplicasConcurrentUpdates", testReplicasConcurrentUpdates},
		{"ReplicasCrossTenant", testReplicasCrossTenant},
		{"ReplicasUsage", testReplicasUsage},
	})
}

func run(t *testing.T, newBackend func(t *testing.T) Backend, tests []suiteTest) {
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.f(t, newBackend(t)) })
	}
}

// NewKEK returns a fresh local master key.
func NewKEK(t testing.TB) keyring.KEK {
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

// MustOpen opens a Plane on b, closed when the test ends.
func MustOpen(t testing.TB, b Backend, kek keyring.KEK) *control.Plane {
	t.Helper()
	p, err := b.Open(t, kek)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// NewTenant is a minimal valid tenant.
func NewTenant(id tenant.ID, prompt string) control.Tenant {
	return control.Tenant{ID: id, Name: string(id), Profiles: map[string]control.Profile{
		control.DefaultProfile: {SystemPrompt: prompt, Model: "offline/default"},
	}}
}

func create(t testing.TB, p *control.Plane, ids ...tenant.ID) {
	t.Helper()
	for _, id := range ids {
		if _, err := p.CreateTenant(context.Background(), NewTenant(id, "You are "+string(id)+".")); err != nil {
			t.Fatal(err)
		}
	}
}

// AddKey adds a new key for tenant id and returns its id.
func AddKey(t testing.TB, p *control.Plane, id tenant.ID) (tenant.KeyID, auth.KeyHash) {
	t.Helper()
	keyID, _, hash, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AddKey(context.Background(), id, keyID, hash); err != nil {
		t.Fatal(err)
	}
	return keyID, hash
}

func mustTenant(t testing.TB, p *control.Plane, id tenant.ID) control.Tenant {
	t.Helper()
	tn, err := p.Tenant(id)
	if err != nil {
		t.Fatal(err)
	}
	return tn
}

// full is a tenant using every field the control plane stores.
func full(id tenant.ID) control.Tenant {
	return control.Tenant{
		ID: id, Name: "Tenant " + string(id), Status: tenant.StatusActive,
		Profiles: map[string]control.Profile{
			control.DefaultProfile: {SystemPrompt: "You are " + string(id) + ".", Model: "offline/default", Tools: []string{"crm_lookup"}},
			"support":              {SystemPrompt: "Support.", Model: "offline/other", APIKeySecret: "openai_key", NoCache: true, CacheToolAnswers: true},
		},
		Limits:       control.Limits{RequestsPerMinute: 60, TokensPerMinute: 1000, MaxConcurrent: 4, TokenBudget: 1 << 40, BudgetPeriodHours: 24},
		Policy:       `forbid (principal, action, resource);`,
		AllowedHosts: []string{"example.com", "*.example.org"},
		Canaries:     []string{"canary-" + string(id)},
		Embedder:     "offline/embed",
	}
}

// sameStored compares what the control plane must keep of a tenant.
func sameStored(a, b control.Tenant) error {
	ja, _ := json.Marshal(struct {
		A, B any
	}{a.Profiles, []any{a.Limits, a.AllowedHosts, a.Canaries}})
	jb, _ := json.Marshal(struct {
		A, B any
	}{b.Profiles, []any{b.Limits, b.AllowedHosts, b.Canaries}})
	switch {
	case a.ID != b.ID || a.Name != b.Name || a.Status != b.Status || a.Policy != b.Policy || a.Embedder != b.Embedder:
		return fmt.Errorf("scalars differ: %+v vs %+v", a, b)
	case a.StorageID != b.StorageID || string(a.WrappedKey) != string(b.WrappedKey):
		return fmt.Errorf("storage id or wrapped key differ")
	case !a.CreatedAt.Equal(b.CreatedAt) || !a.UpdatedAt.Equal(b.UpdatedAt):
		return fmt.Errorf("times differ: %v/%v vs %v/%v", a.CreatedAt, a.UpdatedAt, b.CreatedAt, b.UpdatedAt)
	case string(ja) != string(jb):
		return fmt.Errorf("configuration differs: %s vs %s", ja, jb)
	}
	return nil
}

func testTenantLifecycle(t *testing.T, b Backend) {
	ctx := context.Background()
	kek := NewKEK(t)
	p := MustOpen(t, b, kek)

	acme, err := p.CreateTenant(ctx, full("acme"))
	if err != nil {
		t.Fatal(err)
	}
	if acme.Status != tenant.StatusActive || acme.StorageID == "" || len(acme.WrappedKey) == 0 {
		t.Fatalf("created tenant: status %q storage %q, want active, a storage id and a wrapped key", acme.Status, acme.StorageID)
	}
	if _, err := p.CreateTenant(ctx, NewTenant("acme", "again")); !errors.Is(err, kind.Conflict) {
		t.Fatalf("duplicate create: err = %v, want Conflict", err)
	}
	create(t, p, "globex", "initech")
	if got := p.Tenants(); len(got) != 3 || got[0].ID != "acme" || got[1].ID != "globex" || got[2].ID != "initech" {
		t.Fatalf("Tenants() = %v, want acme, globex, initech in order", got)
	}
	updated, err := p.UpdateTenant(ctx, "acme", func(t *control.Tenant) error {
		t.Status = tenant.StatusSuspended
		t.StorageID = "attacker-chosen" // must be ignored
		t.WrappedKey = []byte("attacker-chosen")
		t.Policy = "permit (principal, action, resource);"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if updated.StorageID != acme.StorageID || string(updated.WrappedKey) != string(acme.WrappedKey) || updated.Policy == acme.Policy {
		t.Fatalf("update: storage %q key changed %v policy %q", updated.StorageID, string(updated.WrappedKey) != string(acme.WrappedKey), updated.Policy)
	}
	if _, err := p.UpdateTenant(ctx, "nosuch", func(*control.Tenant) error { return nil }); !errors.Is(err, kind.NotFound) {
		t.Fatalf("update of unknown tenant: err = %v, want NotFound", err)
	}
	if _, err := p.UpdateTenant(ctx, "acme", func(t *control.Tenant) error { t.Limits.MaxConcurrent = -1; return nil }); !errors.Is(err, kind.Invalid) {
		t.Fatalf("invalid update: err = %v, want Invalid", err)
	}

	// Everything survives a restart, exactly.
	p.Close()
	p = MustOpen(t, b, kek)
	got := mustTenant(t, p, "acme")
	if err := sameStored(got, updated); err != nil {
		t.Fatalf("after reopen: %v", err)
	}
	deleted, err := p.DeleteTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if deleted.StorageID != acme.StorageID {
		t.Fatalf("DeleteTenant returned storage %q, want %q", deleted.StorageID, acme.StorageID)
	}
	if _, err := p.DeleteTenant(ctx, "acme"); !errors.Is(err, kind.NotFound) {
		t.Fatalf("second delete: err = %v, want NotFound", err)
	}
	if _, err := p.Tenant("acme"); !errors.Is(err, kind.NotFound) {
		t.Fatalf("deleted tenant: err = %v, want NotFound", err)
	}
	if _, err := p.StorageID(ctx, acme.Incarnation()); !errors.Is(err, store.ErrUnknownTenant) {
		t.Fatalf("StorageID of deleted tenant: err = %v, want ErrUnknownTenant", err)
	}
	if ids := p.StorageIDs(); ids[acme.StorageID] || len(ids) != 2 {
		t.Fatalf("StorageIDs after delete = %v", ids)
	}
	p.Close()
	p = MustOpen(t, b, kek)
	if _, err := p.Tenant("acme"); !errors.Is(err, kind.NotFound) {
		t.Fatalf("deleted tenant back after reopen: err = %v", err)
	}
}

func testValidation(t *testing.T, b Backend) {
	p := MustOpen(t, b, NewKEK(t))
	long := make([]byte, 64<<10+1)
	with := func(f func(*control.Tenant)) control.Tenant { t := NewTenant("acme", ""); f(&t); return t }
	tests := []struct {
		name string
		t    control.Tenant
	}{
		{"bad id", NewTenant("Acme!", "x")},
		{"no default profile", control.Tenant{ID: "acme", Profiles: map[string]control.Profile{"other": {Model: "offline/x"}}}},
		{"no model", control.Tenant{ID: "acme", Profiles: map[string]control.Profile{"default": {}}}},
		{"bad profile name", control.Tenant{ID: "acme", Profiles: map[string]control.Profile{"default": {Model: "m/x"}, "Bad Name": {Model: "m/x"}}}},
		{"prompt too long", NewTenant("acme", string(long))},
		{"negative limit", with(func(t *control.Tenant) { t.Limits.MaxConcurrent = -1 })},
		{"bad status", with(func(t *control.Tenant) { t.Status = "deleted" })},
		{"bad secret name", with(func(t *control.Tenant) {
			t.Profiles[control.DefaultProfile] = control.Profile{Model: "m/x", APIKeySecret: "../x"}
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := p.CreateTenant(context.Background(), tt.t); !errors.Is(err, kind.Invalid) {
				t.Fatalf("err = %v, want Invalid", err)
			}
		})
	}
	if len(p.Tenants()) != 0 {
		t.Fatalf("invalid tenants were stored: %v", p.Tenants())
	}
}

func testKeys(t *testing.T, b Backend) {
	ctx := context.Background()
	kek := NewKEK(t)
	p := MustOpen(t, b, kek)
	create(t, p, "acme", "globex")
	keyID, hash := AddKey(t, p, "acme")
	if err := p.AddKey(ctx, "nosuch", "0000000000000000", hash); !errors.Is(err, kind.NotFound) {
		t.Fatalf("key for unknown tenant: err = %v, want NotFound", err)
	}
	rec, ok := p.KeyRecord(keyID)
	if !ok || rec.Tenant != "acme" || rec.Hash != hash || rec.Status != tenant.StatusActive || rec.Incarnation != mustTenant(t, p, "acme").Incarnation() {
		t.Fatalf("KeyRecord = %+v, %v", rec, ok)
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
	if err := p.RevokeKey(ctx, "acme", keyID); !errors.Is(err, kind.NotFound) {
		t.Fatalf("second revoke: err = %v, want NotFound", err)
	}
	p.Close()
	p = MustOpen(t, b, kek)
	if _, ok := p.KeyRecord(keyID); ok {
		t.Fatal("revoked key found again after reopen")
	}

	// A tenant's keys survive a restart, and its delete.
	k2, h2 := AddKey(t, p, "globex")
	p.Close()
	p = MustOpen(t, b, kek)
	if rec, ok := p.KeyRecord(k2); !ok || rec.Hash != h2 || rec.Tenant != "globex" {
		t.Fatalf("key after reopen: %+v, %v", rec, ok)
	}
	if _, err := p.DeleteTenant(ctx, "globex"); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.KeyRecord(k2); ok {
		t.Fatal("deleted tenant's key still found")
	}
	p.Close()
	p = MustOpen(t, b, kek)
	if _, ok := p.KeyRecord(k2); ok {
		t.Fatal("deleted tenant's key back after reopen")
	}
}

// testKeyList lists a tenant's keys: its own, live and revoked, oldest
// first, never another tenant's; a missing tenant is not found.
func testKeyList(t *testing.T, b Backend) {
	ctx := context.Background()
	kek := NewKEK(t)
	p := MustOpen(t, b, kek)
	create(t, p, "acme", "globex", "initech")
	before := time.Now().Add(-time.Second)
	a1, _ := AddKey(t, p, "acme")
	g1, _ := AddKey(t, p, "globex")
	a2, _ := AddKey(t, p, "acme")
	if err := p.RevokeKey(ctx, "acme", a1); err != nil {
		t.Fatal(err)
	}
	after := time.Now().Add(time.Second)

	p.Close() // read back from the store, not from what this Plane wrote
	p = MustOpen(t, b, kek)
	keys, err := p.Keys(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].ID != a1 || keys[1].ID != a2 {
		t.Fatalf("acme's keys = %+v, want %s then %s", keys, a1, a2)
	}
	for _, k := range keys {
		if k.CreatedAt.Before(before) || k.CreatedAt.After(after) || k.CreatedAt.Location() != time.UTC {
			t.Errorf("key %s created at %v, want between %v and %v, UTC", k.ID, k.CreatedAt, before, after)
		}
	}
	if r := keys[0].RevokedAt; r == nil || r.Before(keys[0].CreatedAt) || r.After(after) {
		t.Errorf("revoked key %s: revoked at %v", a1, r)
	}
	if keys[1].RevokedAt != nil {
		t.Errorf("live key %s: revoked at %v", a2, keys[1].RevokedAt)
	}
	if keys, err := p.Keys(ctx, "globex"); err != nil || len(keys) != 1 || keys[0].ID != g1 {
		t.Errorf("globex's keys = %+v, %v; want only %s", keys, err, g1)
	}
	if keys, err := p.Keys(ctx, "initech"); err != nil || keys == nil || len(keys) != 0 {
		t.Errorf("initech's keys = %#v, %v; want an empty list", keys, err)
	}
	if _, err := p.Keys(ctx, "nosuch"); !errors.Is(err, kind.NotFound) {
		t.Errorf("keys of a missing tenant: err = %v, want NotFound", err)
	}
	// A deleted tenant's keys go with it, and a new tenant of that id has none.
	if _, err := p.DeleteTenant(ctx, "globex"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Keys(ctx, "globex"); !errors.Is(err, kind.NotFound) {
		t.Errorf("keys of a deleted tenant: err = %v, want NotFound", err)
	}
	create(t, p, "globex")
	if keys, err := p.Keys(ctx, "globex"); err != nil || len(keys) != 0 {
		t.Errorf("keys of a re-created tenant = %+v, %v; want none", keys, err)
	}
}

func testIncarnations(t *testing.T, b Backend) {
	ctx := context.Background()
	kek := NewKEK(t)
	p := MustOpen(t, b, kek)
	create(t, p, "acme")
	old := mustTenant(t, p, "acme")
	oldKey, _ := AddKey(t, p, "acme")
	if _, err := p.DeleteTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	create(t, p, "acme")
	cur := mustTenant(t, p, "acme")
	if cur.StorageID == old.StorageID || cur.Incarnation() == old.Incarnation() || string(cur.WrappedKey) == string(old.WrappedKey) {
		t.Fatal("re-created tenant reuses its predecessor's storage id, incarnation or data key")
	}
	// The earlier life's key does not authenticate the new one.
	if rec, ok := p.KeyRecord(oldKey); ok {
		t.Fatalf("old incarnation's key resolves: %+v", rec)
	}
	for name, f := range map[string]func() error{
		"Current":    func() error { return p.Current(ctx, old.Incarnation()) },
		"StorageID":  func() error { _, err := p.StorageID(ctx, old.Incarnation()); return err },
		"WrappedKey": func() error { _, err := p.WrappedKey(ctx, old.Incarnation()); return err },
	} {
		if err := f(); !errors.Is(err, store.ErrUnknownTenant) {
			t.Errorf("%s of the earlier incarnation: err = %v, want ErrUnknownTenant", name, err)
		}
	}
	if err := p.Current(ctx, cur.Incarnation()); err != nil {
		t.Fatalf("Current of the new incarnation: %v", err)
	}
	newKey, _ := AddKey(t, p, "acme")
	if rec, ok := p.KeyRecord(newKey); !ok || rec.Incarnation != cur.Incarnation() {
		t.Fatalf("new key's record = %+v, %v; want incarnation %s", rec, ok, cur.Incarnation())
	}
	// Deleting the earlier incarnation does not touch the new one.
	if _, err := p.DeleteIncarnation(ctx, old.Incarnation()); !errors.Is(err, kind.NotFound) {
		t.Fatalf("DeleteIncarnation(old): err = %v, want NotFound", err)
	}
	if _, err := p.DeleteIncarnation(ctx, tenant.NewIncarnation("acme", "")); !errors.Is(err, kind.NotFound) {
		t.Fatalf("DeleteIncarnation without storage id: err = %v, want NotFound", err)
	}
	p.Close()
	p = MustOpen(t, b, kek)
	if got := mustTenant(t, p, "acme"); got.Incarnation() != cur.Incarnation() {
		t.Fatalf("after reopen: incarnation %s, want %s", got.Incarnation(), cur.Incarnation())
	}
	if _, ok := p.KeyRecord(newKey); !ok {
		t.Fatal("new incarnation's key lost")
	}
	if _, err := p.DeleteIncarnation(ctx, cur.Incarnation()); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.KeyRecord(newKey); ok {
		t.Fatal("key of a deleted incarnation resolves")
	}
}

// testCrossTenant: nothing done to or by tenant A reaches tenant B.
func testCrossTenant(t *testing.T, b Backend) {
	ctx := context.Background()
	kek := NewKEK(t)
	p := MustOpen(t, b, kek)
	if _, err := p.CreateTenant(ctx, full("acme")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.CreateTenant(ctx, full("globex")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.CreateTool(ctx, httpTool("globex_export", "globex")); err != nil {
		t.Fatal(err)
	}
	aKey, aHash := AddKey(t, p, "acme")
	bKey, bHash := AddKey(t, p, "globex")
	globex := mustTenant(t, p, "globex")

	// A's key record resolves to A, never to B.
	if rec, ok := p.KeyRecord(aKey); !ok || rec.Tenant != "acme" || rec.Hash != aHash || rec.Incarnation.Tenant() != "acme" {
		t.Fatalf("A's key record = %+v, %v", rec, ok)
	}
	// B cannot revoke (or learn about) A's key.
	if err := p.RevokeKey(ctx, "globex", aKey); !errors.Is(err, kind.NotFound) {
		t.Fatalf("globex revoking acme's key: err = %v, want NotFound", err)
	}
	if _, ok := p.KeyRecord(aKey); !ok {
		t.Fatal("acme's key vanished after globex's revoke attempt")
	}
	// A's update cannot change B, even by renaming itself.
	if _, err := p.UpdateTenant(ctx, "acme", func(t *control.Tenant) error {
		t.ID = "globex"
		t.Name = "taken over"
		t.Status = tenant.StatusSuspended
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := sameStored(mustTenant(t, p, "globex"), globex); err != nil {
		t.Fatalf("acme's update changed globex: %v", err)
	}
	if got := mustTenant(t, p, "acme"); got.Name != "taken over" {
		t.Fatalf("acme's update went elsewhere: acme is %+v", got)
	}
	// Revoking A's key leaves B's.
	if err := p.RevokeKey(ctx, "acme", aKey); err != nil {
		t.Fatal(err)
	}
	if rec, ok := p.KeyRecord(bKey); !ok || rec.Tenant != "globex" || rec.Hash != bHash {
		t.Fatalf("globex's key after revoking acme's: %+v, %v", rec, ok)
	}
	// Deleting A leaves B intact: record, keys, tools, data key.
	a2, _ := AddKey(t, p, "acme")
	if _, err := p.DeleteTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		if err := sameStored(mustTenant(t, p, "globex"), globex); err != nil {
			t.Fatalf("%s: globex changed: %v", when, err)
		}
		if rec, ok := p.KeyRecord(bKey); !ok || rec.Tenant != "globex" {
			t.Fatalf("%s: globex's key = %+v, %v", when, rec, ok)
		}
		if _, ok := p.KeyRecord(a2); ok {
			t.Fatalf("%s: deleted acme's key resolves", when)
		}
		if tool, ok := p.Tool("globex_export"); !ok || tool.Owner != "globex" {
			t.Fatalf("%s: globex's tool = %+v, %v", when, tool, ok)
		}
		if _, err := p.WrappedKey(ctx, globex.Incarnation()); err != nil {
			t.Fatalf("%s: globex's data key: %v", when, err)
		}
	}
	check("after deleting acme")
	p.Close()
	p = MustOpen(t, b, kek)
	check("after reopen")
	// B's incarnation cannot be deleted under A's id, nor A's under B's.
	if _, err := p.DeleteIncarnation(ctx, tenant.NewIncarnation("acme", globex.StorageID)); !errors.Is(err, kind.NotFound) {
		t.Fatalf("deleting globex's storage under acme's id: err = %v, want NotFound", err)
	}
	check("after a foreign DeleteIncarnation")
}

func testDataKeys(t *testing.T, b Backend) {
	ctx := context.Background()
	kek := NewKEK(t)
	p := MustOpen(t, b, kek)
	create(t, p, "acme", "globex")
	ring := keyring.NewRing(kek, p, 0)
	oldAcme := mustTenant(t, p, "acme").Incarnation()
	acme, err := ring.Cipher(ctx, oldAcme)
	if err != nil {
		t.Fatal(err)
	}
	globex, err := ring.Cipher(ctx, mustTenant(t, p, "globex").Incarnation())
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
	create(t, p, "acme")
	// The earlier incarnation gets nothing, not even the new tenant's key.
	if _, err := ring.Cipher(ctx, oldAcme); !errors.Is(err, store.ErrUnknownTenant) {
		t.Fatalf("earlier incarnation after re-create: err = %v, want ErrUnknownTenant", err)
	}
	again, err := ring.Cipher(ctx, mustTenant(t, p, "acme").Incarnation())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Open(ct, "c"); !errors.Is(err, keyring.ErrDecrypt) {
		t.Fatalf("re-created tenant opened its predecessor's data: %v", err)
	}
}

func testWrongMasterKey(t *testing.T, b Backend) {
	kek := NewKEK(t)
	p := MustOpen(t, b, kek)
	create(t, p, "acme")
	p.Close()
	if p, err := b.Open(t, NewKEK(t)); !errors.Is(err, control.ErrWrongMasterKey) {
		if err == nil {
			p.Close()
		}
		t.Fatalf("Open with another master key: err = %v, want ErrWrongMasterKey", err)
	}
	// The right key still opens it.
	p = MustOpen(t, b, kek)
	mustTenant(t, p, "acme")
}

func testRotateKEK(t *testing.T, b Backend) {
	ctx := context.Background()
	oldKEK, newKEK := NewKEK(t), NewKEK(t)
	p := MustOpen(t, b, oldKEK)
	create(t, p, "acme")
	before, err := keyring.NewRing(oldKEK, p, 0).Cipher(ctx, mustTenant(t, p, "acme").Incarnation())
	if err != nil {
		t.Fatal(err)
	}
	ct := before.Seal([]byte("sealed before rotation"), "c")
	if err := p.RotateKEK(ctx, newKEK); err != nil {
		t.Fatal(err)
	}
	// The running Plane serves the rewrapped key at once.
	if _, err := keyring.NewRing(newKEK, p, 0).Cipher(ctx, mustTenant(t, p, "acme").Incarnation()); err != nil {
		t.Fatalf("data key under the new master key before restart: %v", err)
	}
	p.Close()
	if p, err := b.Open(t, oldKEK); !errors.Is(err, control.ErrWrongMasterKey) {
		if err == nil {
			p.Close()
		}
		t.Fatalf("old master key after rotation: err = %v, want ErrWrongMasterKey", err)
	}
	p = MustOpen(t, b, newKEK)
	after, err := keyring.NewRing(newKEK, p, 0).Cipher(ctx, mustTenant(t, p, "acme").Incarnation())
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := after.Open(ct, "c"); err != nil || string(pt) != "sealed before rotation" {
		t.Fatalf("data after rotation: %q, %v", pt, err)
	}
	create(t, p, "globex")
	if _, err := keyring.NewRing(newKEK, p, 0).Cipher(ctx, mustTenant(t, p, "globex").Incarnation()); err != nil {
		t.Fatalf("tenant created after rotation: %v", err)
	}
}

func httpTool(name string, owner tenant.ID) tools.Definition {
	return tools.Definition{Name: name, Description: "d", Scope: tools.ScopeTenant, Owner: owner,
		Parameters: json.RawMessage(`{"type":"object","properties":{"q":{"type":"string"}}}`),
		HTTP:       &tools.HTTPSpec{Method: "POST", URL: "http://127.0.0.1:9/x"}}
}

func testToolCatalog(t *testing.T, b Backend) {
	ctx := context.Background()
	kek := NewKEK(t)
	p := MustOpen(t, b, kek)
	create(t, p, "acme", "globex")
	if _, err := p.CreateTool(ctx, httpTool("crm_lookup", "")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.CreateTool(ctx, httpTool("globex_export", "globex")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		def  tools.Definition
		want error
	}{
		{"same name as the operator's tool", httpTool("crm_lookup", "acme"), kind.Conflict},
		{"same name as globex's tool", httpTool("globex_export", "acme"), kind.Conflict},
		{"unknown owner", httpTool("x", "initech"), kind.Invalid},
		{"invalid definition", tools.Definition{Name: "bad name"}, kind.Invalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := p.CreateTool(ctx, tt.def); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if tool, _ := p.Tool("globex_export"); tool.Owner != "globex" {
		t.Fatalf("acme's conflicting create changed globex's tool: owner %q", tool.Owner)
	}

	p.Close()
	p = MustOpen(t, b, kek)
	if got := p.Tools(); len(got) != 2 || got[0].Name != "crm_lookup" || got[1].Name != "globex_export" {
		t.Fatalf("after reopen: tools %v, want crm_lookup, globex_export", got)
	}
	if tool, ok := p.Tool("globex_export"); !ok || tool.Owner != "globex" || tool.HTTP == nil || tool.HTTP.URL != "http://127.0.0.1:9/x" {
		t.Fatalf("Tool(globex_export) = %+v, %v", tool, ok)
	}
	// A tenant's own tools go with it, and only its own.
	if _, err := p.DeleteTenant(ctx, "globex"); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Tool("globex_export"); ok {
		t.Fatal("deleted tenant's tool still in the catalog")
	}
	if _, ok := p.Tool("crm_lookup"); !ok {
		t.Fatal("the operator's tool went with a tenant")
	}
	p.Close()
	p = MustOpen(t, b, kek)
	if _, ok := p.Tool("globex_export"); ok {
		t.Fatal("deleted tenant's tool back after reopen")
	}
	if err := p.DeleteTool(ctx, "crm_lookup"); err != nil {
		t.Fatal(err)
	}
	if err := p.DeleteTool(ctx, "crm_lookup"); !errors.Is(err, kind.NotFound) {
		t.Fatalf("second delete: err = %v, want NotFound", err)
	}
	p.Close()
	p = MustOpen(t, b, kek)
	if len(p.Tools()) != 0 {
		t.Fatalf("tools after deleting all: %v", p.Tools())
	}
}

// increment adds one to the tenant's RequestsPerMinute through p.
func increment(ctx context.Context, p *control.Plane, id tenant.ID) error {
	_, err := p.UpdateTenant(ctx, id, func(t *control.Tenant) error {
		t.Limits.RequestsPerMinute++
		return nil
	})
	return err
}

// concurrentIncrements runs n increments of tenant acme spread over planes
// and checks none was lost: every update saw the one before it, or retried.
func concurrentIncrements(t *testing.T, n int, planes ...*control.Plane) {
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() { errs <- increment(ctx, planes[i%len(planes)], "acme") })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	p := planes[0]
	deadline := time.Now().Add(Propagation)
	for {
		got := mustTenant(t, p, "acme").Limits.RequestsPerMinute
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d concurrent increments: %d (updates lost)", n, got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testConcurrentUpdates(t *testing.T, b Backend) {
	kek := NewKEK(t)
	p := MustOpen(t, b, kek)
	create(t, p, "acme", "globex")
	concurrentIncrements(t, 40, p)
	p.Close()
	p = MustOpen(t, b, kek)
	if got := mustTenant(t, p, "acme").Limits.RequestsPerMinute; got != 40 {
		t.Fatalf("after reopen: %d, want 40", got)
	}
	if got := mustTenant(t, p, "globex").Limits.RequestsPerMinute; got != 0 {
		t.Fatalf("acme's updates changed globex: %d", got)
	}
}

// testUpdateNeverReachesNextIncarnation: a change computed on one life of a
// tenant is never stored into the next one; UpdateTenant runs it again on
// the new tenant instead.
func testUpdateNeverReachesNextIncarnation(t *testing.T, b Backend) {
	ctx := context.Background()
	p := MustOpen(t, b, NewKEK(t))
	create(t, p, "acme")
	first := true
	got, err := p.UpdateTenant(ctx, "acme", func(t *control.Tenant) error {
		if first {
			first = false
			if _, err := p.DeleteTenant(ctx, "acme"); err != nil {
				return err
			}
			if _, err := p.CreateTenant(ctx, NewTenant("acme", "")); err != nil {
				return err
			}
		}
		t.Name = "seen " + t.StorageID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cur := mustTenant(t, p, "acme")
	if got.Name != "seen "+cur.StorageID || cur.Name != got.Name {
		t.Fatalf("stored %q into incarnation %s: a change computed on the earlier incarnation", cur.Name, cur.StorageID)
	}
}

// Eventually waits until cond holds, and returns how long it took; it fails
// the test after Propagation.
func Eventually(t testing.TB, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > Propagation {
			t.Fatalf("%s: not seen within %v", what, Propagation)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

// changes collects what a Plane's OnChange hook reports.
type changes struct {
	mu  sync.Mutex
	all []control.Change
}

func watchChanges(p *control.Plane) *changes {
	c := &changes{}
	p.OnChange(func(ch control.Change) {
		c.mu.Lock()
		c.all = append(c.all, ch)
		c.mu.Unlock()
	})
	return c
}

func (c *changes) has(f func(control.Change) bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.ContainsFunc(c.all, f)
}

// testReplicasFollow: a change made through one replica is in force on the
// other at once (the bound is generous; the benchmark measures it), and the
// other's OnChange hook reports it.
func testReplicasFollow(t *testing.T, b Backend) {
	ctx := context.Background()
	kek := NewKEK(t)
	p1, p2 := MustOpen(t, b, kek), MustOpen(t, b, kek)
	seen, own := watchChanges(p2), watchChanges(p1)
	create(t, p1, "acme", "globex")
	Eventually(t, "created tenants", func() bool { _, err := p2.Tenant("globex"); return err == nil })
	key, _ := AddKey(t, p1, "acme")
	Eventually(t, "added key", func() bool { _, ok := p2.KeyRecord(key); return ok })
	gKey, _ := AddKey(t, p1, "globex")
	Eventually(t, "added key", func() bool { _, ok := p2.KeyRecord(gKey); return ok })

	update := func(f func(*control.Tenant)) {
		t.Helper()
		if _, err := p1.UpdateTenant(ctx, "acme", func(t *control.Tenant) error { f(t); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	acme := func() control.Tenant { return mustTenant(t, p2, "acme") }
	steps := []struct {
		name string
		do   func()
		seen func() bool
	}{
		{"suspend", func() { update(func(t *control.Tenant) { t.Status = tenant.StatusSuspended }) },
			func() bool {
				r, _ := p2.KeyRecord(key)
				return r.Status == tenant.StatusSuspended && seen.has(func(c control.Change) bool { return slices.Contains(c.Tenants, "acme") })
			}},
		{"resume", func() { update(func(t *control.Tenant) { t.Status = tenant.StatusActive }) },
			func() bool { r, _ := p2.KeyRecord(key); return r.Status == tenant.StatusActive }},
		{"profile", func() {
			update(func(t *control.Tenant) {
				t.Profiles["default"] = control.Profile{SystemPrompt: "new prompt", Model: "offline/x"}
			})
		}, func() bool { return acme().Profiles["default"].SystemPrompt == "new prompt" }},
		{"policy", func() { update(func(t *control.Tenant) { t.Policy = "forbid (principal, action, resource);" }) },
			func() bool { return acme().Policy == "forbid (principal, action, resource);" }},
		{"allowed hosts", func() { update(func(t *control.Tenant) { t.AllowedHosts = []string{"new.example"} }) },
			func() bool { return slices.Equal(acme().AllowedHosts, []string{"new.example"}) }},
		{"canaries", func() { update(func(t *control.Tenant) { t.Canaries = []string{"canary-1"} }) },
			func() bool { return slices.Equal(acme().Canaries, []string{"canary-1"}) }},
		{"tenant tool created", func() {
			if _, err := p1.CreateTool(ctx, httpTool("acme_lookup", "acme")); err != nil {
				t.Fatal(err)
			}
		}, func() bool { _, ok := p2.Tool("acme_lookup"); return ok }},
		{"operator tool created", func() {
			if _, err := p1.CreateTool(ctx, httpTool("crm_lookup", "")); err != nil {
				t.Fatal(err)
			}
		}, func() bool { _, ok := p2.Tool("crm_lookup"); return ok }},
		{"tool deleted", func() {
			if err := p1.DeleteTool(ctx, "crm_lookup"); err != nil {
				t.Fatal(err)
			}
		}, func() bool {
			_, ok := p2.Tool("crm_lookup")
			return !ok && seen.has(func(c control.Change) bool { return slices.Contains(c.Tools, "crm_lookup") })
		}},
		{"key revoked", func() {
			if err := p1.RevokeKey(ctx, "acme", key); err != nil {
				t.Fatal(err)
			}
		}, func() bool {
			_, ok := p2.KeyRecord(key)
			return !ok && seen.has(func(c control.Change) bool { return slices.Contains(c.RevokedKeys, key) })
		}},
	}
	for _, s := range steps {
		s.do()
		t.Logf("%s: in force on the other replica after %v", s.name, Eventually(t, s.name, s.seen))
	}
	if _, ok := p2.KeyRecord(gKey); !ok {
		t.Fatal("globex's key lost on the other replica while acme changed")
	}

	// Delete and re-create: the old incarnation ends everywhere, and its
	// keys do not authenticate the new one.
	old := acme()
	key2, _ := AddKey(t, p1, "acme")
	Eventually(t, "added key", func() bool { _, ok := p2.KeyRecord(key2); return ok })
	if _, err := p1.DeleteTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	t.Logf("delete: in force on the other replica after %v", Eventually(t, "delete", func() bool {
		_, ok := p2.KeyRecord(key2)
		_, err := p2.Tenant("acme")
		_, tool := p2.Tool("acme_lookup")
		return !ok && err != nil && !tool &&
			seen.has(func(c control.Change) bool { return slices.Contains(c.Ended, old.Incarnation()) })
	}))
	create(t, p1, "acme")
	cur := mustTenant(t, p1, "acme")
	t.Logf("re-create: in force on the other replica after %v", Eventually(t, "re-create", func() bool {
		t, err := p2.Tenant("acme")
		return err == nil && t.Incarnation() == cur.Incarnation()
	}))
	if _, ok := p2.KeyRecord(key2); ok {
		t.Fatal("the earlier incarnation's key resolves on the other replica")
	}
	if err := p2.Current(ctx, old.Incarnation()); !errors.Is(err, store.ErrUnknownTenant) {
		t.Fatalf("earlier incarnation on the other replica: err = %v, want ErrUnknownTenant", err)
	}

	// Rotating the master key: the other replica serves the rewrapped keys
	// and hears of the rotation.
	next := NewKEK(t)
	if err := p1.RotateKEK(ctx, next); err != nil {
		t.Fatal(err)
	}
	want := mustTenant(t, p1, "globex").WrappedKey
	t.Logf("KEK rotation: in force on the other replica after %v", Eventually(t, "KEK rotation", func() bool {
		return string(mustTenant(t, p2, "globex").WrappedKey) == string(want) &&
			seen.has(func(c control.Change) bool { return c.KEKRotated })
	}))
	// A replica still on the old master key cannot create tenants whose
	// data keys nobody else could open.
	if _, err := p2.CreateTenant(ctx, NewTenant("initech", "")); err == nil {
		t.Fatal("a replica on the retired master key created a tenant")
	}
	if _, err := keyring.NewRing(next, p2, 0).Cipher(ctx, mustTenant(t, p2, "globex").Incarnation()); err != nil {
		t.Fatalf("rewrapped key on the other replica: %v", err)
	}
	// The hooks report other replicas' changes, not a Plane's own.
	own.mu.Lock()
	defer own.mu.Unlock()
	if len(own.all) != 0 {
		t.Fatalf("the writing replica's hook reported its own changes: %+v", own.all)
	}
}

func testReplicasConcurrentUpdates(t *testing.T, b Backend) {
	kek := NewKEK(t)
	p1, p2 := MustOpen(t, b, kek), MustOpen(t, b, kek)
	create(t, p1, "acme")
	Eventually(t, "created tenant", func() bool { _, err := p2.Tenant("acme"); return err == nil })
	concurrentIncrements(t, 40, p1, p2)
	Eventually(t, "all increments", func() bool { return mustTenant(t, p2, "acme").Limits.RequestsPerMinute == 40 })

	// Both replicas creating the same tenant: exactly one succeeds.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, p := range []*control.Plane{p1, p2} {
		wg.Go(func() { _, errs[i] = p.CreateTenant(context.Background(), NewTenant("globex", "")) })
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("concurrent creates of one tenant on two replicas: %v, %v; want one success and one Conflict", errs[0], errs[1])
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, kind.Conflict) {
			t.Fatalf("losing create: err = %v, want Conflict", err)
		}
	}
}

// testReplicasCrossTenant: the cross-tenant negatives with the attacker's
// calls alternating replicas.
func testReplicasCrossTenant(t *testing.T, b Backend) {
	ctx := context.Background()
	kek := NewKEK(t)
	p1, p2 := MustOpen(t, b, kek), MustOpen(t, b, kek)
	create(t, p1, "acme", "globex")
	aKey, _ := AddKey(t, p1, "acme")
	bKey, _ := AddKey(t, p1, "globex")
	Eventually(t, "keys", func() bool {
		_, a := p2.KeyRecord(aKey)
		_, b := p2.KeyRecord(bKey)
		return a && b
	})
	globex := mustTenant(t, p2, "globex")
	if err := p2.RevokeKey(ctx, "acme", bKey); !errors.Is(err, kind.NotFound) {
		t.Fatalf("acme revoking globex's key on the other replica: err = %v, want NotFound", err)
	}
	if _, err := p2.UpdateTenant(ctx, "acme", func(t *control.Tenant) error { t.ID = "globex"; t.Status = tenant.StatusSuspended; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := p1.RevokeKey(ctx, "acme", aKey); err != nil {
		t.Fatal(err)
	}
	if _, err := p2.DeleteTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	for i, p := range []*control.Plane{p1, p2} {
		Eventually(t, "acme deleted", func() bool { _, err := p.Tenant("acme"); return err != nil })
		if rec, ok := p.KeyRecord(bKey); !ok || rec.Tenant != "globex" || rec.Status != tenant.StatusActive {
			t.Fatalf("replica %d: globex's key = %+v, %v", i+1, rec, ok)
		}
		if err := sameStored(mustTenant(t, p, "globex"), globex); err != nil {
			t.Fatalf("replica %d: globex changed: %v", i+1, err)
		}
	}
}

// testKeyMetadata: a key's name and expiry are stored with it and survive a
// restart; the expiry reaches authentication (KeyRecord); last-used times
// show in the listing at once and are stored only when flushed, the newest
// winning, and only on the tenant's own key.
func testKeyMetadata(t *testing.T, b Backend) {
	ctx := context.Background()
	kek := NewKEK(t)
	p := MustOpen(t, b, kek)
	create(t, p, "acme", "globex")
	expires := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	named, _, hash, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AddKeyWith(ctx, "acme", named, hash, control.KeyOptions{Name: "ci deploy", ExpiresAt: expires}); err != nil {
		t.Fatal(err)
	}
	plain, _ := AddKey(t, p, "acme")
	other, _ := AddKey(t, p, "globex")
	if err := p.AddKeyWith(ctx, "acme", "k_bad", hash, control.KeyOptions{Name: "tab\there"}); !errors.Is(err, kind.Invalid) {
		t.Errorf("a name with a control character: err = %v, want Invalid", err)
	}
	if rec, ok := p.KeyRecord(named); !ok || !rec.ExpiresAt.Equal(expires) {
		t.Errorf("KeyRecord(named).ExpiresAt = %v, %v; want %v", rec.ExpiresAt, ok, expires)
	}

	p.KeyUsed(named)
	keys, err := p.Keys(ctx, "acme")
	if err != nil || len(keys) != 2 {
		t.Fatalf("acme's keys = %+v, %v", keys, err)
	}
	if keys[0].LastUsedAt == nil || keys[1].LastUsedAt != nil {
		t.Errorf("before the flush: last used %v and %v, want a time and nil", keys[0].LastUsedAt, keys[1].LastUsedAt)
	}
	if err := p.FlushKeyUse(ctx); err != nil {
		t.Fatal(err)
	}
	usedAt := *keys[0].LastUsedAt
	p.Close() // read back from the store
	p = MustOpen(t, b, kek)
	if rec, ok := p.KeyRecord(named); !ok || !rec.ExpiresAt.Equal(expires) {
		t.Errorf("after a restart: KeyRecord(named).ExpiresAt = %v, %v; want %v", rec.ExpiresAt, ok, expires)
	}
	if rec, ok := p.KeyRecord(plain); !ok || !rec.ExpiresAt.IsZero() {
		t.Errorf("KeyRecord(plain).ExpiresAt = %v, %v; want zero", rec.ExpiresAt, ok)
	}
	keys, err = p.Keys(ctx, "acme")
	if err != nil || len(keys) != 2 {
		t.Fatalf("acme's keys = %+v, %v", keys, err)
	}
	k := keys[0]
	if k.ID != named || k.Name != "ci deploy" || k.ExpiresAt == nil || !k.ExpiresAt.Equal(expires) ||
		k.LastUsedAt == nil || k.LastUsedAt.Sub(usedAt).Abs() > time.Millisecond {
		t.Errorf("named key = %+v (expires %v, last used %v); want name, expiry %v, last used %v", k, k.ExpiresAt, k.LastUsedAt, expires, usedAt)
	}
	if keys[1].Name != "" || keys[1].ExpiresAt != nil || keys[1].LastUsedAt != nil {
		t.Errorf("plain key = %+v, want no name, expiry or use", keys[1])
	}
	if keys, err := p.Keys(ctx, "globex"); err != nil || len(keys) != 1 || keys[0].ID != other || keys[0].LastUsedAt != nil {
		t.Errorf("globex's keys = %+v, %v; want %s, never used", keys, err, other)
	}
}
