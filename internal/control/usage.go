package control

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// UsageInterval is how often RunUsage writes the usage counted since the
// last write, and how long a replica trusts the spend it last read.
const UsageInterval = 10 * time.Second

// DayFormat is how usage days are written: UTC dates.
const DayFormat = time.DateOnly

// Usage is what was used: requests, tokens and their cost.
type Usage struct {
	Requests, InputTokens, CachedInputTokens, OutputTokens int64
	// SpendMicroUSD is the cost in millionths of a US dollar.
	SpendMicroUSD int64
}

// add sums u and v, each count held at math.MaxInt64 rather than wrapping
// around to a negative (a refund); a negative count counts as none.
func (u Usage) add(v Usage) Usage {
	return Usage{Requests: addCount(u.Requests, v.Requests), InputTokens: addCount(u.InputTokens, v.InputTokens),
		CachedInputTokens: addCount(u.CachedInputTokens, v.CachedInputTokens), OutputTokens: addCount(u.OutputTokens, v.OutputTokens),
		SpendMicroUSD: addCount(u.SpendMicroUSD, v.SpendMicroUSD)}
}

func addCount(a, b int64) int64 {
	a, b = max(a, 0), max(b, 0)
	if b > math.MaxInt64-a {
		return math.MaxInt64
	}
	return a + b
}

// UsageRow is one tenant's end user's use of one model on one UTC day.
type UsageRow struct {
	Day     string // YYYY-MM-DD
	Tenant  tenant.ID
	EndUser tenant.UserID // empty: requests that named no end user
	Model   string        // "<provider>/<model>"
	Usage
}

// usageKey is one row of one incarnation: a tenant deleted and created
// again never receives its predecessor's pending usage.
type usageKey struct {
	inc     tenant.Incarnation
	day     string
	endUser tenant.UserID
	model   string
}

// spent is what the database said a tenant incarnation had spent on a day,
// per end user, and when it was read.
type spent struct {
	read   time.Time
	byUser map[tenant.UserID]int64
}

type spentKey struct {
	inc tenant.Incarnation
	day string
}

// usageMeter holds usage not yet written, and the spend last read: one map
// write per model call, one database write per interval for all of them.
type usageMeter struct {
	mu      sync.Mutex
	pending map[usageKey]Usage
	// flushing is the batch being written: counted until it is in the
	// database, so a budget check never misses it.
	flushing map[usageKey]Usage
	spent    map[spentKey]spent
	// gen counts writes, so a spend read from before a write is not kept
	// after it.
	gen uint64
}

// RecordUsage adds u to the row of incarnation inc, end user and model for
// today (UTC). It is written to the database by RunUsage, not here.
func (p *Plane) RecordUsage(inc tenant.Incarnation, endUser tenant.UserID, model string, u Usage) {
	if tenant.CheckIncarnation(inc) != nil {
		return
	}
	k := usageKey{inc: inc, day: p.now().UTC().Format(DayFormat), endUser: endUser, model: model}
	m := &p.usage
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending == nil {
		m.pending = map[usageKey]Usage{}
	}
	m.pending[k] = m.pending[k].add(u)
}

// FlushUsage writes the pending usage. If the write fails it is kept for
// the next attempt.
func (p *Plane) FlushUsage(ctx context.Context) error {
	m := &p.usage
	now := p.now()
	m.mu.Lock()
	// Spend read more than an interval ago is read again anyway: dropping
	// it keeps the map to the tenants checked lately.
	for k, s := range m.spent {
		if now.Sub(s.read) >= UsageInterval || now.Before(s.read) {
			delete(m.spent, k)
		}
	}
	if len(m.flushing) > 0 { // another flush is writing; the next one takes these
		m.mu.Unlock()
		return nil
	}
	batch := m.pending
	m.pending, m.flushing = nil, batch
	m.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := p.be.addUsage(ctx, batch)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.flushing = nil
	if err != nil {
		if m.pending == nil {
			m.pending = map[usageKey]Usage{}
		}
		for k, u := range batch {
			m.pending[k] = m.pending[k].add(u)
		}
		return fmt.Errorf("record usage: %w", err)
	}
	m.gen++
	for k := range batch {
		delete(m.spent, spentKey{k.inc, k.day})
	}
	return nil
}

// RunUsage writes the usage every UsageInterval, and once more when ctx
// is cancelled, then returns: a clean shutdown loses nothing.
func (p *Plane) RunUsage(ctx context.Context) error {
	return p.flushEvery(ctx, UsageInterval, "flush usage", p.FlushUsage)
}

// SpentToday returns what incarnation inc, and its end user, spent today
// (UTC) in micro-dollars: what the database held when last read (at most
// UsageInterval ago) plus what this Plane has not written yet. Spend
// other replicas have not written yet is not seen.
func (p *Plane) SpentToday(ctx context.Context, inc tenant.Incarnation, endUser tenant.UserID) (tenantMicroUSD, endUserMicroUSD int64, err error) {
	if err := tenant.CheckIncarnation(inc); err != nil {
		return 0, 0, fmt.Errorf("read spend: %w", err)
	}
	now := p.now()
	k := spentKey{inc: inc, day: now.UTC().Format(DayFormat)}
	m := &p.usage
	var s spent
	for attempt := 0; ; attempt++ {
		m.mu.Lock()
		cached, ok := m.spent[k]
		if ok && now.Sub(cached.read) < UsageInterval && !now.Before(cached.read) {
			defer m.mu.Unlock()
			return m.spendLocked(k, cached, endUser)
		}
		gen := m.gen
		m.mu.Unlock()
		byUser, err := p.be.spentOn(ctx, inc, k.day)
		if err != nil {
			return 0, 0, fmt.Errorf("read spend: %w", err)
		}
		s = spent{read: now, byUser: byUser}
		m.mu.Lock()
		if m.gen == gen { // no write landed during the read: it is current
			if m.spent == nil {
				m.spent = map[spentKey]spent{}
			}
			m.spent[k] = s
			break
		}
		if attempt == 1 {
			break // writes keep landing: use this read, uncached
		}
		m.mu.Unlock()
	}
	defer m.mu.Unlock()
	return m.spendLocked(k, s, endUser)
}

