package sqlite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"syscall"
)

// Bounds of the pool size derived from the file-descriptor limit.
const (
	// fdsPerTenant is what an open tenant database may hold: the database
	// file and its WAL for each of its connections, and the shared-memory
	// index.
	fdsPerTenant = 2*connsPerTenant + 1
	minMaxOpen   = 16
	// maxMaxOpen caps the default, for memory: each open database keeps
	// its page caches and prepared statements.
	maxMaxOpen = 16384
)

// defaultMaxOpen sizes the pool from the file-descriptor limit (which Go
// raises to the hard limit at start): three quarters of it for tenant
// databases, the rest for sockets, the control plane and the rest of the
// process.
func defaultMaxOpen() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return minMaxOpen
	}
	return maxOpenFor(lim.Cur)
}

// maxOpenFor returns the pool size for a limit of nofile descriptors.
func maxOpenFor(nofile uint64) int {
	n := min(nofile, 1<<24) / 4 * 3 / fdsPerTenant
	return int(min(max(n, minMaxOpen), maxMaxOpen))
}

// errClosed is returned by a pool after close.
var errClosed = errors.New("tenant stores are closed")

// A pool keeps at most max tenant databases open and closes the least recently
// used idle one to make room for another. Every user brackets its work with
// acquire and release. A database is closed only when no one holds it, so an
// eviction, a drop or close never closes one under a running query; when all
// max are in use, acquire waits for a release.
//
// Opening is slow (file open and migrations), so it runs without mu held; the
// handle is in the pool from the start and later users of the same id wait on
// its ready channel, so one id is opened once however many ask at the same time.
type pool[T io.Closer] struct {
	max  int
	open func(ctx context.Context, id string) (T, error)
	log  *slog.Logger

	mu      sync.Mutex
	entries map[string]*handle[T]    // the handles in the pool, by id
	leaving map[string]chan struct{} // ids whose last handle is still closing or being dropped
	slots   int                      // handles that hold a database open, or are opening one
	tick    uint64                   // use counter for least-recently-used order
	changed chan struct{}            // closed and replaced when a handle goes idle or a slot frees
	closed  bool
}

// A handle is one open (or opening) database and the count of its users.
type handle[T io.Closer] struct {
	id    string
	ready chan struct{} // closed once the open attempt is over; v or err is set then
	v     T
	err   error

	done     chan struct{} // closed once v is closed and the slot given back
	closeErr error         // set before done is closed

	// Guarded by pool.mu.
	refs   int
	used   uint64
	pooled bool // in pool.entries; once false, the last release closes the handle
}

func newPool[T io.Closer](max int, open func(context.Context, string) (T, error), log *slog.Logger) *pool[T] {
	return &pool[T]{
		max:     max,
		open:    open,
		log:     log,
		entries: make(map[string]*handle[T]),
		leaving: make(map[string]chan struct{}),
		changed: make(chan struct{}),
	}
}

// acquire returns the handle for id, opening it if needed. The caller must
// release it.
func (p *pool[T]) acquire(ctx context.Context, id string) (*handle[T], error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, errClosed
		}
		if h := p.entries[id]; h != nil {
			h.refs++
			p.touch(h)
			p.mu.Unlock()
			select {
			case <-h.ready:
			case <-ctx.Done():
				p.release(h)
				return nil, ctx.Err()
			}
			if h.err == nil {
				return h, nil
			}
			p.release(h)
			if (errors.Is(h.err, context.Canceled) || errors.Is(h.err, context.DeadlineExceeded)) && ctx.Err() == nil {
				continue // the first opener gave up; try again on our own context
			}
			return nil, h.err
		}
		wait := p.leaving[id]
		var victim *handle[T]
		if wait == nil && p.slots >= p.max {
			if victim = p.idlest(); victim == nil {
				wait = p.changed
			}
		}
		if wait != nil {
			p.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if victim != nil {
			// The new handle takes over the victim's slot, and id waits
			// behind the victim's close.
			p.unpool(victim)
			p.leaving[victim.id] = victim.done
		} else {
			p.slots++
		}
		h := &handle[T]{id: id, ready: make(chan struct{}), done: make(chan struct{}), refs: 1, pooled: true}
		p.entries[id] = h
		p.touch(h)
		p.mu.Unlock()

		if victim != nil {
			p.log.Debug("evict tenant store", "storage_id", victim.id)
			p.shut(victim, false)
		}
		h.v, h.err = p.open(ctx, id)
		if h.err != nil {
			p.mu.Lock()
			if h.pooled {
				p.unpool(h)
			}
			p.mu.Unlock()
		}
		close(h.ready)
		if h.err != nil {
			p.release(h)
			return nil, h.err
		}
		return h, nil
	}
}

