package audit_test

import (
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/audit"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// TestQueuesPerIncarnation records events of a deleted tenant's incarnation
// and of the tenant created again under its id, in one batch window: each
// incarnation's events are stored under its own Scope only, and Forget drops
// what the deleted one still had pending.
func TestQueuesPerIncarnation(t *testing.T) {
	s := &fakeStore{}
	l := audit.NewLog(s, audit.Options{})
	oldInc, newInc := tenant.NewIncarnation("acme", "0a"), tenant.NewIncarnation("acme", "0b")
	old, cur := authtest.ScopeIn(t, oldInc, ""), authtest.ScopeIn(t, newInc, "")
	for _, sc := range []auth.Scope{cur, old, cur} {
		if err := l.Record(sc, audit.Event{Type: "test.event"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := map[tenant.Incarnation]int{}
	for _, c := range s.snapshot() {
		got[c.scope.Incarnation()] += len(c.recs)
	}
	if got[oldInc] != 1 || got[newInc] != 2 {
		t.Fatalf("stored per incarnation: got %v, want %s: 1, %s: 2", got, oldInc, newInc)
	}

	if err := l.Record(old, audit.Event{Type: "test.event"}); err != nil {
		t.Fatal(err)
	}
	l.Forget(oldInc)
	if n := l.Pending(); n != 0 {
		t.Errorf("pending after Forget: got %d, want 0", n)
	}
	before := len(s.snapshot())
	if err := l.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if after := len(s.snapshot()); after != before {
		t.Errorf("a forgotten incarnation's event was stored")
	}
}
