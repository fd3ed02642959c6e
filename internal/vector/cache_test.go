package vector

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// filled returns an index of dim 4 holding n vectors.
func filled(t *testing.T, n int) *Index {
	t.Helper()
	x := New(4)
	for i := range n {
		if err := x.Add(int64(i), []float32{1, float32(i), 2, 3}); err != nil {
			t.Fatal(err)
		}
	}
	return x
}

// loader counts its calls and returns a fresh index of n vectors each time.
type loader struct {
	t     *testing.T
	n     int
	calls atomic.Int32
}

func (l *loader) load() (*Index, error) {
	l.calls.Add(1)
	return filled(l.t, l.n), nil
}

func TestCacheVersion(t *testing.T) {
	c := NewCache(0)
	l := &loader{t: t, n: 3}
	for _, tc := range []struct {
		version   int64
		wantCalls int32
	}{
		{1, 1},
		{1, 1}, // cached
		{2, 2}, // new version reloads
		{2, 2},
		{1, 3}, // an older version is a different version
	} {
		if _, err := c.Get("t1/kb", tc.version, l.load); err != nil {
			t.Fatal(err)
		}
		if got := l.calls.Load(); got != tc.wantCalls {
			t.Errorf("after Get(version %d): load called %d times, want %d", tc.version, got, tc.wantCalls)
		}
	}
	if c.Len() != 1 {
		t.Errorf("Len = %d, want 1 (one entry per key)", c.Len())
	}
}

func TestCacheKeysAreSeparate(t *testing.T) {
	c := NewCache(0)
	a, b := filled(t, 1), filled(t, 2)
	got, _ := c.Get("tenantA/kb", 1, func() (*Index, error) { return a, nil })
	if got != a {
		t.Fatal("Get returned the wrong index")
	}
	got, _ = c.Get("tenantB/kb", 1, func() (*Index, error) { return b, nil })
	if got != b {
		t.Error("tenantB got tenantA's index")
	}
	got, _ = c.Get("tenantA/kb", 1, func() (*Index, error) { t.Error("reloaded"); return nil, nil })
	if got != a {
		t.Error("tenantA got another index")
	}
}

func TestCacheSingleflight(t *testing.T) {
	c := NewCache(0)
	var calls atomic.Int32
	release := make(chan struct{})
	want := filled(t, 1)
	load := func() (*Index, error) {
		calls.Add(1)
		<-release // hold every caller inside the one flight
		return want, nil
	}
	const callers = 20
	var wg sync.WaitGroup
	var started sync.WaitGroup
	started.Add(callers)
	got := make([]*Index, callers)
	for i := range callers {
		wg.Go(func() {
			started.Done()
			idx, err := c.Get("t1/kb", 7, load)
			if err != nil {
				t.Error(err)
			}
			got[i] = idx
		})
	}
	started.Wait()
	time.Sleep(20 * time.Millisecond) // let the callers reach Get
	close(release)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("load called %d times by %d concurrent callers, want 1", n, callers)
	}
	for i, idx := range got {
		if idx != want {
			t.Errorf("caller %d got %p, want %p", i, idx, want)
		}
	}
}

func TestCacheErrorsShared(t *testing.T) {
	c := NewCache(0)
	boom := errors.New("boom")
	var calls atomic.Int32
	release := make(chan struct{})
	load := func() (*Index, error) {
		calls.Add(1)
		<-release
		return nil, boom
	}
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			if _, err := c.Get("t1/kb", 1, load); !errors.Is(err, boom) {
				t.Errorf("Get = %v, want %v", err, boom)
			}
		})
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	// Errors are not cached: the next Get loads again.
	if _, err := c.Get("t1/kb", 1, func() (*Index, error) { return filled(t, 1), nil }); err != nil {
		t.Fatal(err)
	}
	if c.Len() != 1 {
		t.Errorf("Len = %d, want 1", c.Len())
	}
}