// release gives back a handle from acquire. The last release of a handle that
// has left the pool closes it.
func (p *pool[T]) release(h *handle[T]) {
	p.mu.Lock()
	h.refs--
	idle := h.refs == 0
	if idle {
		p.broadcast()
	}
	gone := idle && !h.pooled
	p.mu.Unlock()
	if gone {
		p.shut(h, true)
	}
}

// drop takes id out of the pool, waits until its handle has no users and is
// closed, and then calls remove. Until drop returns, acquire for id waits.
func (p *pool[T]) drop(ctx context.Context, id string, remove func() error) error {
	p.mu.Lock()
	for p.leaving[id] != nil && !p.closed {
		wait := p.leaving[id]
		p.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
		p.mu.Lock()
	}
	if p.closed {
		p.mu.Unlock()
		return errClosed
	}
	finished := make(chan struct{})
	p.leaving[id] = finished
	h := p.entries[id]
	idle := false
	if h != nil {
		p.unpool(h)
		idle = h.refs == 0
	}
	p.mu.Unlock()

	defer func() {
		p.mu.Lock()
		delete(p.leaving, id)
		p.broadcast()
		p.mu.Unlock()
		close(finished)
	}()
	if h != nil {
		if idle {
			p.shut(h, true)
		}
		select {
		case <-h.done:
		case <-ctx.Done():
			return ctx.Err() // the handle still closes on its last release
		}
	}
	return remove()
}

// close refuses new work, waits for the work in flight and closes every handle.
func (p *pool[T]) close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	var all, idle []*handle[T]
	for _, h := range p.entries {
		all = append(all, h)
		p.unpool(h)
		if h.refs == 0 {
			idle = append(idle, h)
		}
	}
	var leaving []chan struct{}
	for _, c := range p.leaving {
		leaving = append(leaving, c)
	}
	p.broadcast()
	p.mu.Unlock()

	for _, h := range idle {
		p.shut(h, true)
	}
	var errs []error
	for _, h := range all {
		<-h.done
		errs = append(errs, h.closeErr)
	}
	for _, c := range leaving {
		<-c
	}
	return errors.Join(errs...)
}

// opened reports how many handles hold a database open or are opening one.
func (p *pool[T]) opened() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.slots
}

// shut closes a handle that has left the pool and has no users. With freeSlot
// false its slot passes to the handle that evicted it.
func (p *pool[T]) shut(h *handle[T], freeSlot bool) {
	if h.err == nil {
		if err := h.v.Close(); err != nil {
			h.closeErr = fmt.Errorf("close tenant store %s: %w", h.id, err)
			p.log.Warn("close tenant store", "storage_id", h.id, "err", err)
		}
	}
	p.mu.Lock()
	if p.leaving[h.id] == h.done {
		delete(p.leaving, h.id)
	}
	if freeSlot {
		p.slots--
	}
	p.broadcast()
	p.mu.Unlock()
	close(h.done)
}

// idlest returns the least recently used handle without users, or nil.
// p.mu must be held.
func (p *pool[T]) idlest() *handle[T] {
	var victim *handle[T]
	for _, h := range p.entries {
		if h.refs == 0 && (victim == nil || h.used < victim.used) {
			victim = h
		}
	}
	return victim
}

// touch marks h as just used. p.mu must be held.
func (p *pool[T]) touch(h *handle[T]) {
	p.tick++
	h.used = p.tick
}

// unpool takes h out of the pool. p.mu must be held.
func (p *pool[T]) unpool(h *handle[T]) {
	delete(p.entries, h.id)
	h.pooled = false
}

// broadcast wakes every acquire waiting for a slot. p.mu must be held.
func (p *pool[T]) broadcast() {
	close(p.changed)
	p.changed = make(chan struct{})
}
