package policy

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"maps"
	"slices"
	"sync"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Bounds of the compiled-set cache used by [Engine.For]: at most
// cacheEntries sets, and at most cacheBytes of input (policy text plus tool
// names) behind them.
const (
	cacheEntries = 4096
	cacheBytes   = 64 << 20
)

// For is [Engine.Compile] with a cache keyed by a SHA-256 hash of (id,
// profiles, source). The cache is bounded and evicts the least recently used
// set; it is safe for concurrent use. Errors are not cached.
func (e *Engine) For(id tenant.ID, profiles map[string][]string, source string) (*Set, error) {
	key, size := cacheKey(id, profiles, source)
	if s, ok := e.cache.get(key); ok {
		return s, nil
	}
	s, err := e.Compile(id, profiles, source)
	if err != nil {
		return nil, err
	}
	return e.cache.add(key, size, s), nil
}

// cacheKey hashes the inputs of Compile unambiguously (every field is length
// prefixed, map keys and tool lists sorted) and returns their total size.
func cacheKey(id tenant.ID, profiles map[string][]string, source string) ([sha256.Size]byte, int) {
	h := sha256.New()
	size := 0
	putLen := func(n int) {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(n))
		h.Write(b[:])
	}
	put := func(s string) {
		putLen(len(s))
		h.Write([]byte(s))
		size += len(s)
	}
	put(string(id))
	put(source)
	putLen(len(profiles))
	for _, p := range slices.Sorted(maps.Keys(profiles)) {
		put(p)
		tools := slices.Compact(slices.Sorted(slices.Values(profiles[p])))
		putLen(len(tools))
		for _, t := range tools {
			put(t)
		}
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	return key, size
}

type cache struct {
	mu         sync.Mutex
	maxEntries int
	maxBytes   int
	bytes      int
	order      *list.List // of *cached, most recently used first
	byKey      map[[sha256.Size]byte]*list.Element
}

type cached struct {
	key  [sha256.Size]byte
	size int
	set  *Set
}

func newCache(maxEntries, maxBytes int) *cache {
	return &cache{
		maxEntries: maxEntries,
		maxBytes:   maxBytes,
		order:      list.New(),
		byKey:      make(map[[sha256.Size]byte]*list.Element),
	}
}

func (c *cache) get(key [sha256.Size]byte) (*Set, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[key]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*cached).set, true
}

// add stores s under key unless another caller stored one first, and returns
// the stored set.
func (c *cache) add(key [sha256.Size]byte, size int, s *Set) *Set {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[key]; ok {
		c.order.MoveToFront(el)
		return el.Value.(*cached).set
	}
	c.byKey[key] = c.order.PushFront(&cached{key, size, s})
	c.bytes += size
	for c.order.Len() > 1 && (c.order.Len() > c.maxEntries || c.bytes > c.maxBytes) {
		old := c.order.Remove(c.order.Back()).(*cached)
		delete(c.byKey, old.key)
		c.bytes -= old.size
	}
	return s
}