func TestCacheNilIndex(t *testing.T) {
	c := NewCache(0)
	if _, err := c.Get("t1/kb", 1, func() (*Index, error) { return nil, nil }); err == nil {
		t.Error("Get with a load returning (nil, nil) succeeded")
	}
	if c.Len() != 0 {
		t.Errorf("Len = %d, want 0", c.Len())
	}
}

func TestCacheLoadPanics(t *testing.T) {
	c := NewCache(0)
	release := make(chan struct{})
	waiter := make(chan error)
	go func() {
		<-release
		// Should join the panicking flight; if it came too late it loads
		// itself, and fails too.
		_, err := c.Get("t1/kb", 1, func() (*Index, error) { return nil, errors.New("late") })
		waiter <- err
	}()
	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic in load was swallowed")
			}
		}()
		_, _ = c.Get("t1/kb", 1, func() (*Index, error) {
			close(release)
			time.Sleep(20 * time.Millisecond) // let the waiter join the flight
			panic("load failed")
		})
	}()
	select {
	case err := <-waiter:
		if err == nil {
			t.Error("waiter on a panicked load got no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiter on a panicked load is stuck")
	}
}

func TestCacheEvictsLRU(t *testing.T) {
	size := filled(t, 10).Bytes()
	c := NewCache(3 * size) // room for three
	get := func(key string) {
		t.Helper()
		if _, err := c.Get(key, 1, func() (*Index, error) { return filled(t, 10), nil }); err != nil {
			t.Fatal(err)
		}
	}
	cached := func(key string) bool {
		hit := true
		_, _ = c.Get(key, 1, func() (*Index, error) { hit = false; return filled(t, 10), nil })
		return hit
	}
	get("a/kb")
	get("b/kb")
	get("c/kb")
	get("a/kb") // a is now the most recently used; b the least
	get("d/kb") // evicts b
	if c.Len() != 3 || c.Bytes() > 3*size {
		t.Fatalf("Len, Bytes = %d, %d, want 3, ≤ %d", c.Len(), c.Bytes(), 3*size)
	}
	for _, tc := range []struct {
		key  string
		want bool
	}{{"a/kb", true}, {"c/kb", true}, {"d/kb", true}, {"b/kb", false}} {
		if got := cached(tc.key); got != tc.want {
			t.Errorf("%s cached = %v, want %v", tc.key, got, tc.want)
		}
		if !tc.want {
			break // checking it reloaded it
		}
	}
}

func TestCacheKeepsOversizedNewest(t *testing.T) {
	small := filled(t, 1)
	c := NewCache(small.Bytes())
	if _, err := c.Get("a/kb", 1, func() (*Index, error) { return small, nil }); err != nil {
		t.Fatal(err)
	}
	big := filled(t, 1000)
	got, err := c.Get("b/kb", 1, func() (*Index, error) { return big, nil })
	if err != nil || got != big {
		t.Fatalf("Get = %p, %v, want %p", got, err, big)
	}
	if c.Len() != 1 || c.Bytes() != big.Bytes() {
		t.Errorf("Len, Bytes = %d, %d, want 1, %d (only the newest, over the bound)", c.Len(), c.Bytes(), big.Bytes())
	}
	got, _ = c.Get("b/kb", 1, func() (*Index, error) { t.Error("reloaded"); return big, nil })
	if got != big {
		t.Error("oversized index was not kept")
	}
}

func TestCacheInvalidate(t *testing.T) {
	c := NewCache(0)
	l := &loader{t: t, n: 2}
	for range 2 {
		if _, err := c.Get("t1/kb", 1, l.load); err != nil {
			t.Fatal(err)
		}
	}
	c.Invalidate("t1/kb")
	c.Invalidate("t2/kb") // absent: no-op
	if c.Len() != 0 || c.Bytes() != 0 {
		t.Errorf("Len, Bytes = %d, %d after Invalidate, want 0, 0", c.Len(), c.Bytes())
	}
	if _, err := c.Get("t1/kb", 1, l.load); err != nil {
		t.Fatal(err)
	}
	if got := l.calls.Load(); got != 2 {
		t.Errorf("load called %d times, want 2 (once more after Invalidate)", got)
	}
}

