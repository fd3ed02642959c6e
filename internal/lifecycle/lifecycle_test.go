package lifecycle_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/lifecycle"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// recorder stands in for every holder of per-tenant state and records what
// it was told.
type recorder struct {
	mu    sync.Mutex
	calls []string
	fail  map[string]bool // holders whose call fails
}

func (r *recorder) note(what string, inc tenant.Incarnation) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, what+" "+string(inc))
	if r.fail[what] {
		return errors.New(what + " is down")
	}
	return nil
}

func (r *recorder) Forget(inc tenant.Incarnation) { r.note("forget", inc) }
func (r *recorder) Create(_ context.Context, inc tenant.Incarnation) error {
	return r.note("create", inc)
}
func (r *recorder) Drop(_ context.Context, inc tenant.Incarnation) error {
	return r.note("drop", inc)
}
func (r *recorder) DeleteTenant(_ context.Context, inc tenant.Incarnation) error {
	return r.note("cache", inc)
}
func (r *recorder) DropTenant(inc tenant.Incarnation) int   { r.note("embeddings", inc); return 0 }
func (r *recorder) InvalidateTenant(inc tenant.Incarnation) { r.note("vectors", inc) }
func (r *recorder) CloseTenant(inc tenant.Incarnation)      { r.note("mcp", inc) }
func (r *recorder) SetCanaries(id tenant.ID, _ []string)    { r.note("canaries", tenant.Incarnation(id)) }
func (r *recorder) AddText(id tenant.ID, _ string)          { r.note("text", tenant.Incarnation(id)) }
func (r *recorder) RemoveTenant(id tenant.ID)               { r.note("guard", tenant.Incarnation(id)) }

type quotaRecorder struct{ *recorder }

func (q quotaRecorder) Forget(_ context.Context, inc tenant.Incarnation) error {
	return q.note("quota", inc)
}

func parts(r *recorder) lifecycle.Parts {
	return lifecycle.Parts{DataKeys: r, Store: r, ResponseCache: r, EmbeddingCache: r, VectorIndexes: r,
		Quota: quotaRecorder{r}, ToolSessions: r, Guard: r, Audit: r}
}

