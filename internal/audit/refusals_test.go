package audit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/audit"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// recorder keeps the events it is given, per tenant.
type recorder struct {
	mu     sync.Mutex
	events map[tenant.ID][]audit.Event
}

func (r *recorder) Record(scope auth.Scope, e audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.events == nil {
		r.events = map[tenant.ID][]audit.Event{}
	}
	r.events[scope.Tenant()] = append(r.events[scope.Tenant()], e)
	return nil
}

func (r *recorder) of(id tenant.ID) []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]audit.Event(nil), r.events[id]...)
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

func newRefusals(t *testing.T, rec *recorder, c *clock, maxKeys int) *audit.Refusals {
	return audit.NewRefusals(rec, audit.RefusalOptions{Now: c.now, MaxKeys: maxKeys,
		ScopeFor: func(id tenant.ID) (auth.Scope, error) { return authtest.Scope(t, id, ""), nil }})
}

// count returns the count of each auth.failure event.
func counts(t *testing.T, evs []audit.Event) []int {
	t.Helper()
	var out []int
	for _, e := range evs {
		if e.Type != "auth.failure" {
			t.Fatalf("event type %q, want auth.failure", e.Type)
		}
		b, _ := json.Marshal(e.Data)
		var d struct{ Count int }
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatal(err)
		}
		out = append(out, d.Count)
	}
	return out
}

func TestRefusalsAggregatePerKeyAndMinute(t *testing.T) {
	rec := &recorder{}
	c := &clock{t: time.Date(2026, 12, 2, 6, 0, 5, 0, time.UTC)}
	r := newRefusals(t, rec, c, 0)
	for i := range 1000 {
		r.Add("globex", "00000000000000aa", "unauthenticated: invalid api key")
		if i%100 == 0 {
			c.add(time.Second) // all within 06:00
		}
	}
	r.Add("globex", "00000000000000bb", "unauthenticated: invalid api key")
	r.Add("acme", "00000000000000cc", "denied: tenant is suspended")
	if got := rec.of("globex"); len(got) != 0 {
		t.Fatalf("before the window ends: %d records, want 0", len(got))
	}
	// The next minute's first refusal writes the last minute's record.
	c.add(time.Minute)
	r.Add("globex", "00000000000000aa", "unauthenticated: invalid api key")
	if got, want := fmt.Sprint(counts(t, rec.of("globex"))), "[1000]"; got != want {
		t.Fatalf("after the minute: globex counts %s, want %s", got, want)
	}
	r.Flush()
	got := counts(t, rec.of("globex"))
	if len(got) != 3 || got[0]+got[1]+got[2] != 1002 {
		t.Fatalf("globex counts %v, want 3 records totalling 1002", got)
	}
	if got, want := fmt.Sprint(counts(t, rec.of("acme"))), "[1]"; got != want {
		t.Fatalf("acme counts %s, want %s", got, want)
	}
}

func TestRefusalsMemoryBounded(t *testing.T) {
	rec := &recorder{}
	c := &clock{t: time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)}
	r := newRefusals(t, rec, c, 4)
	for i := range 100 {
		r.Add("globex", tenant.KeyID(fmt.Sprintf("%016x", i)), "unauthenticated: invalid api key")
	}
	r.Flush()
	if got := len(rec.of("globex")); got != 4 {
		t.Fatalf("records for 100 keys with MaxKeys 4: %d, want 4", got)
	}
}

func TestRefusalsRunWritesOnStop(t *testing.T) {
	rec := &recorder{}
	c := &clock{t: time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)}
	r := audit.NewRefusals(rec, audit.RefusalOptions{Now: c.now, Window: time.Hour,
		ScopeFor: func(id tenant.ID) (auth.Scope, error) { return authtest.Scope(t, id, ""), nil }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	for range 10 {
		r.Add("globex", "00000000000000aa", "unauthenticated: invalid api key")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if got, want := fmt.Sprint(counts(t, rec.of("globex"))), "[10]"; got != want {
		t.Fatalf("after Run stopped: counts %s, want %s", got, want)
	}
}

// BenchmarkRefusalsAdd counts refusals of one key, the cost a flood of
// requests naming it adds per request.
func BenchmarkRefusalsAdd(b *testing.B) {
	r := audit.NewRefusals(&recorder{}, audit.RefusalOptions{
		ScopeFor: func(id tenant.ID) (auth.Scope, error) { return authtest.Scope(b, id, ""), nil }})
	b.ReportAllocs()
	for b.Loop() {
		r.Add("globex", "00000000000000aa", "unauthenticated: invalid api key")
	}
}

// TestRefusalsAcrossIncarnations: refusals counted for one incarnation of a
// tenant never reach a tenant created again under its id, whether the
// lifecycle forgot them (Forget) or the id was taken again before the
// count was written.
func TestRefusalsAcrossIncarnations(t *testing.T) {
	for _, forget := range []bool{true, false} {
		t.Run(fmt.Sprintf("forget=%v", forget), func(t *testing.T) {
			old, current := tenant.NewIncarnation("acme", "s1"), tenant.NewIncarnation("acme", "s1")
			var mu sync.Mutex
			rec := &recorder{}
			r := audit.NewRefusals(rec, audit.RefusalOptions{ScopeFor: func(id tenant.ID) (auth.Scope, error) {
				mu.Lock()
				defer mu.Unlock()
				return authtest.ScopeIn(t, current, ""), nil
			}})
			for range 3 {
				r.Add("acme", "k1", "unauthenticated: invalid api key")
			}
			if forget {
				r.Forget(old)
			}
			mu.Lock()
			current = tenant.NewIncarnation("acme", "s2")
			mu.Unlock()
			r.FlushTenant("acme")
			r.Flush()
			if got := rec.of("acme"); len(got) != 0 {
				t.Errorf("the re-created tenant's log got %+v, want nothing of the old incarnation", got)
			}
		})
	}
}