// TestCacheInvalidateDuringLoad checks that a load in flight when Invalidate
// runs answers its caller but is not cached.
func TestCacheInvalidateDuringLoad(t *testing.T) {
	c := NewCache(0)
	inLoad, release := make(chan struct{}), make(chan struct{})
	stale := filled(t, 1)
	done := make(chan *Index)
	go func() {
		idx, err := c.Get("t1/kb", 1, func() (*Index, error) {
			close(inLoad)
			<-release
			return stale, nil
		})
		if err != nil {
			t.Error(err)
		}
		done <- idx
	}()
	<-inLoad
	c.Invalidate("t1/kb")
	close(release)
	if got := <-done; got != stale {
		t.Errorf("caller got %p, want %p", got, stale)
	}
	fresh := filled(t, 2)
	got, _ := c.Get("t1/kb", 1, func() (*Index, error) { return fresh, nil })
	if got != fresh {
		t.Error("index loaded before Invalidate was cached")
	}
}

// TestCacheFresherLoadWins checks that a load that started earlier but
// finished later does not replace the one that started later.
func TestCacheFresherLoadWins(t *testing.T) {
	c := NewCache(0)
	inLoad, release := make(chan struct{}), make(chan struct{})
	old, fresh := filled(t, 1), filled(t, 2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = c.Get("t1/kb", 1, func() (*Index, error) {
			close(inLoad)
			<-release
			return old, nil
		})
	}()
	<-inLoad
	if _, err := c.Get("t1/kb", 2, func() (*Index, error) { return fresh, nil }); err != nil {
		t.Fatal(err)
	}
	close(release)
	<-done
	got, _ := c.Get("t1/kb", 2, func() (*Index, error) { t.Error("reloaded"); return fresh, nil })
	if got != fresh {
		t.Error("a slower, older load replaced the fresher index")
	}
}

func TestCacheConcurrent(t *testing.T) {
	x := filled(t, 10)
	c := NewCache(4 * x.Bytes())
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 300 {
				key := fmt.Sprintf("t%d/kb", (g+i)%7)
				idx, err := c.Get(key, int64(i%3), func() (*Index, error) { return filled(t, 10), nil })
				if err != nil || idx.Len() != 10 {
					t.Errorf("Get(%s) = %v, %v", key, idx, err)
					return
				}
				if len(idx.Search([]float32{1, 1, 1, 1}, 3)) != 3 {
					t.Error("short search result")
				}
				if i%50 == 0 {
					c.Invalidate(key)
				}
			}
		})
	}
	wg.Wait()
	if c.Bytes() > 4*x.Bytes() {
		t.Errorf("Bytes = %d, over the bound %d", c.Bytes(), 4*x.Bytes())
	}
}

// TestInvalidateTenant drops every index of one incarnation and keeps those
// of the tenant's next life and of other tenants.
func TestInvalidateTenant(t *testing.T) {
	c := NewCache(1 << 20)
	oldInc, newInc, other := tenant.NewIncarnation("acme", "0a"), tenant.NewIncarnation("acme", "0b"), tenant.NewIncarnation("globex", "0c")
	keys := []string{Key(oldInc, "kb", "m1"), Key(oldInc, "kb", "m2"), Key(newInc, "kb", "m1"), Key(other, "kb", "m1")}
	if len(slices.Compact(slices.Sorted(slices.Values(keys)))) != len(keys) {
		t.Fatalf("keys collide: %q", keys)
	}
	for _, k := range keys {
		if _, err := c.Get(k, 1, func() (*Index, error) { return New(2), nil }); err != nil {
			t.Fatal(err)
		}
	}
	c.InvalidateTenant(oldInc)
	if got := c.Len(); got != 2 {
		t.Fatalf("indexes after InvalidateTenant: got %d, want 2", got)
	}
	loaded := false
	if _, err := c.Get(keys[2], 1, func() (*Index, error) { loaded = true; return New(2), nil }); err != nil || loaded {
		t.Errorf("the new incarnation's index was dropped (reloaded %v, %v)", loaded, err)
	}
}
