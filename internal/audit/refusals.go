package audit

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Recorder queues an event in a tenant's log; *Log implements it.
type Recorder interface {
	Record(scope auth.Scope, e Event) error
}

// RefusalOptions configures NewRefusals. Only ScopeFor is required.
type RefusalOptions struct {
	// ScopeFor returns the Scope a tenant's refusal records are written
	// under: the process acts as the operator there, since the request
	// itself authenticated as nobody.
	ScopeFor func(tenant.ID) (auth.Scope, error)
	// Window is the span one record counts; 0 → one minute.
	Window time.Duration
	// MaxKeys bounds the (tenant, key id) pairs counted at once; refusals
	// past it are only counted for the operator's log. 0 → 10,000.
	MaxKeys int
	Logger  *slog.Logger     // nil → discard
	Now     func() time.Time // nil → time.Now
}

// maxReasons bounds the distinct reasons one record lists; the rest count
// as "other". Reasons come from auth, a handful of fixed strings.
const maxReasons = 8

// Refusals counts requests refused with a tenant's key id (a wrong secret,
// a suspended tenant) and writes one "auth.failure" record per tenant, key
// id and window with the count, instead of one record per request. Anyone
// can send a request naming a key id, which is public; without this each
// such request would add a hash-chained record to the tenant's log, and a
// flood of them would bury the log and fill its disk.
//
// A window's record is written when the window ends (Run), when the
// tenant's log is read (FlushTenant, so a reader sees what happened) or
// when Run stops. Memory is bounded by MaxKeys pairs; Add never blocks on
// the store.
type Refusals struct {
	log      Recorder
	scopeFor func(tenant.ID) (auth.Scope, error)
	window   time.Duration
	maxKeys  int
	logger   *slog.Logger
	now      func() time.Time
	running  atomic.Bool

	mu       sync.Mutex
	counts   map[refusalKey]*refusalCount
	overflow int // refusals not counted per key since the last flush
}

// refusalKey is by incarnation: a count of a deleted tenant must never be
// written to a tenant created again under its id.
type refusalKey struct {
	inc tenant.Incarnation
	key tenant.KeyID
}

type refusalCount struct {
	start, first, last time.Time // start of the window; first and last refusal in it
	n                  int
	reasons            map[string]int
}

// NewRefusals returns a Refusals writing to log.
func NewRefusals(log Recorder, opts RefusalOptions) *Refusals {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Refusals{
		log:      log,
		scopeFor: opts.ScopeFor,
		window:   cmp.Or(opts.Window, time.Minute),
		maxKeys:  cmp.Or(opts.MaxKeys, 10_000),
		logger:   cmp.Or(opts.Logger, slog.New(slog.DiscardHandler)),
		now:      opts.Now,
		counts:   map[refusalKey]*refusalCount{},
	}
}

// Add counts one request refused with tenant id's key key for reason.
func (r *Refusals) Add(id tenant.ID, key tenant.KeyID, reason string) {
	if r.scopeFor == nil {
		r.logger.Error("audit refused requests: no ScopeFor", "tenant", id, "key_id", key)
		return
	}
	// Counted for the incarnation the id names now: a count must never be
	// written to a tenant created again under the id (see Forget).
	scope, err := r.scopeFor(id)
	if err != nil {
		// The tenant is gone: there is no log to write to. Debug, as anyone
		// can repeat such a request.
		r.logger.Debug("refused request not audited", "tenant", id, "key_id", key, "error", err.Error())
		return
	}
	now := r.now().UTC()
	start := now.Truncate(r.window)
	k := refusalKey{scope.Incarnation(), key}
	r.mu.Lock()
	c := r.counts[k]
	if c != nil && !c.start.Equal(start) {
		// The pair's last window is over: write it before counting anew.
		r.write(k, c)
		delete(r.counts, k)
		c = nil
	}
	if c == nil {
		if len(r.counts) >= r.maxKeys {
			r.overflow++
			r.mu.Unlock()
			return
		}
		c = &refusalCount{start: start, first: now, reasons: map[string]int{}}
		r.counts[k] = c
	}
	c.n++
	c.last = now
	if _, ok := c.reasons[reason]; ok || len(c.reasons) < maxReasons {
		c.reasons[reason]++
	} else {
		c.reasons["other"]++
	}
	r.mu.Unlock()
}

