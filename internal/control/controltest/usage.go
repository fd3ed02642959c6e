package controltest

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// usageRows reads tenant id's usage of today ("" for every tenant's).
func usageRows(t testing.TB, p *control.Plane, id tenant.ID) []control.UsageRow {
	t.Helper()
	now := time.Now()
	var (
		rows []control.UsageRow
		err  error
	)
	if id == "" {
		rows, err = p.AllUsage(context.Background(), now.AddDate(0, 0, -1), now.AddDate(0, 0, 1))
	} else {
		rows, err = p.Usage(context.Background(), id, now.AddDate(0, 0, -1), now.AddDate(0, 0, 1))
	}
	if err != nil {
		t.Fatalf("usage of %q: %v", id, err)
	}
	return rows
}

// usageSum adds up rows by tenant and end user ("*": every end user).
func usageSum(rows []control.UsageRow, id tenant.ID, user tenant.UserID) control.Usage {
	var sum control.Usage
	for _, r := range rows {
		if r.Tenant == id && (user == "*" || r.EndUser == user) {
			sum.Requests += r.Requests
			sum.InputTokens += r.InputTokens
			sum.CachedInputTokens += r.CachedInputTokens
			sum.OutputTokens += r.OutputTokens
			sum.SpendMicroUSD += r.SpendMicroUSD
		}
	}
	return sum
}

func testUsage(t *testing.T, b Backend) {
	ctx := context.Background()
	kek := NewKEK(t)
	p := MustOpen(t, b, kek)
	create(t, p, "acme", "globex")
	acme, globex := mustTenant(t, p, "acme").Incarnation(), mustTenant(t, p, "globex").Incarnation()
	call := control.Usage{Requests: 1, InputTokens: 100, CachedInputTokens: 40, OutputTokens: 10, SpendMicroUSD: 250}

	p.RecordUsage(acme, "u1", "offline/default", call)
	p.RecordUsage(acme, "u1", "offline/default", call)
	p.RecordUsage(acme, "", "offline/default", call)
	p.RecordUsage(globex, "u1", "offline/default", control.Usage{Requests: 1, SpendMicroUSD: 9000})

	// Pending usage counts before it is written, for reads and budgets.
	rows := usageRows(t, p, "acme")
	if got := usageSum(rows, "acme", "u1"); got.Requests != 2 || got.InputTokens != 200 || got.CachedInputTokens != 80 || got.SpendMicroUSD != 500 {
		t.Errorf("acme u1 before the flush = %+v", got)
	}
	if all, user, err := p.SpentToday(ctx, acme, "u1"); err != nil || all != 750 || user != 500 {
		t.Errorf("SpentToday(acme, u1) before the flush = %d, %d, %v; want 750, 500", all, user, err)
	}
	if err := p.FlushUsage(ctx); err != nil {
		t.Fatal(err)
	}
	if all, user, err := p.SpentToday(ctx, acme, "u1"); err != nil || all != 750 || user != 500 {
		t.Errorf("SpentToday(acme, u1) after the flush = %d, %d, %v; want 750, 500", all, user, err)
	}
	p.RecordUsage(acme, "u1", "offline/default", call) // pending on top of written
	if all, user, err := p.SpentToday(ctx, acme, "u1"); err != nil || all != 1000 || user != 750 {
		t.Errorf("SpentToday(acme, u1) with more pending = %d, %d, %v; want 1000, 750", all, user, err)
	}
	if got := usageSum(usageRows(t, p, "acme"), "acme", "u1"); got.Requests != 3 || got.SpendMicroUSD != 750 {
		t.Errorf("acme u1 written and pending = %+v", got)
	}

	// A clean close after a flush loses nothing; a restart reads it back.
	if err := p.FlushUsage(ctx); err != nil {
		t.Fatal(err)
	}
	p.Close()
	p = MustOpen(t, b, kek)
	rows = usageRows(t, p, "acme")
	if got := usageSum(rows, "acme", "*"); got.Requests != 4 || got.OutputTokens != 40 || got.SpendMicroUSD != 1000 {
		t.Errorf("acme after a restart = %+v", got)
	}
	for _, r := range rows {
		if r.Tenant != "acme" {
			t.Errorf("acme's usage holds a row of %s: %+v", r.Tenant, r)
		}
		if r.Day != time.Now().UTC().Format(control.DayFormat) || r.Model != "offline/default" {
			t.Errorf("row %+v: want today's, of offline/default", r)
		}
	}
	all := usageRows(t, p, "")
	if got := usageSum(all, "globex", "u1"); got.SpendMicroUSD != 9000 {
		t.Errorf("every tenant's usage: globex u1 = %+v, want 9000 spent", got)
	}
	if got := usageSum(all, "acme", "*"); got.SpendMicroUSD != 1000 {
		t.Errorf("every tenant's usage: acme = %+v, want 1000 spent", got)
	}
	if _, err := p.Usage(ctx, "", time.Now(), time.Now()); err == nil {
		t.Error(`Usage("") succeeded: no tenant must never mean every tenant`)
	}
	if _, err := p.Usage(ctx, "initech", time.Now(), time.Now()); err == nil {
		t.Error("Usage of a tenant that does not exist succeeded")
	}
	if _, err := p.Usage(ctx, "acme", time.Now(), time.Now().AddDate(0, 0, -2)); err == nil {
		t.Error("Usage of a range that ends before it starts succeeded")
	}

	// A deleted tenant's usage goes with it, and what was pending for it
	// never reaches a tenant created again under its id.
	acme = mustTenant(t, p, "acme").Incarnation()
	p.RecordUsage(acme, "u1", "offline/default", call)
	if _, err := p.DeleteTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	create(t, p, "acme")
	if err := p.FlushUsage(ctx); err != nil {
		t.Fatal(err)
	}
	if rows := usageRows(t, p, "acme"); len(rows) != 0 {
		t.Errorf("acme created again inherits usage: %+v", rows)
	}
	if got := usageSum(usageRows(t, p, ""), "acme", "*"); got != (control.Usage{}) {
		t.Errorf("a deleted tenant's usage remains: %+v", got)
	}
	if all, user, err := p.SpentToday(ctx, mustTenant(t, p, "acme").Incarnation(), "u1"); err != nil || all != 0 || user != 0 {
		t.Errorf("SpentToday of acme created again = %d, %d, %v; want 0, 0", all, user, err)
	}
	if got := usageSum(usageRows(t, p, "globex"), "globex", "*"); got.SpendMicroUSD != 9000 {
		t.Errorf("deleting acme changed globex's usage: %+v", got)
	}
}

