package embed

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

var (
	keyA = []byte("tenant-a-key-0123456789abcdef!!!")
	keyB = []byte("tenant-b-key-0123456789abcdef!!!")
)

// countingEmbedder records what reaches the underlying Embedder. With a tag,
// every vector it returns is marked (its first component is the tag), so a
// test can tell which embedder — and so which tenant — a vector came from.
type countingEmbedder struct {
	Embedder
	tag   float32
	calls atomic.Int32
	mu    sync.Mutex
	seen  [][]string
}

func newCounting(tag float32) *countingEmbedder {
	return &countingEmbedder{Embedder: NewOffline(16), tag: tag}
}

func (c *countingEmbedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	c.calls.Add(1)
	c.mu.Lock()
	c.seen = append(c.seen, slices.Clone(texts))
	c.mu.Unlock()
	vecs, err := c.Embedder.Embed(ctx, texts)
	if err == nil && c.tag != 0 {
		for _, v := range vecs {
			v[0] = c.tag
		}
	}
	return vecs, err
}

func mustEmbed(t *testing.T, c *Cache, e Embedder, id tenant.Incarnation, key []byte, texts ...string) [][]float32 {
	t.Helper()
	got, err := c.Embed(context.Background(), e, id, key, texts)
	if err != nil {
		t.Fatalf("Cache.Embed(%s, %q): %v", id, texts, err)
	}
	if len(got) != len(texts) {
		t.Fatalf("Cache.Embed(%s) returned %d vectors for %d texts", id, len(got), len(texts))
	}
	return got
}

func TestCacheSameTextTwoTenants(t *testing.T) {
	c := NewCache(100)
	e := newCounting(0)
	a := mustEmbed(t, c, e, "acme", keyA, "the shared text")
	b := mustEmbed(t, c, e, "globex", keyB, "the shared text")
	if n := e.calls.Load(); n != 2 {
		t.Errorf("embedder called %d times, want 2 (one per tenant)", n)
	}
	if c.Len() != 2 {
		t.Errorf("Len() = %d, want 2", c.Len())
	}
	if !slices.Equal(a[0], b[0]) {
		t.Error("same text, same embedder: vectors differ")
	}
	// Same tenant id with a different key (e.g. after key rotation) is a
	// different entry too.
	mustEmbed(t, c, e, "acme", keyB, "the shared text")
	if n := e.calls.Load(); n != 3 {
		t.Errorf("embedder called %d times, want 3 (a new tenant key misses)", n)
	}
}

func TestCacheHit(t *testing.T) {
	c := NewCache(100)
	e := newCounting(0)
	first := mustEmbed(t, c, e, "acme", keyA, "alpha", "beta")
	second := mustEmbed(t, c, e, "acme", keyA, "beta", "alpha")
	if n := e.calls.Load(); n != 1 {
		t.Errorf("embedder called %d times, want 1", n)
	}
	if !slices.Equal(first[0], second[1]) || !slices.Equal(first[1], second[0]) {
		t.Error("cached vectors differ from the computed ones")
	}
	// Callers own what they get: changing it does not change the cache.
	second[0][0] = 42
	again := mustEmbed(t, c, e, "acme", keyA, "beta")
	if again[0][0] == 42 {
		t.Error("a caller's write to a returned vector reached the cache")
	}
}

func TestCacheOnlyMissesBatched(t *testing.T) {
	c := NewCache(100)
	e := newCounting(0)
	mustEmbed(t, c, e, "acme", keyA, "one")
	got := mustEmbed(t, c, e, "acme", keyA, "one", "two", "three", "two")
	want := [][]string{{"one"}, {"two", "three"}}
	if !slices.EqualFunc(e.seen, want, slices.Equal) {
		t.Errorf("embedder saw %q, want %q", e.seen, want)
	}
	if !slices.Equal(got[1], got[3]) {
		t.Error("a repeated text got different vectors")
	}
	got[1][0] = 7
	if got[3][0] == 7 {
		t.Error("repeated texts share one slice")
	}
	if c.Len() != 3 {
		t.Errorf("Len() = %d, want 3", c.Len())
	}
}

