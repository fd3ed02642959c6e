// Package audit keeps each tenant's audit log: an append-only hash chain of
// what happened in the tenant (tool calls and their decisions, blocked leaks,
// key, secret and policy changes, deletions), stored by the tenant's data-plane
// backend and verifiable offline with Verify.
//
// Events describe shapes and decisions, never values: a tool call is its
// name, the names and types of its arguments, the decision and the matching
// policies; a secret change is the secret's name. Logs are stored in clear so
// they can be verified without the tenant's key, which is why no value may go
// in.
package audit

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Event is something that happened in a tenant. Type names it, dotted, like
// "tool.call", "guard.block", "auth.failure", "cache.hit", "key.create",
// "secret.set", "policy.set" or "tenant.delete". Data says what happened in
// shapes and decisions (see the package comment); it must encode as JSON.
type Event struct {
	Type string
	Data map[string]any
}

// Store appends records to a tenant's audit log, assigning Seq, Prev and
// Hash (with Link) in one transaction. *sqlite.DB implements it.
type Store interface {
	AppendAudit(ctx context.Context, scope auth.Scope, recs []store.AuditRecord) error
}

// Options configures NewLog. The zero Options is usable.
type Options struct {
	// FlushInterval is how long an event may wait before it is stored;
	// 0 → 50ms.
	FlushInterval time.Duration
	// MaxBatch is the most events stored in one AppendAudit call, and the
	// number pending for one tenant that makes Run store them at once;
	// 0 → 512.
	MaxBatch int
	// MaxPending bounds the events recorded but not yet stored, over all
	// tenants; past it Record fails with ErrFull. 0 → 100,000.
	MaxPending int
	Logger     *slog.Logger     // nil → discard
	Now        func() time.Time // nil → time.Now
	// OperatorScope makes the operator's Scope acting in a tenant, for the
	// records the runtime itself writes into a tenant's log on its behalf
	// (RecordForeignLeak); nil makes those fail.
	OperatorScope func(id tenant.ID) (auth.Scope, error)
}

const (
	defaultFlushInterval = 50 * time.Millisecond
	defaultMaxBatch      = 512
	defaultMaxPending    = 100_000
	// flushParallel is how many tenants' events a flush stores at once.
	flushParallel = 8
	// drainTimeout bounds the final flush when Run stops.
	drainTimeout = 10 * time.Second
)

var (
	// ErrFull is returned by Record when MaxPending events are waiting to be
	// stored: the store is down or slower than the events arrive.
	ErrFull = fmt.Errorf("audit: too many events pending: %w", kind.Unavailable)
	// ErrClosed is returned by Record once Run has stopped.
	ErrClosed = fmt.Errorf("audit: log stopped: %w", kind.Unavailable)
)

// Log batches audit events per tenant, so that requests never wait on the
// disk: Record queues an event in memory and returns, and Run, one background
// goroutine, stores each tenant's pending events with one AppendAudit call
// per MaxBatch events, every FlushInterval or as soon as MaxBatch of a
// tenant's are pending. A batch only ever holds one tenant's events and is
// stored under that tenant's scope.
//
// The queue is bounded (MaxPending). Record never waits for the store: when
// the queue is full, or Run has stopped, it fails, and the event is not
// recorded. The caller must not ignore that: it logs the error. An action
// that must not happen unaudited (a key, secret or policy change) uses
// RecordNow instead, before acting, and fails if it fails. Events are lost only if the process dies
// before they are stored (at most FlushInterval's worth, or what is queued
// behind a failing store), or if the store refuses them for good (tenant
// unknown, record invalid), which is logged as an error.
type Log struct {
	store      Store
	interval   time.Duration
	maxBatch   int
	maxPending int
	log        *slog.Logger
	now        func() time.Time
	operator   func(id tenant.ID) (auth.Scope, error)

	running  atomic.Bool
	flushing sync.Mutex    // held by a flush, so each tenant's batches are stored in order
	kick     chan struct{} // a tenant has MaxBatch events pending

	mu      sync.Mutex
	queues  map[tenant.Incarnation]*queue // by incarnation: a re-created tenant never joins its predecessor's queue
	pending int                           // recorded and not yet stored, queued or being stored
	closed  bool                          // Run has stopped

	leakMu       sync.Mutex // taken before mu, never after
	leaks        map[leakKey]*leakCount
	leakOverflow int // leaks not counted since the last flush: too many owners
}