// testReplicasUsage: replicas writing the same rows add up, and each reads
// what the others wrote.
func testReplicasUsage(t *testing.T, b Backend) {
	ctx := context.Background()
	kek := NewKEK(t)
	p1, p2 := MustOpen(t, b, kek), MustOpen(t, b, kek)
	create(t, p1, "acme", "globex")
	Eventually(t, "replica 2 sees the tenants", func() bool {
		_, err1 := p2.Tenant("acme")
		_, err2 := p2.Tenant("globex")
		return err1 == nil && err2 == nil
	})
	acme, globex := mustTenant(t, p1, "acme").Incarnation(), mustTenant(t, p1, "globex").Incarnation()
	var wg sync.WaitGroup
	for _, p := range []*control.Plane{p1, p2} {
		wg.Go(func() {
			for range 20 {
				p.RecordUsage(acme, "u1", "offline/default", control.Usage{Requests: 1, SpendMicroUSD: 10})
				p.RecordUsage(globex, "u1", "offline/default", control.Usage{Requests: 1, SpendMicroUSD: 1})
				if err := p.FlushUsage(ctx); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for i, p := range []*control.Plane{p1, p2} {
		if got := usageSum(usageRows(t, p, "acme"), "acme", "u1"); got.Requests != 40 || got.SpendMicroUSD != 400 {
			t.Errorf("replica %d: acme u1 = %+v, want 40 requests, 400 spent", i+1, got)
		}
		if got := usageSum(usageRows(t, p, "acme"), "globex", "*"); got != (control.Usage{}) {
			t.Errorf("replica %d: acme's usage holds globex's: %+v", i+1, got)
		}
	}
	if all, user, err := p2.SpentToday(ctx, acme, "u1"); err != nil || all != 400 || user != 400 {
		t.Errorf("replica 2: SpentToday(acme, u1) = %d, %d, %v; want 400, 400", all, user, err)
	}
}

// testUsageSaturates: counts that would overflow a row stop at the largest
// number instead of wrapping around or failing the write, which would lose
// every tenant's usage written with them.
func testUsageSaturates(t *testing.T, b Backend) {
	ctx := context.Background()
	p := MustOpen(t, b, NewKEK(t))
	create(t, p, "acme", "globex")
	acme, globex := mustTenant(t, p, "acme").Incarnation(), mustTenant(t, p, "globex").Incarnation()
	half := control.Usage{Requests: 1, InputTokens: math.MaxInt64/2 + 1, CachedInputTokens: math.MaxInt64/2 + 1,
		OutputTokens: math.MaxInt64/2 + 1, SpendMicroUSD: math.MaxInt64/2 + 1}
	for range 3 {
		p.RecordUsage(acme, "u1", "offline/default", half)
		p.RecordUsage(globex, "u1", "offline/default", control.Usage{Requests: 1, SpendMicroUSD: 10})
		if err := p.FlushUsage(ctx); err != nil {
			t.Fatalf("flush near the largest counts: %v", err)
		}
	}
	p.RecordUsage(acme, "u1", "offline/default", half) // pending on top of the largest
	got := usageSum(usageRows(t, p, "acme"), "acme", "u1")
	if want := (control.Usage{Requests: 4, InputTokens: math.MaxInt64, CachedInputTokens: math.MaxInt64,
		OutputTokens: math.MaxInt64, SpendMicroUSD: math.MaxInt64}); got != want {
		t.Errorf("acme's saturated row = %+v, want %+v", got, want)
	}
	if all, user, err := p.SpentToday(ctx, acme, "u1"); err != nil || all != math.MaxInt64 || user != math.MaxInt64 {
		t.Errorf("SpentToday(acme, u1) = %d, %d, %v; want the largest", all, user, err)
	}
	if got := usageSum(usageRows(t, p, "globex"), "globex", "u1"); got.Requests != 3 || got.SpendMicroUSD != 30 {
		t.Errorf("globex written beside acme's huge counts = %+v, want 3 requests, 30 spent", got)
	}
}