func TestCacheKeys(t *testing.T) {
	mac := hmac.New(sha256.New, keyA)
	k := cacheKey(mac, "acme", "m", "secret text")
	if !strings.HasPrefix(k, "acme:") || len(k) != len("acme:")+sha256.Size {
		t.Errorf("key %q: want \"acme:\" followed by a 32-byte MAC", k)
	}
	if strings.Contains(k, "secret") {
		t.Error("key contains the text")
	}
	distinct := map[string]bool{
		k: true,
		cacheKey(hmac.New(sha256.New, keyB), "acme", "m", "secret text"): true,
		cacheKey(mac, "acme", "m2", "secret text"):                       true,
		cacheKey(mac, "acme", "m", "secret text "):                       true,
		cacheKey(mac, "acme2", "m", "secret text"):                       true,
		cacheKey(mac, "acme", "", "m\x00secret text"):                    true,
	}
	if len(distinct) != 6 {
		t.Errorf("cache keys collide: %d distinct of 6", len(distinct))
	}
}

func TestCacheTamperedEntryRefused(t *testing.T) {
	ctx := context.Background()
	c := NewCache(100)
	ea, eb := newCounting(1), newCounting(2) // same Model(), tagged per tenant
	mustEmbed(t, c, ea, "acme", keyA, "payroll for march")

	poison := func(e *cacheEntry) {
		for i := range e.vec {
			e.vec[i] = 99
		}
	}

	t.Run("entry relabelled to another tenant", func(t *testing.T) {
		c.mu.Lock()
		for _, e := range c.entries {
			e.tenant = "globex"
			poison(e)
		}
		c.mu.Unlock()
		before := ea.calls.Load()
		got, err := c.Embed(ctx, ea, "acme", keyA, []string{"payroll for march"})
		if err != nil {
			t.Fatal(err)
		}
		if got[0][0] != 1 || slices.Contains(got[0], 99) {
			t.Fatalf("served the tampered entry: %v", got[0])
		}
		if ea.calls.Load() != before+1 {
			t.Error("tampered entry was not recomputed")
		}
		if c.Len() != 1 {
			t.Errorf("Len() = %d, want 1 (the tampered entry replaced)", c.Len())
		}
	})

	t.Run("entry moved under another tenant's key", func(t *testing.T) {
		// Place acme's entry where globex's lookup for the same text lands.
		bKey := cacheKey(hmac.New(sha256.New, keyB), "globex", ea.Model(), "payroll for march")
		c.mu.Lock()
		var moved *cacheEntry
		for _, e := range c.entries {
			moved = e
		}
		poison(moved)
		c.entries[bKey] = moved
		c.mu.Unlock()
		got, err := c.Embed(ctx, eb, "globex", keyB, []string{"payroll for march"})
		if err != nil {
			t.Fatal(err)
		}
		if got[0][0] != 2 || slices.Contains(got[0], 99) {
			t.Fatalf("globex was served acme's entry: %v", got[0][:4])
		}
		if eb.calls.Load() != 1 {
			t.Errorf("globex embedder called %d times, want 1", eb.calls.Load())
		}
	})

	t.Run("entry of another model", func(t *testing.T) {
		c.mu.Lock()
		for _, e := range c.entries {
			if e.tenant == "globex" {
				e.model = "other"
				poison(e)
			}
		}
		c.mu.Unlock()
		got := mustEmbed(t, c, eb, "globex", keyB, "payroll for march")
		if got[0][0] != 2 || slices.Contains(got[0], 99) {
			t.Fatalf("served an entry of another model: %v", got[0][:4])
		}
	})
}

func TestCacheRefusesBadInput(t *testing.T) {
	c := NewCache(10)
	e := newCounting(0)
	tests := []struct {
		name string
		e    Embedder
		id   tenant.Incarnation
		key  []byte
	}{
		{"empty tenant", e, "", keyA},
		{"invalid tenant", e, "Acme:x", keyA},
		{"no key", e, "acme", nil},
		{"short key", e, "acme", []byte("short")},
		{"empty model", modelEmbedder{e, ""}, "acme", keyA},
		{"NUL in model", modelEmbedder{e, "a\x00b"}, "acme", keyA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.Embed(context.Background(), tt.e, tt.id, tt.key, []string{"x"}); err == nil {
				t.Error("Embed succeeded, want error")
			}
		})
	}
	if e.calls.Load() != 0 || c.Len() != 0 {
		t.Errorf("embedder called %d times, %d entries; want none", e.calls.Load(), c.Len())
	}
}