func openPlane(t *testing.T) *control.Plane {
	t.Helper()
	master, err := keyring.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	kek, err := keyring.NewLocalKEK(master)
	if err != nil {
		t.Fatal(err)
	}
	p, err := control.Open(t.Context(), filepath.Join(t.TempDir(), "control.db"), kek, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func newTenant(id tenant.ID) control.Tenant {
	return control.Tenant{ID: id, Canaries: []string{"bhc-canary"},
		Profiles: map[string]control.Profile{control.DefaultProfile: {Model: "offline/default", SystemPrompt: "be brief"}}}
}

// TestNewRefusesMissingParts leaves out each holder in turn: New must refuse,
// since that holder's state would outlive deleted tenants.
func TestNewRefusesMissingParts(t *testing.T) {
	p := openPlane(t)
	full := parts(&recorder{})
	if _, err := lifecycle.New(p, full, nil); err != nil {
		t.Fatalf("New with every part: %v", err)
	}
	v := reflect.ValueOf(full)
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		if name == "Extra" {
			continue
		}
		missing := full
		reflect.ValueOf(&missing).Elem().Field(i).SetZero()
		if _, err := lifecycle.New(p, missing, nil); err == nil {
			t.Errorf("New without %s: got nil error, want a refusal", name)
		}
	}
}

// TestOffboardReachesEveryHolder deletes a tenant: every holder hears of
// the deleted incarnation, one failing does not stop the others, and the
// control record is gone first.
func TestOffboardReachesEveryHolder(t *testing.T) {
	p := openPlane(t)
	r := &recorder{fail: map[string]bool{"cache": true}}
	l, err := lifecycle.New(p, parts(r), nil)
	if err != nil {
		t.Fatal(err)
	}
	created, err := l.Provision(t.Context(), newTenant("acme"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"canaries acme", "text acme", "create " + string(created.Incarnation())}; !slices.Equal(r.calls, want) {
		t.Fatalf("provision calls: got %q, want %q", r.calls, want)
	}
	r.calls = nil
	_, err = l.Offboard(t.Context(), "acme")
	if err == nil {
		t.Error("Offboard with a failing cache: got nil error, want it reported")
	}
	inc := string(created.Incarnation())
	want := []string{"forget " + inc, "mcp " + inc, "forget " + inc, "guard acme", "quota " + inc,
		"cache " + inc, "embeddings " + inc, "vectors " + inc, "drop " + inc}
	if !slices.Equal(r.calls, want) {
		t.Errorf("offboard calls: got %q, want %q", r.calls, want)
	}
	if _, err := p.Tenant("acme"); err == nil {
		t.Error("the control record survived Offboard")
	}
}

// TestProvisionUndoneOnFailure makes a participant's Provision fail: the
// tenant is not left half made.
func TestProvisionUndoneOnFailure(t *testing.T) {
	p := openPlane(t)
	r := &recorder{}
	pa := parts(r)
	pa.Extra = []lifecycle.Participant{lifecycle.Func{Label: "honey", ProvisionFunc: func(context.Context, control.Tenant) error {
		return errors.New("store down")
	}}}
	l, err := lifecycle.New(p, pa, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Provision(t.Context(), newTenant("acme")); err == nil {
		t.Fatal("Provision with a failing participant: got nil error")
	}
	if _, err := p.Tenant("acme"); err == nil {
		t.Error("the control record of a failed Provision survived")
	}
	if !slices.ContainsFunc(r.calls, func(c string) bool { return len(c) > 5 && c[:5] == "drop " }) {
		t.Errorf("the failed tenant's store was not dropped: %q", r.calls)
	}
}

// scopeFor authenticates key against p, as the tenant API does.
func scopeFor(t *testing.T, a *auth.Authenticator, key string) auth.Scope {
	t.Helper()
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	s, err := a.Tenant(req)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTrackCancels tracks requests and ends their access in each way: the
// right requests are cancelled with ErrGone, others go on. A change made
// between authentication and Track cancels at once.
// keyMaker returns a function that adds a key to a tenant of p and returns
// the Scope authenticating with it gives.
func keyMaker(t *testing.T, p *control.Plane) func(id tenant.ID) auth.Scope {
	authn, err := auth.New(p, "admin-token-for-lifecycle-tests")
	if err != nil {
		t.Fatal(err)
	}
	return func(id tenant.ID) auth.Scope {
		keyID, secret, hash, err := auth.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		if err := p.AddKey(t.Context(), id, keyID, hash); err != nil {
			t.Fatal(err)
		}
		return scopeFor(t, authn, secret.Reveal())
	}
}

func TestTrackCancels(t *testing.T) {
	p := openPlane(t)
	l, err := lifecycle.New(p, parts(&recorder{}), nil)
	if err != nil {
		t.Fatal(err)
	}
	newKey := keyMaker(t, p)
	for _, id := range []tenant.ID{"acme", "globex"} {
		if _, err := l.Provision(t.Context(), newTenant(id)); err != nil {
			t.Fatal(err)
		}
	}
	acme1, acme2, globex := newKey("acme"), newKey("acme"), newKey("globex")
	track := func(s auth.Scope) context.Context {
		ctx, done := l.Track(context.Background(), s)
		t.Cleanup(done)
		return ctx
	}
	gone := func(ctx context.Context) bool { return errors.Is(context.Cause(ctx), lifecycle.ErrGone) }

	c1, c2, cg := track(acme1), track(acme2), track(globex)
	if err := l.RevokeKey(t.Context(), "acme", acme1.Key()); err != nil {
		t.Fatal(err)
	}
	if !gone(c1) || gone(c2) || gone(cg) {
		t.Fatalf("after revoking acme's first key: cancelled %v %v %v, want true false false", gone(c1), gone(c2), gone(cg))
	}
	// Revoked before Track: cancelled at once.
	if c := track(acme1); !gone(c) {
		t.Error("a request of a revoked key tracked after the revoke was not cancelled")
	}
	if _, err := l.Update(t.Context(), "acme", func(tn *control.Tenant) error { tn.Status = tenant.StatusSuspended; return nil }); err != nil {
		t.Fatal(err)
	}
	if !gone(c2) || gone(cg) {
		t.Fatalf("after suspending acme: cancelled %v %v, want true false", gone(c2), gone(cg))
	}
	if c := track(acme2); !gone(c) {
		t.Error("a request of a suspended tenant tracked after the suspend was not cancelled")
	}
	if _, err := l.Offboard(t.Context(), "globex"); err != nil {
		t.Fatal(err)
	}
	if !gone(cg) {
		t.Error("globex's request survived its deletion")
	}
	// Re-created: the old Scope's request is cancelled at once, a new one is not.
	if _, err := l.Provision(t.Context(), newTenant("globex")); err != nil {
		t.Fatal(err)
	}
	if c := track(globex); !gone(c) {
		t.Error("a request of the deleted incarnation was not cancelled after the re-create")
	}
	if c := track(newKey("globex")); gone(c) {
		t.Error("the re-created tenant's request was cancelled")
	}
	if n := l.InFlight(globex.Incarnation()); n != 1 {
		t.Errorf("tracked requests of the old incarnation: %d, want 1 (until done)", n)
	}
}

// TestFollowCancelsWhatAnotherReplicaChanged makes the changes through the
// control plane directly, as another replica does, and tells the lifecycle
// only what OnChange would: its requests in flight are cancelled all the
// same, and an ended incarnation's state is dropped.
func TestFollowCancelsWhatAnotherReplicaChanged(t *testing.T) {
	p := openPlane(t)
	rec := &recorder{}
	l, err := lifecycle.New(p, parts(rec), nil)
	if err != nil {
		t.Fatal(err)
	}
	newKey := keyMaker(t, p)
	for _, id := range []tenant.ID{"acme", "globex", "initech"} {
		if _, err := l.Provision(t.Context(), newTenant(id)); err != nil {
			t.Fatal(err)
		}
	}
	track := func(s auth.Scope) context.Context {
		ctx, done := l.Track(context.Background(), s)
		t.Cleanup(done)
		return ctx
	}
	gone := func(ctx context.Context) bool { return errors.Is(context.Cause(ctx), lifecycle.ErrGone) }
	acme, globex, initech := newKey("acme"), newKey("globex"), newKey("initech")
	ca, cg, ci := track(acme), track(globex), track(initech)

	if err := p.RevokeKey(t.Context(), "acme", acme.Key()); err != nil {
		t.Fatal(err)
	}
	l.Follow(t.Context(), control.Change{RevokedKeys: []tenant.KeyID{acme.Key()}})
	if !gone(ca) || gone(cg) || gone(ci) {
		t.Fatalf("after a remote revoke of acme's key: cancelled %v %v %v, want true false false", gone(ca), gone(cg), gone(ci))
	}
	if _, err := p.UpdateTenant(t.Context(), "globex", func(tn *control.Tenant) error { tn.Status = tenant.StatusSuspended; return nil }); err != nil {
		t.Fatal(err)
	}
	l.Follow(t.Context(), control.Change{Tenants: []tenant.ID{"globex"}})
	if !gone(cg) || gone(ci) {
		t.Fatalf("after a remote suspend of globex: cancelled %v %v, want true false", gone(cg), gone(ci))
	}
	ended, err := p.DeleteTenant(t.Context(), "initech")
	if err != nil {
		t.Fatal(err)
	}
	l.Follow(t.Context(), control.Change{Tenants: []tenant.ID{"initech"}, Ended: []tenant.Incarnation{ended.Incarnation()}})
	if !gone(ci) {
		t.Fatal("initech's request survived its remote deletion")
	}
	rec.mu.Lock()
	calls := slices.Clone(rec.calls)
	rec.mu.Unlock()
	if !slices.Contains(calls, "vectors "+string(ended.Incarnation())) {
		t.Errorf("the ended incarnation's vector indexes were not dropped: %v", calls)
	}
}

// BenchmarkTrack measures what tracking adds to every tenant API request.
func BenchmarkTrack(b *testing.B) {
	master, _ := keyring.NewKey()
	kek, _ := keyring.NewLocalKEK(master)
	p, err := control.Open(b.Context(), filepath.Join(b.TempDir(), "control.db"), kek, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	l, err := lifecycle.New(p, parts(&recorder{}), nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := l.Provision(b.Context(), newTenant("acme")); err != nil {
		b.Fatal(err)
	}
	keyID, secret, hash, _ := auth.NewKey()
	if err := p.AddKey(b.Context(), "acme", keyID, hash); err != nil {
		b.Fatal(err)
	}
	authn, _ := auth.New(p, "admin-token-for-lifecycle-tests")
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", "Bearer "+secret.Reveal())
	scope, err := authn.Tenant(req)
	if err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, done := l.Track(context.Background(), scope)
			done()
		}
	})
}
