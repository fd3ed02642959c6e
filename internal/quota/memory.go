package quota

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/bulkhead-ai/bulkhead/internal/layers"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// sweepEvery is how often Memory looks for idle tenants to forget.
const sweepEvery = time.Minute

// Memory is a Limiter that keeps its counters in this process. It is safe
// for concurrent use; its zero value is not usable, call NewMemory.
//
// A tenant's entry is dropped once forgetting it changes nothing: no request
// in flight, both rate buckets full again and no budget spent in the current
// window. Memory therefore holds the tenants active in the last minute or so,
// plus those that spent tokens in the current budget window.
type Memory struct {
	now func() time.Time // injected by tests

	mu        sync.RWMutex
	tenants   map[tenant.Incarnation]*account
	lastSweep atomic.Int64 // unix nanoseconds
}

// account is one tenant's state. Its mutex is never held while taking
// Memory.mu.
type account struct {
	mu       sync.Mutex
	dead     bool // swept: look the tenant up again
	requests bucket
	tokens   bucket
	inFlight int
	// The budget: spent tokens in window number window of periodMs.
	window, periodMs, spent int64
}

// NewMemory returns an empty in-process Limiter.
func NewMemory() *Memory {
	return &Memory{now: time.Now, tenants: map[tenant.Incarnation]*account{}}
}

// Admit implements Limiter.
func (m *Memory) Admit(ctx context.Context, id tenant.Incarnation, l Limits) (release func(), err error) {
	if layers.Off("quota") { // redteamswitch builds only; see package layers
		return func() {}, nil
	}
	if err := checkTenant(id); err != nil {
		return nil, err
	}
	if err := l.check(); err != nil {
		return nil, err
	}
	now := m.now()
	a := m.account(id, now)
	defer a.mu.Unlock()

	if l.TokenBudget > 0 {
		spent, end := a.budget(now, l.periodMillis())
		if spent >= l.TokenBudget {
			return nil, limited(LimitTokenBudget, end.Sub(now))
		}
	}
	a.tokens.resize(now, l.TokensPerMinute)
	if wait := a.tokens.wait(now); wait > 0 {
		return nil, limited(LimitTokensPerMinute, wait)
	}
	if l.MaxConcurrent > 0 && a.inFlight >= l.MaxConcurrent {
		return nil, limited(LimitMaxConcurrent, concurrencyRetry)
	}
	a.requests.resize(now, l.RequestsPerMinute)
	if wait := a.requests.wait(now); wait > 0 {
		return nil, limited(LimitRequestsPerMinute, wait)
	}
	a.requests.take(now, 1)
	a.inFlight++

	var once sync.Once
	return func() {
		once.Do(func() {
			a.mu.Lock()
			a.inFlight--
			a.mu.Unlock()
		})
	}, nil
}

// Spend implements Limiter.
func (m *Memory) Spend(ctx context.Context, id tenant.Incarnation, l Limits, tokens int) error {
	if err := checkTenant(id); err != nil {
		return err
	}
	if err := l.check(); err != nil {
		return err
	}
	if tokens < 0 {
		return errors.New("quota: spent tokens must not be negative")
	}
	if tokens == 0 || (l.TokensPerMinute == 0 && l.TokenBudget == 0) {
		return nil
	}
	now := m.now()
	a := m.account(id, now)
	defer a.mu.Unlock()

	a.tokens.resize(now, l.TokensPerMinute)
	a.tokens.take(now, tokens)
	if l.TokenBudget > 0 {
		p := l.periodMillis()
		spent, _ := a.budget(now, p)
		a.window, a.periodMs, a.spent = now.UnixMilli()/p, p, spent+int64(tokens)
	}
	return nil
}

// Forget implements Limiter. Requests of inc still running release into an
// account nobody finds any more.
func (m *Memory) Forget(_ context.Context, inc tenant.Incarnation) error {
	m.mu.Lock()
	a := m.tenants[inc]
	delete(m.tenants, inc)
	m.mu.Unlock()
	if a != nil {
		a.mu.Lock()
		a.dead = true
		a.mu.Unlock()
	}
	return nil
}

// account returns id's account, locked, creating it if needed.
func (m *Memory) account(id tenant.Incarnation, now time.Time) *account {
	if last := m.lastSweep.Load(); now.UnixNano()-last >= int64(sweepEvery) && m.lastSweep.CompareAndSwap(last, now.UnixNano()) {
		m.sweep(now)
	}
	for {
		m.mu.RLock()
		a := m.tenants[id]
		m.mu.RUnlock()
		if a == nil {
			m.mu.Lock()
			if a = m.tenants[id]; a == nil {
				a = &account{}
				m.tenants[id] = a
			}
			m.mu.Unlock()
		}
		a.mu.Lock()
		if !a.dead {
			return a
		}
		a.mu.Unlock()
	}
}

// sweep forgets the tenants whose state is indistinguishable from a new one.
func (m *Memory) sweep(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, a := range m.tenants {
		a.mu.Lock()
		spent, _ := a.budget(now, a.periodMs)
		if a.inFlight == 0 && a.requests.full(now) && a.tokens.full(now) && spent == 0 {
			a.dead = true
			delete(m.tenants, id)
		}
		a.mu.Unlock()
	}
}

// budget returns the tokens spent in the window of p milliseconds holding
// now, and when that window ends.
func (a *account) budget(now time.Time, p int64) (spent int64, end time.Time) {
	if p <= 0 {
		return 0, now
	}
	w := now.UnixMilli() / p
	end = time.UnixMilli((w + 1) * p)
	if w == a.window && p == a.periodMs {
		return a.spent, end
	}
	return 0, end
}

// bucket is a token bucket refilled at perMinute per minute, holding at most
// perMinute tokens; nil lim means unlimited.
type bucket struct {
	perMinute int
	lim       *rate.Limiter
}

// resize makes the bucket hold n per minute, carrying over what is used.
func (b *bucket) resize(now time.Time, n int) {
	if n == b.perMinute {
		return
	}
	tokens := float64(n)
	if b.lim != nil {
		tokens = carry(b.lim.TokensAt(now), b.perMinute, n)
	}
	b.perMinute, b.lim = n, nil
	if n == 0 {
		return
	}
	b.lim = rate.NewLimiter(rate.Limit(float64(n)/60), n)
	b.take(now, int(float64(n)-tokens+0.5))
}

// wait returns how long until the bucket holds a whole token; zero if it
// does now.
func (b *bucket) wait(now time.Time) time.Duration {
	if b.lim == nil {
		return 0
	}
	tokens := b.lim.TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) * 60 / float64(b.perMinute) * float64(time.Second))
}

// take removes n tokens, going into debt if needed.
func (b *bucket) take(now time.Time, n int) {
	if b.lim == nil || n <= 0 {
		return
	}
	// A reservation may not exceed the burst; widen it for this one, which
	// nobody can observe while the account is locked.
	if burst := b.lim.Burst(); n > burst {
		b.lim.SetBurstAt(now, n)
		defer b.lim.SetBurstAt(now, burst)
	}
	b.lim.ReserveN(now, n)
}

// full reports whether the bucket is as it would be if newly made.
func (b *bucket) full(now time.Time) bool {
	return b.lim == nil || b.lim.TokensAt(now) >= float64(b.perMinute)
}