type modelEmbedder struct {
	Embedder
	model string
}

func (m modelEmbedder) Model() string { return m.model }

// badEmbedder answers with the wrong shape or fails.
type badEmbedder struct {
	Embedder
	vecs [][]float32
	err  error
}

func (b badEmbedder) Embed(context.Context, []string) ([][]float32, error) { return b.vecs, b.err }

func TestCacheEmbedderFailures(t *testing.T) {
	off := NewOffline(4)
	boom := errors.New("boom")
	tests := []struct {
		name string
		e    badEmbedder
	}{
		{"error", badEmbedder{off, nil, boom}},
		{"too few", badEmbedder{off, [][]float32{{1, 0, 0, 0}}, nil}},
		{"wrong dim", badEmbedder{off, [][]float32{{1, 0, 0, 0}, {1, 0}}, nil}},
		{"empty vector", badEmbedder{off, [][]float32{{1, 0, 0, 0}, {}}, nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCache(10)
			if _, err := c.Embed(context.Background(), tt.e, "acme", keyA, []string{"a", "b"}); err == nil {
				t.Fatal("Embed succeeded, want error")
			}
			if c.Len() != 0 {
				t.Errorf("Len() = %d after a failure, want 0", c.Len())
			}
		})
	}
}

func TestCacheEviction(t *testing.T) {
	c := NewCache(3)
	e := newCounting(0)
	mustEmbed(t, c, e, "acme", keyA, "a", "b", "c")
	mustEmbed(t, c, e, "acme", keyA, "a") // a is now the most recent
	mustEmbed(t, c, e, "acme", keyA, "d") // evicts b
	if c.Len() != 3 {
		t.Fatalf("Len() = %d, want 3", c.Len())
	}
	calls := e.calls.Load()
	mustEmbed(t, c, e, "acme", keyA, "a", "c", "d")
	if e.calls.Load() != calls {
		t.Error("a, c or d was evicted")
	}
	mustEmbed(t, c, e, "acme", keyA, "b")
	if e.calls.Load() != calls+1 {
		t.Error("b was not evicted")
	}
	if NewCache(0).max != DefaultCacheEntries {
		t.Errorf("NewCache(0) capacity = %d, want %d", NewCache(0).max, DefaultCacheEntries)
	}
}

func TestCacheDropTenant(t *testing.T) {
	c := NewCache(100)
	e := newCounting(0)
	mustEmbed(t, c, e, "acme", keyA, "a", "b")
	mustEmbed(t, c, e, "globex", keyB, "a")
	if n := c.DropTenant("acme"); n != 2 {
		t.Errorf("DropTenant = %d, want 2", n)
	}
	if c.Len() != 1 {
		t.Errorf("Len() = %d, want 1", c.Len())
	}
	calls := e.calls.Load()
	mustEmbed(t, c, e, "globex", keyB, "a")
	if e.calls.Load() != calls {
		t.Error("DropTenant removed another tenant's entry")
	}
}

func TestCacheConcurrent(t *testing.T) {
	c := NewCache(64) // small, so eviction runs concurrently with reads
	tenants := []struct {
		id  tenant.Incarnation
		key []byte
		e   *countingEmbedder
	}{
		{"acme", keyA, newCounting(1)},
		{"globex", keyB, newCounting(2)},
		{"initech", []byte("initech-key-0123456789abcdef!!!!"), newCounting(3)},
	}
	ref := NewOffline(16)
	var wg sync.WaitGroup
	for g := range 12 {
		wg.Go(func() {
			tn := tenants[g%len(tenants)]
			for i := range 200 {
				texts := []string{fmt.Sprintf("doc %d", i%40), fmt.Sprintf("doc %d", (i*7)%40), "common text"}
				got, err := c.Embed(context.Background(), tn.e, tn.id, tn.key, texts)
				if err != nil {
					t.Error(err)
					return
				}
				for j, v := range got {
					want := ref.EmbedOne(texts[j])
					want[0] = tn.e.tag
					if !slices.Equal(v, want) {
						t.Errorf("%s got a wrong vector for %q (tag %v)", tn.id, texts[j], v[0])
						return
					}
				}
				c.Len()
			}
		})
	}
	wg.Wait()
	if c.Len() > 64 {
		t.Errorf("Len() = %d, want at most 64", c.Len())
	}
}
