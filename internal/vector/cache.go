package vector

import (
	"container/list"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Cache keeps recently used indexes in memory, least recently used first out,
// within a bound on their total Bytes. It is safe for concurrent use.
//
// Keys are the caller's; they must begin with the tenant's incarnation (made
// by Key) so that no two tenants, and no two lives of one tenant id, ever
// share an entry. The cache compares whole keys
// and never searches across them.
type Cache struct {
	maxBytes int

	mu      sync.Mutex
	lru     *list.List // of *entry, most recently used at the front
	entries map[string]*list.Element
	flights map[flightKey]*flight
	bytes   int    // sum of the cached entries' bytes
	seq     uint64 // numbers loads in the order they start
}

type entry struct {
	key     string
	version int64
	seq     uint64 // the load that produced idx
	idx     *Index
	bytes   int // idx.Bytes() when it was stored
}

type flightKey struct {
	key     string
	version int64
}

// flight is one load in progress; callers asking for the same key and
// version wait for it instead of loading again.
type flight struct {
	done     chan struct{} // closed when idx and err are set
	seq      uint64
	detached bool // set by Invalidate: the result is not stored
	idx      *Index
	err      error
}

// NewCache returns a cache holding at most about maxBytes of indexes (as
// measured by Index.Bytes). If maxBytes ≤ 0 the cache is unbounded.
func NewCache(maxBytes int) *Cache {
	return &Cache{
		maxBytes: maxBytes,
		lru:      list.New(),
		entries:  make(map[string]*list.Element),
		flights:  make(map[flightKey]*flight),
	}
}

// Get returns the index cached under key if it was loaded for version.
// Otherwise it calls load, caches the result under key and version, and
// evicts least recently used indexes other than this one until the cache is
// within its bound. Concurrent callers asking for the same key and version
// share one call to load and its result or error; errors are not cached.
//
// The cache measures an index when it stores it: an index returned by Get
// should be treated as read-only, and a change to the data behind it should
// come with a new version.
func (c *Cache) Get(key string, version int64, load func() (*Index, error)) (*Index, error) {
	fk := flightKey{key, version}
	c.mu.Lock()
	if el, ok := c.entries[key]; ok {
		if e := el.Value.(*entry); e.version == version {
			c.lru.MoveToFront(el)
			c.mu.Unlock()
			return e.idx, nil
		}
	}
	if f, ok := c.flights[fk]; ok {
		c.mu.Unlock()
		<-f.done
		return f.idx, f.err
	}
	c.seq++
	f := &flight{done: make(chan struct{}), seq: c.seq}
	c.flights[fk] = f
	c.mu.Unlock()

	c.run(fk, f, load)
	return f.idx, f.err
}

// run calls load for f and publishes its result, even if load panics.
func (c *Cache) run(fk flightKey, f *flight, load func() (*Index, error)) {
	finished := false
	defer func() {
		if !finished {
			f.err = errors.New("vector: index load panicked")
		}
		size := 0
		if f.err == nil {
			size = f.idx.Bytes()
		}
		c.mu.Lock()
		if !f.detached {
			delete(c.flights, fk)
			if f.err == nil {
				c.store(fk, f, size)
			}
		}
		c.mu.Unlock()
		close(f.done)
	}()
	f.idx, f.err = load()
	if f.err == nil && f.idx == nil {
		f.err = fmt.Errorf("vector: load %q returned no index", fk.key)
	}
	if f.err != nil {
		f.idx = nil
	}
	finished = true
}

// store caches f's index, of size bytes, under fk unless a load that
// started later has already stored one, then evicts down to the bound. c.mu
// must be held.
func (c *Cache) store(fk flightKey, f *flight, size int) {
	if el, ok := c.entries[fk.key]; ok {
		if el.Value.(*entry).seq > f.seq {
			return // a fresher load finished first
		}
		c.remove(el)
	}
	e := &entry{key: fk.key, version: fk.version, seq: f.seq, idx: f.idx, bytes: size}
	keep := c.lru.PushFront(e)
	c.entries[fk.key] = keep
	c.bytes += e.bytes
	for c.maxBytes > 0 && c.bytes > c.maxBytes {
		last := c.lru.Back()
		if last == keep {
			break // never evict the index just loaded
		}
		c.remove(last)
	}
}

// remove drops a cached entry. c.mu must be held.
func (c *Cache) remove(el *list.Element) {
	e := c.lru.Remove(el).(*entry)
	delete(c.entries, e.key)
	c.bytes -= e.bytes
}

// Invalidate drops the index cached under key, at every version. A load for
// key already in progress still answers its callers but its result is not
// cached, so the next Get loads afresh.
func (c *Cache) Invalidate(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		c.remove(el)
	}
	for fk, f := range c.flights {
		if fk.key == key {
			f.detached = true
			delete(c.flights, fk)
		}
	}
}

// Key returns the cache key of incarnation inc's index of kind (e.g. "kb")
// embedded by model.
func Key(inc tenant.Incarnation, kind, model string) string {
	return string(inc) + "/" + kind + "/" + model
}

// InvalidateTenant drops every index of incarnation inc, as Invalidate does
// for one key, when its tenant is deleted.
func (c *Cache) InvalidateTenant(inc tenant.Incarnation) {
	prefix := string(inc) + "/"
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, el := range c.entries {
		if strings.HasPrefix(key, prefix) {
			c.remove(el)
		}
	}
	for fk, f := range c.flights {
		if strings.HasPrefix(fk.key, prefix) {
			f.detached = true
			delete(c.flights, fk)
		}
	}
}

// Len returns the number of cached indexes.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// Bytes returns the total size of the cached indexes, as measured when each
// was stored.
func (c *Cache) Bytes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}
