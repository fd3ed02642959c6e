package quota

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

func TestMemory(t *testing.T) {
	testBehaviour(t, func(t *testing.T) Limiter { return NewMemory() })
}

// clock is a manual clock for Memory.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newClockedMemory returns a Memory on a manual clock starting at an hour
// boundary.
func newClockedMemory() (*Memory, *clock) {
	c := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := NewMemory()
	m.now = c.Now
	return m, c
}

// TestMemoryOverTime checks that refusals end when RetryAfter says.
func TestMemoryOverTime(t *testing.T) {
	tests := []struct {
		name  string
		l     Limits
		fill  func(t *testing.T, m *Memory) // drive the tenant to its limit
		limit string
		retry time.Duration // exact RetryAfter expected
	}{
		{
			name: "requests refill", l: Limits{RequestsPerMinute: 60},
			fill: func(t *testing.T, m *Memory) {
				for range 60 {
					admit(t, m, "tenant-a", Limits{RequestsPerMinute: 60})()
				}
			},
			limit: LimitRequestsPerMinute, retry: time.Second,
		},
		{
			name: "token debt is paid off", l: Limits{TokensPerMinute: 60},
			fill: func(t *testing.T, m *Memory) {
				if err := m.Spend(t.Context(), "tenant-a", Limits{TokensPerMinute: 60}, 120); err != nil {
					t.Fatal(err)
				}
			},
			limit: LimitTokensPerMinute, retry: 61 * time.Second, // -60 tokens, 1 needed, 1/s
		},
		{
			name: "budget window ends", l: Limits{TokenBudget: 100, BudgetPeriod: time.Hour},
			fill: func(t *testing.T, m *Memory) {
				if err := m.Spend(t.Context(), "tenant-a", Limits{TokenBudget: 100, BudgetPeriod: time.Hour}, 100); err != nil {
					t.Fatal(err)
				}
			},
			limit: LimitTokenBudget, retry: time.Hour,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, c := newClockedMemory()
			tt.fill(t, m)
			le := wantLimited(t, m, "tenant-a", tt.l, tt.limit, tt.retry)
			if le.RetryAfter != tt.retry {
				t.Errorf("RetryAfter = %v; want %v", le.RetryAfter, tt.retry)
			}
			c.Advance(le.RetryAfter - time.Millisecond)
			wantLimited(t, m, "tenant-a", tt.l, tt.limit, time.Millisecond)
			c.Advance(time.Millisecond)
			admit(t, m, "tenant-a", tt.l)()
		})
	}
}

// TestMemoryLimitChangeCarriesUsage checks the exact carry-over: a tenant
// that used 4 of 10 gets 16 more when raised to 20, and 1 more when then
// lowered to 5.
func TestMemoryLimitChangeCarriesUsage(t *testing.T) {
	m, _ := newClockedMemory()
	count := func(l Limits) (n int) {
		for {
			release, err := m.Admit(t.Context(), "tenant-a", l)
			if err != nil {
				return n
			}
			release()
			n++
		}
	}
	for range 4 {
		admit(t, m, "tenant-a", Limits{RequestsPerMinute: 10})()
	}
	if got := count(Limits{RequestsPerMinute: 20}); got != 16 {
		t.Errorf("admitted %d after raising 10 to 20 with 4 used; want 16", got)
	}
	if got := count(Limits{RequestsPerMinute: 5}); got != 0 {
		t.Errorf("admitted %d after lowering 20 to 5 with 20 used; want 0", got)
	}
}

// TestMemoryForgetsIdleTenants checks that memory stays bounded while
// nothing that matters is forgotten.
func TestMemoryForgetsIdleTenants(t *testing.T) {
	m, c := newClockedMemory()
	ctx := t.Context()
	l := Limits{RequestsPerMinute: 10, TokensPerMinute: 100}
	for i := range 1000 {
		release := admit(t, m, tenant.Incarnation(fmt.Sprintf("idle-%d", i)), l)
		if err := m.Spend(ctx, tenant.Incarnation(fmt.Sprintf("idle-%d", i)), l, 50); err != nil {
			t.Fatal(err)
		}
		release()
	}
	budget := Limits{TokenBudget: 10, BudgetPeriod: time.Hour}
	if err := m.Spend(ctx, "spender", budget, 10); err != nil {
		t.Fatal(err)
	}
	running := admit(t, m, "running", Limits{MaxConcurrent: 1})

	c.Advance(2 * time.Minute)
	admit(t, m, "trigger", Limits{})() // sweeps

	m.mu.RLock()
	var ids []tenant.Incarnation
	for id := range m.tenants {
		ids = append(ids, id)
	}
	m.mu.RUnlock()
	if len(ids) != 3 {
		t.Errorf("after 2 idle minutes Memory holds %d tenants %v; want spender, running and trigger", len(ids), ids)
	}
	wantLimited(t, m, "spender", budget, LimitTokenBudget, time.Hour)
	wantLimited(t, m, "running", Limits{MaxConcurrent: 1}, LimitMaxConcurrent, time.Second)
	running()
	admit(t, m, "running", Limits{MaxConcurrent: 1})()

	// Once its budget window ends, the spender is forgotten too.
	c.Advance(time.Hour)
	admit(t, m, "trigger", Limits{})()
	m.mu.RLock()
	n := len(m.tenants)
	m.mu.RUnlock()
	if n != 1 {
		t.Errorf("after the budget window Memory holds %d tenants; want 1", n)
	}
}

// TestMemoryConcurrent hammers Admit and release from many goroutines (run
// with -race) and checks that no limit is ever exceeded.
func TestMemoryConcurrent(t *testing.T) {
	const goroutines, perGoroutine = 32, 300
	tests := []struct {
		name         string
		l            Limits
		wantAdmitted int // -1: not checked
	}{
		{"max_concurrent", Limits{MaxConcurrent: 4}, -1},
		{"requests_per_minute", Limits{RequestsPerMinute: 100, MaxConcurrent: 8}, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := newClockedMemory() // time stands still: no refill
			var inFlight, peak, admitted atomic.Int64
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					id := tenant.Incarnation("shared")
					if g%4 == 0 {
						id = tenant.Incarnation(fmt.Sprintf("own-%d", g)) // other tenants, same time
					}
					for range perGoroutine {
						release, err := m.Admit(t.Context(), id, tt.l)
						if err != nil {
							continue
						}
						if id == "shared" {
							admitted.Add(1)
							n := inFlight.Add(1)
							for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
							}
							inFlight.Add(-1)
						}
						release()
					}
				})
			}
			wg.Wait()
			if p := peak.Load(); p > int64(tt.l.MaxConcurrent) {
				t.Errorf("peak concurrency %d; want at most %d", p, tt.l.MaxConcurrent)
			}
			if tt.wantAdmitted >= 0 && admitted.Load() != int64(tt.wantAdmitted) {
				t.Errorf("admitted %d; want exactly %d", admitted.Load(), tt.wantAdmitted)
			}
			a := m.tenants["shared"]
			a.mu.Lock()
			defer a.mu.Unlock()
			if a.inFlight != 0 {
				t.Errorf("in flight after all releases = %d; want 0", a.inFlight)
			}
		})
	}
}