// queue is one tenant's pending events, oldest first, and the scope to store
// them under.
type queue struct {
	scope auth.Scope
	recs  []store.AuditRecord
}

// NewLog returns a Log that stores events in s. Nothing is stored until Run
// or Flush is called.
func NewLog(s Store, opts Options) *Log {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Log{
		store:      s,
		interval:   cmp.Or(opts.FlushInterval, defaultFlushInterval),
		maxBatch:   cmp.Or(opts.MaxBatch, defaultMaxBatch),
		maxPending: cmp.Or(opts.MaxPending, defaultMaxPending),
		log:        cmp.Or(opts.Logger, slog.New(slog.DiscardHandler)),
		operator:   opts.OperatorScope,
		now:        opts.Now,
		kick:       make(chan struct{}, 1),
		queues:     map[tenant.Incarnation]*queue{},
		leaks:      map[leakKey]*leakCount{},
	}
}

// Record queues e for scope's tenant, stamped with the current time, and
// returns without waiting for the store. It fails, recording nothing, for an
// invalid scope, type or data, with ErrFull when MaxPending events are
// pending and with ErrClosed once Run has stopped.
func (l *Log) Record(scope auth.Scope, e Event) error {
	data, err := encodeEvent(scope, e)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return fmt.Errorf("audit %s: %w", e.Type, ErrClosed)
	case l.pending >= l.maxPending:
		return fmt.Errorf("audit %s: %w", e.Type, ErrFull)
	}
	q := l.queues[scope.Incarnation()]
	if q == nil {
		// The log is the tenant's, not an end user's.
		q = &queue{scope: scope.WithUser("")}
		l.queues[scope.Incarnation()] = q
	}
	// Stamped under the lock, so a tenant's times follow its queue order.
	q.recs = append(q.recs, store.AuditRecord{Time: l.now().UTC(), Type: e.Type, Data: data})
	l.pending++
	if len(q.recs) >= l.maxBatch {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// Forget drops the events of incarnation inc not yet stored, and the foreign
// leaks counted for it, when its tenant is deleted: its store is gone, and
// they must not wait for, or reach, a tenant created again under the same
// id. A flush under way may still store some; the store refuses them, as the
// incarnation is no longer current.
func (l *Log) Forget(inc tenant.Incarnation) {
	l.leakMu.Lock()
	for k := range l.leaks {
		if k.owner == inc {
			delete(l.leaks, k)
		}
	}
	l.leakMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if q := l.queues[inc]; q != nil {
		l.pending -= len(q.recs)
		delete(l.queues, inc)
	}
}

// encodeEvent checks scope and e and returns e's data as JSON.
func encodeEvent(scope auth.Scope, e Event) ([]byte, error) {
	if !scope.Valid() {
		return nil, fmt.Errorf("audit %s: %w", e.Type, store.ErrNoScope)
	}
	if err := checkType(e.Type); err != nil {
		return nil, err
	}
	data := []byte("{}")
	if e.Data != nil {
		var err error
		if data, err = json.Marshal(e.Data); err != nil {
			return nil, fmt.Errorf("%w: audit %s: %v", kind.Invalid, e.Type, err)
		}
	}
	if len(data) > MaxData {
		return nil, fmt.Errorf("%w: audit %s: data is %d bytes, over %d", kind.TooLarge, e.Type, len(data), MaxData)
	}
	return data, nil
}

// RecordNow stores e in scope's tenant's log before it returns, and returns
// nil only once the store has committed it. It is for changes that must not
// happen unaudited (key, secret, policy and tenant changes): the caller
// records first and makes the change only if RecordNow succeeded, so every
// change that was made has its record, even if the process dies right
// after. The tenant's events Record queued earlier are stored first, in
// one chain order. On failure nothing of e is stored or queued, and the
// error says why (ErrClosed once Run has stopped; the store's error).
func (l *Log) RecordNow(ctx context.Context, scope auth.Scope, e Event) error {
	data, err := encodeEvent(scope, e)
	if err != nil {
		return err
	}
	// Holding flushing keeps the background flush from storing this
	// tenant's queue around the record.
	l.flushing.Lock()
	defer l.flushing.Unlock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return fmt.Errorf("audit %s: %w", e.Type, ErrClosed)
	}
	inc := scope.Incarnation()
	q := l.queues[inc]
	delete(l.queues, inc)
	rec := store.AuditRecord{Time: l.now().UTC(), Type: e.Type, Data: data}
	l.mu.Unlock()
	if q != nil {
		if err := l.storeQueue(ctx, q); err != nil {
			return fmt.Errorf("audit %s: store earlier events: %w", e.Type, err)
		}
	}
	if err := l.store.AppendAudit(ctx, scope.WithUser(""), []store.AuditRecord{rec}); err != nil {
		return fmt.Errorf("audit %s: %w", e.Type, err)
	}
	return nil
}

