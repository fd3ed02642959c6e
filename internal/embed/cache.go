package embed

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// DefaultCacheEntries is the capacity of NewCache(0).
const DefaultCacheEntries = 10_000

// MinTenantKeyLen is the shortest tenant key Cache.Embed accepts.
const MinTenantKeyLen = 16

// Cache is a bounded, least-recently-used cache of embeddings shared by all
// tenants and partitioned between them. It is safe for concurrent use.
//
// An entry's key is the tenant id followed by HMAC-SHA256(tenantKey,
// model || 0x00 || text), and the entry records its tenant and model, which
// are checked on every read: the same text under two tenants is two entries,
// a tenant cannot address (or probe for) another tenant's entries without that
// tenant's key, and an entry that does not belong to the reader is dropped,
// never served. Vectors are copied in and out, so no caller can change what
// another reads.
//
// Capacity is shared: one busy tenant can evict others' entries (costing them
// a recomputation, never a wrong answer). Two concurrent misses for the same
// text both call the Embedder.
type Cache struct {
	max int

	mu      sync.Mutex
	entries map[string]*cacheEntry
	head    cacheEntry // sentinel of the recency list; head.next is the newest
}

type cacheEntry struct {
	key        string
	tenant     tenant.Incarnation
	model      string
	vec        []float32
	prev, next *cacheEntry
}

// NewCache returns a cache holding at most maxEntries vectors; maxEntries <= 0
// means DefaultCacheEntries.
func NewCache(maxEntries int) *Cache {
	if maxEntries <= 0 {
		maxEntries = DefaultCacheEntries
	}
	c := &Cache{max: maxEntries, entries: map[string]*cacheEntry{}}
	c.head.prev, c.head.next = &c.head, &c.head
	return c
}

// Len returns the number of cached vectors, over all tenants.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// Embed returns embeddings for texts through the cache. tenantKey is a secret
// per-tenant key (the caller derives it from the tenant's data key, at least
// 16 bytes); the cache key is HMAC-SHA256(tenantKey, model || 0 || text)
// prefixed by the tenant id, and each entry records its tenant and is checked
// on read, so the same text under two tenants is two entries and no entry ever
// serves another tenant. Only misses go to e, in one call (e batches them);
// a text repeated in texts is embedded once. An invalid tenant id, a short
// key, or an Embedder answer of the wrong shape is an error and caches
// nothing.
func (c *Cache) Embed(ctx context.Context, e Embedder, id tenant.Incarnation, tenantKey []byte, texts []string) ([][]float32, error) {
	if err := tenant.CheckIncarnation(id); err != nil {
		return nil, fmt.Errorf("embed: cache: %w", err)
	}
	if len(tenantKey) < MinTenantKeyLen {
		return nil, fmt.Errorf("embed: cache: tenant key must be at least %d bytes", MinTenantKeyLen)
	}
	model := e.Model()
	if model == "" || strings.IndexByte(model, 0) >= 0 {
		return nil, errors.New("embed: cache: embedder model must be non-empty and free of NUL bytes")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	mac := hmac.New(sha256.New, tenantKey)
	keys := make([]string, len(texts))
	for i, t := range texts {
		keys[i] = cacheKey(mac, id, model, t)
	}

	out := make([][]float32, len(texts))
	var (
		missTexts []string
		missKeys  []string
		missAt    = map[string][]int{} // key → positions in texts
	)
	c.mu.Lock()
	for i, k := range keys {
		if v, ok := c.get(k, id, model); ok {
			out[i] = v
			continue
		}
		if _, seen := missAt[k]; !seen {
			missTexts = append(missTexts, texts[i])
			missKeys = append(missKeys, k)
		}
		missAt[k] = append(missAt[k], i)
	}
	c.mu.Unlock()
	if len(missTexts) == 0 {
		return out, nil
	}

	vecs, err := e.Embed(ctx, missTexts)
	if err != nil {
		return nil, err
	}
	if len(vecs) != len(missTexts) {
		return nil, fmt.Errorf("embed: cache: embedder returned %d vectors for %d texts", len(vecs), len(missTexts))
	}
	dim := e.Dim()
	for _, v := range vecs {
		if len(v) == 0 || (dim > 0 && len(v) != dim) || len(v) != len(vecs[0]) {
			return nil, fmt.Errorf("embed: cache: embedder returned a vector of %d dimensions, want %d", len(v), max(dim, len(vecs[0])))
		}
	}

	c.mu.Lock()
	for j, k := range missKeys {
		c.put(&cacheEntry{key: k, tenant: id, model: model, vec: clone(vecs[j])})
	}
	c.mu.Unlock()
	for j, k := range missKeys {
		for n, i := range missAt[k] {
			if n == 0 {
				out[i] = vecs[j]
			} else {
				out[i] = clone(vecs[j])
			}
		}
	}
	return out, nil
}

// cacheKey returns id || ":" || HMAC-SHA256(tenantKey, model || 0 || text).
// Tenant ids never contain ':', so the prefix is unambiguous.
func cacheKey(mac hash.Hash, id tenant.Incarnation, model, text string) string {
	mac.Reset()
	mac.Write([]byte(model))
	mac.Write([]byte{0})
	mac.Write([]byte(text))
	var sum [sha256.Size]byte
	b := make([]byte, 0, len(id)+1+sha256.Size)
	b = append(b, id...)
	b = append(b, ':')
	b = append(b, mac.Sum(sum[:0])...)
	return string(b)
}

// DropTenant removes every entry of incarnation id of a tenant, for example when the tenant is
// deleted or its data key rotated, and returns how many it removed.
func (c *Cache) DropTenant(id tenant.Incarnation) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	prefix := string(id) + ":"
	n := 0
	for k, e := range c.entries {
		if e.tenant == id || strings.HasPrefix(k, prefix) {
			c.unlink(e)
			delete(c.entries, k)
			n++
		}
	}
	return n
}

// get returns a copy of the vector under k if the entry belongs to id and
// model; an entry that does not is removed. c.mu must be held.
func (c *Cache) get(k string, id tenant.Incarnation, model string) ([]float32, bool) {
	e, ok := c.entries[k]
	if !ok {
		return nil, false
	}
	if e.tenant != id || e.model != model || e.key != k {
		// Never served; the caller recomputes it.
		c.unlink(e)
		delete(c.entries, k)
		return nil, false
	}
	c.unlink(e)
	c.pushFront(e)
	return clone(e.vec), true
}

// put inserts or replaces e and evicts the least recently used entries
// beyond capacity. c.mu must be held.
func (c *Cache) put(e *cacheEntry) {
	if old, ok := c.entries[e.key]; ok {
		c.remove(old)
	}
	c.entries[e.key] = e
	c.pushFront(e)
	for len(c.entries) > c.max && c.head.prev != &c.head {
		c.remove(c.head.prev)
	}
}

func (c *Cache) remove(e *cacheEntry) {
	c.unlink(e)
	if c.entries[e.key] == e {
		delete(c.entries, e.key)
	}
}

func (c *Cache) unlink(e *cacheEntry) {
	if e.prev != nil {
		e.prev.next, e.next.prev = e.next, e.prev
		e.prev, e.next = nil, nil
	}
}

func (c *Cache) pushFront(e *cacheEntry) {
	e.prev, e.next = &c.head, c.head.next
	c.head.next.prev = e
	c.head.next = e
}

func clone(v []float32) []float32 { return append([]float32(nil), v...) }