// spendLocked adds what is pending and being written to the spend read.
func (m *usageMeter) spendLocked(k spentKey, s spent, endUser tenant.UserID) (all, user int64, _ error) {
	for u, v := range s.byUser {
		all = addCount(all, v)
		if u == endUser {
			user = addCount(user, v)
		}
	}
	for _, batch := range []map[usageKey]Usage{m.pending, m.flushing} {
		for bk, v := range batch {
			if bk.inc != k.inc || bk.day != k.day {
				continue
			}
			all = addCount(all, v.SpendMicroUSD)
			if bk.endUser == endUser {
				user = addCount(user, v.SpendMicroUSD)
			}
		}
	}
	return all, user, nil
}

// MaxUsageDays bounds the days one usage read covers.
const MaxUsageDays = 366

// Usage returns tenant id's usage rows from day from to day to, both
// included (YYYY-MM-DD, UTC), with what is not written yet. id must name
// a tenant: no tenant is never every tenant.
func (p *Plane) Usage(ctx context.Context, id tenant.ID, from, to time.Time) ([]UsageRow, error) {
	if id == "" {
		return nil, errors.New("read usage: no tenant")
	}
	t, err := p.Tenant(id)
	if err != nil {
		return nil, err
	}
	return p.readUsage(ctx, id, t.Incarnation(), from, to)
}

// AllUsage returns every tenant's usage rows from day from to day to, for
// the operator.
func (p *Plane) AllUsage(ctx context.Context, from, to time.Time) ([]UsageRow, error) {
	return p.readUsage(ctx, "", "", from, to)
}

// readUsage reads tenant id's rows (every tenant's when id is empty) and
// adds the pending usage of live incarnations (only inc's, if set).
func (p *Plane) readUsage(ctx context.Context, id tenant.ID, inc tenant.Incarnation, from, to time.Time) ([]UsageRow, error) {
	fromDay, toDay := from.UTC().Format(DayFormat), to.UTC().Format(DayFormat)
	if toDay < fromDay {
		return nil, errors.New("read usage: the range ends before it starts")
	}
	rows, err := p.be.usage(ctx, id, fromDay, toDay)
	if err != nil {
		return nil, fmt.Errorf("read usage: %w", err)
	}
	type rowKey struct {
		day     string
		tenant  tenant.ID
		endUser tenant.UserID
		model   string
	}
	merged := map[rowKey]Usage{}
	for _, r := range rows {
		merged[rowKey{r.Day, r.Tenant, r.EndUser, r.Model}] = r.Usage
	}
	live := func(k usageKey) bool {
		if inc != "" {
			return k.inc == inc
		}
		t, err := p.Tenant(k.inc.Tenant())
		return err == nil && t.Incarnation() == k.inc
	}
	p.usage.mu.Lock()
	for _, batch := range []map[usageKey]Usage{p.usage.pending, p.usage.flushing} {
		for k, u := range batch {
			if k.day < fromDay || k.day > toDay || !live(k) {
				continue
			}
			rk := rowKey{k.day, k.inc.Tenant(), k.endUser, k.model}
			merged[rk] = merged[rk].add(u)
		}
	}
	p.usage.mu.Unlock()
	out := make([]UsageRow, 0, len(merged))
	for k, u := range merged {
		out = append(out, UsageRow{Day: k.day, Tenant: k.tenant, EndUser: k.endUser, Model: k.model, Usage: u})
	}
	slices.SortFunc(out, func(a, b UsageRow) int {
		return cmp.Or(cmp.Compare(a.Day, b.Day), cmp.Compare(a.Tenant, b.Tenant), cmp.Compare(a.EndUser, b.EndUser), cmp.Compare(a.Model, b.Model))
	})
	return out, nil
}

// usageSums is the SET clause adding a batch's counts to a usage row (the
// row's columns prefixed with row), each held at the largest bigint as add
// holds it: an overflow would fail the write of every tenant's batch in
// PostgreSQL and turn the column into a float in SQLite.
func usageSums(row string) string {
	var b strings.Builder
	for i, c := range []string{"requests", "input_tokens", "cached_input_tokens", "output_tokens", "spend_micro_usd"} {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%[1]s = CASE WHEN excluded.%[1]s > %[3]d - %[2]s%[1]s THEN %[3]d ELSE %[2]s%[1]s + excluded.%[1]s END", c, row, int64(math.MaxInt64))
	}
	return b.String()
}

// sortedUsage is batch's keys in order, so concurrent flushes of replicas
// take row locks in the same order.
func sortedUsage(batch map[usageKey]Usage) []usageKey {
	return slices.SortedFunc(maps.Keys(batch), func(a, b usageKey) int {
		return cmp.Or(cmp.Compare(a.inc, b.inc), cmp.Compare(a.day, b.day), cmp.Compare(a.endUser, b.endUser), cmp.Compare(a.model, b.model))
	})
}