// ForeignLeak is the type of the record that tells a tenant its data (a
// canary or a secret) was caught leaving towards another tenant.
const ForeignLeak = "guard.foreign_leak"

// Pending reports how many events are recorded and not yet stored.
func (l *Log) Pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pending
}

// Run stores pending events until ctx is cancelled; then it stops Record,
// stores what is pending (waiting up to 10s) and returns nil, or the error of
// that last flush. A failed flush while running is logged and retried on the
// next tick. Run must be called once.
func (l *Log) Run(ctx context.Context) error {
	if !l.running.CompareAndSwap(false, true) {
		return errors.New("audit: Run called twice")
	}
	tick := time.NewTicker(l.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			l.flushLeaks(true) // counted leaks go in before Record stops
			l.mu.Lock()
			l.closed = true
			l.mu.Unlock()
			// ctx is done; the last flush still needs a live one, with
			// ctx's values.
			drain, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
			defer cancel()
			if err := l.flush(drain, 0); err != nil {
				return fmt.Errorf("audit: final flush: %w", err)
			}
			return nil
		case <-tick.C:
			l.flushLeaks(false)
			_ = l.flush(ctx, 0) // logged by flush; the events stay queued
		case <-l.kick:
			_ = l.flush(ctx, l.maxBatch) // likewise
		}
	}
}

// Flush stores every pending event now and returns once they are stored, or
// the errors of the tenants whose events could not be (those stay queued).
// It is for tests and shutdown; Run flushes on its own.
func (l *Log) Flush(ctx context.Context) error {
	return l.flush(ctx, 0)
}

// flush stores the events of each tenant with at least least pending (every
// tenant with any, for 0).
func (l *Log) flush(ctx context.Context, least int) error {
	l.flushing.Lock()
	defer l.flushing.Unlock()

	l.mu.Lock()
	var work []*queue
	for id, q := range l.queues {
		if len(q.recs) > 0 && len(q.recs) >= least {
			work = append(work, q)
			delete(l.queues, id) // Record starts a new queue; this one is ours
		}
	}
	l.mu.Unlock()

	errs := make([]error, len(work))
	sem := make(chan struct{}, flushParallel)
	var wg sync.WaitGroup
	for i, q := range work {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = l.storeQueue(ctx, q)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// storeQueue stores q's events, MaxBatch at a time. On failure it puts the events
// not stored back in front of the tenant's queue, unless the store refused
// them for good, and drops them then.
func (l *Log) storeQueue(ctx context.Context, q *queue) error {
	for len(q.recs) > 0 {
		n := min(len(q.recs), l.maxBatch)
		if err := l.store.AppendAudit(ctx, q.scope, q.recs[:n]); err != nil {
			return l.failed(ctx, q, err)
		}
		q.recs = q.recs[n:]
		l.mu.Lock()
		l.pending -= n
		l.mu.Unlock()
	}
	return nil
}

func (l *Log) failed(ctx context.Context, q *queue, err error) error {
	id, inc := q.scope.Tenant(), q.scope.Incarnation()
	l.mu.Lock()
	defer l.mu.Unlock()
	if errors.Is(err, store.ErrUnknownTenant) || errors.Is(err, kind.Invalid) || errors.Is(err, kind.TooLarge) {
		l.pending -= len(q.recs)
		l.log.Error("audit events dropped", "tenant", id, "events", len(q.recs), "error", err)
		return fmt.Errorf("audit: tenant %s: %d events dropped: %w", id, len(q.recs), err)
	}
	failed := len(q.recs)
	if cur := l.queues[inc]; cur != nil {
		q.recs = append(q.recs, cur.recs...)
	}
	l.queues[inc] = q
	level := slog.LevelError
	if ctx.Err() != nil {
		level = slog.LevelDebug // Run is stopping and stores them next
	}
	l.log.Log(ctx, level, "store audit events", "tenant", id, "events", failed, "error", err)
	return fmt.Errorf("audit: tenant %s: %d events not stored: %w", id, failed, err)
}