// Run writes each window's records once it ends, until ctx is cancelled;
// then it writes what is counted and returns nil. Call it once, and stop it
// before the Log it writes to.
func (r *Refusals) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("audit: Refusals.Run called twice")
	}
	tick := time.NewTicker(max(r.window/6, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			r.flush(func(refusalKey, *refusalCount) bool { return true })
			return nil
		case <-tick.C:
			start := r.now().UTC().Truncate(r.window)
			r.flush(func(_ refusalKey, c *refusalCount) bool { return c.start.Before(start) })
		}
	}
}

// FlushTenant writes tenant id's counted refusals now, so that a reader of
// its log sees them. Later refusals in the same window start a new count.
func (r *Refusals) FlushTenant(id tenant.ID) {
	r.flush(func(k refusalKey, _ *refusalCount) bool { return k.inc.Tenant() == id })
}

// Forget drops the counts of incarnation inc, when its tenant is deleted:
// they must not reach a tenant created again under the same id.
func (r *Refusals) Forget(inc tenant.Incarnation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.counts {
		if k.inc == inc {
			delete(r.counts, k)
		}
	}
}

// Flush writes every counted refusal now.
func (r *Refusals) Flush() {
	r.flush(func(refusalKey, *refusalCount) bool { return true })
}

func (r *Refusals) flush(due func(refusalKey, *refusalCount) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, c := range r.counts {
		if due(k, c) {
			r.write(k, c)
			delete(r.counts, k)
		}
	}
	if r.overflow > 0 {
		r.logger.Warn("refused requests not audited per key: too many keys refused at once",
			"refusals", r.overflow, "max_keys", r.maxKeys)
		r.overflow = 0
	}
}

// write queues c's record; r.mu is held. Record only queues, so holding the
// lock costs no I/O.
func (r *Refusals) write(k refusalKey, c *refusalCount) {
	scope, err := scopeOf(r.scopeFor, k.inc)
	if err == nil {
		err = r.log.Record(scope, Event{Type: "auth.failure", Data: map[string]any{
			"key_id":  k.key,
			"count":   c.n,
			"first":   c.first,
			"last":    c.last,
			"reasons": sortedReasons(c.reasons),
		}})
	}
	if err != nil {
		r.logger.Error("audit refused requests", "tenant", k.inc.Tenant(), "key_id", k.key, "count", c.n, "error", err.Error())
	}
}

// scopeOf is the operator's Scope for incarnation inc, through scopeFor (which
// knows only the current incarnation of an id): an error if inc's tenant was
// deleted since, even if its id was taken again.
func scopeOf(scopeFor func(tenant.ID) (auth.Scope, error), inc tenant.Incarnation) (scope auth.Scope, err error) {
	if scopeFor == nil {
		return scope, errors.New("no operator scope configured")
	}
	if scope, err = scopeFor(inc.Tenant()); err != nil {
		return scope, err
	}
	if scope.Incarnation() != inc {
		var none auth.Scope // never the new incarnation's
		return none, errors.New("the tenant was deleted since")
	}
	return scope, nil
}

type reasonCount struct {
	Reason string `json:"reason"`
	Count  int    `json:"count"`
}

// sortedReasons lists reasons in a fixed order, so records are reproducible.
func sortedReasons(m map[string]int) []reasonCount {
	out := make([]reasonCount, 0, len(m))
	for reason, n := range m {
		out = append(out, reasonCount{reason, n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Reason < out[j].Reason })
	return out
}
