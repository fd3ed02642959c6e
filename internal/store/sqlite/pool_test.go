package sqlite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeDB stands for an open database. Closing it while someone uses it, or
// twice, is recorded as an error by its opener.
type fakeDB struct {
	id     string
	o      *opener
	users  atomic.Int32
	closed atomic.Bool
}

func (f *fakeDB) Close() error {
	if f.users.Load() != 0 {
		f.o.fail(fmt.Errorf("%s closed while in use", f.id))
	}
	if f.closed.Swap(true) {
		f.o.fail(fmt.Errorf("%s closed twice", f.id))
	}
	f.o.open.Add(-1)
	return nil
}

// opener opens fakeDBs and counts them. hook, if set, runs at the start of
// every open and may fail it.
type opener struct {
	hook func(ctx context.Context, id string) error

	open    atomic.Int32 // fakeDBs open now
	maxOpen atomic.Int32 // most fakeDBs open at once

	mu    sync.Mutex
	opens map[string]int
	errs  []error
}

func (o *opener) openDB(ctx context.Context, id string) (*fakeDB, error) {
	if o.hook != nil {
		if err := o.hook(ctx, id); err != nil {
			return nil, err
		}
	}
	o.mu.Lock()
	if o.opens == nil {
		o.opens = make(map[string]int)
	}
	o.opens[id]++
	o.mu.Unlock()
	n := o.open.Add(1)
	for {
		m := o.maxOpen.Load()
		if n <= m || o.maxOpen.CompareAndSwap(m, n) {
			break
		}
	}
	return &fakeDB{id: id, o: o}, nil
}

func (o *opener) opensOf(id string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.opens[id]
}

func (o *opener) fail(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.errs = append(o.errs, err)
}

// check reports the misuses the fakeDBs saw.
func (o *opener) check(t *testing.T) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, err := range o.errs {
		t.Error(err)
	}
}

func newTestPool(t *testing.T, max int, o *opener) *pool[*fakeDB] {
	t.Helper()
	p := newPool(max, o.openDB, slog.New(slog.DiscardHandler))
	t.Cleanup(func() {
		if err := p.close(); err != nil {
			t.Errorf("close: %v", err)
		}
		o.check(t)
	})
	return p
}

// use acquires id, marks its database in use and returns the release func. It
// must run on the test's goroutine.
func use(t *testing.T, ctx context.Context, p *pool[*fakeDB], id string) (*fakeDB, func()) {
	t.Helper()
	h, err := p.acquire(ctx, id)
	if err != nil {
		t.Fatalf("acquire(%s): %v", id, err)
	}
	if h.v.closed.Load() {
		t.Errorf("acquire(%s) returned a closed database", id)
	}
	h.v.users.Add(1)
	return h.v, func() {
		h.v.users.Add(-1)
		p.release(h)
	}
}

func TestPoolBoundsOpenDatabases(t *testing.T) {
	const max, ids, workers, rounds = 4, 50, 50, 20
	o := &opener{}
	p := newTestPool(t, max, o)
	ctx := t.Context()

	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				id := fmt.Sprint("t", (w*7+r*3)%ids)
				h, err := p.acquire(ctx, id)
				if err != nil {
					errs <- err
					return
				}
				h.v.users.Add(1)
				if n := p.opened(); n > max {
					p.release(h)
					errs <- fmt.Errorf("opened() = %d, want <= %d", n, max)
					return // one report per worker, so errs never fills
				}
				time.Sleep(10 * time.Microsecond)
				h.v.users.Add(-1)
				p.release(h)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := o.maxOpen.Load(); got > max {
		t.Errorf("most databases open at once: got %d, want <= %d", got, max)
	}
	if got := p.opened(); got > max {
		t.Errorf("opened() after the run: got %d, want <= %d", got, max)
	}
	if got, want := int(o.open.Load()), p.opened(); got != want {
		t.Errorf("databases open: got %d, opened() says %d", got, want)
	}
}

func TestPoolOpensOnce(t *testing.T) {
	o := &opener{hook: func(context.Context, string) error {
		time.Sleep(20 * time.Millisecond)
		return nil
	}}
	p := newTestPool(t, 4, o)

	var wg sync.WaitGroup
	got := make([]*fakeDB, 20)
	for i := range got {
		wg.Go(func() {
			h, err := p.acquire(t.Context(), "a")
			if err != nil {
				t.Errorf("acquire(a): %v", err)
				return
			}
			got[i] = h.v
			p.release(h)
		})
	}
	wg.Wait()
	if n := o.opensOf("a"); n != 1 {
		t.Errorf("opens of a: got %d, want 1", n)
	}
	for i, db := range got {
		if db != got[0] {
			t.Errorf("acquirer %d got another database than acquirer 0", i)
		}
	}
}

func TestPoolOpenDoesNotBlockOthers(t *testing.T) {
	entered, unblock := make(chan struct{}), make(chan struct{})
	o := &opener{hook: func(_ context.Context, id string) error {
		if id == "slow" {
			close(entered)
			<-unblock
		}
		return nil
	}}
	p := newTestPool(t, 4, o)

	slowDone := make(chan struct{})
	go func() {
		defer close(slowDone)
		h, err := p.acquire(t.Context(), "slow")
		if err != nil {
			t.Errorf("acquire(slow): %v", err)
			return
		}
		p.release(h)
	}()
	<-entered
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, release := use(t, ctx, p, "fast")
	release()
	close(unblock)
	<-slowDone
}

func TestPoolEvictsLeastRecentlyUsed(t *testing.T) {
	o := &opener{}
	p := newTestPool(t, 2, o)
	ctx := t.Context()

	a, release := use(t, ctx, p, "a")
	release()
	b, release := use(t, ctx, p, "b")
	release()
	_, release = use(t, ctx, p, "a")
	release()
	_, release = use(t, ctx, p, "c")
	release()

	if a.closed.Load() {
		t.Error("a, used more recently than b, was closed")
	}
	if !b.closed.Load() {
		t.Error("b, the least recently used, is still open")
	}
	if got := p.opened(); got != 2 {
		t.Errorf("opened(): got %d, want 2", got)
	}
}

func TestPoolWaitsForInUse(t *testing.T) {
	o := &opener{}
	p := newTestPool(t, 1, o)

	a, release := use(t, t.Context(), p, "a")
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := p.acquire(ctx, "b"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("acquire(b) while a holds the only slot: got %v, want %v", err, context.DeadlineExceeded)
	}
	if a.closed.Load() {
		t.Fatal("a was closed while in use")
	}

	got := make(chan error, 1)
	go func() {
		h, err := p.acquire(t.Context(), "b")
		if err == nil {
			p.release(h)
		}
		got <- err
	}()
	time.Sleep(20 * time.Millisecond)
	release()
	if err := <-got; err != nil {
		t.Fatalf("acquire(b) after a was released: %v", err)
	}
	if !a.closed.Load() {
		t.Error("a is still open after b took its slot")
	}
}

func TestPoolFailedOpen(t *testing.T) {
	errBoom := errors.New("boom")
	var calls atomic.Int32
	o := &opener{hook: func(context.Context, string) error {
		if calls.Add(1) == 1 {
			return errBoom
		}
		return nil
	}}
	p := newTestPool(t, 1, o)

	if _, err := p.acquire(t.Context(), "a"); !errors.Is(err, errBoom) {
		t.Fatalf("first acquire: got %v, want %v", err, errBoom)
	}
	if got := p.opened(); got != 0 {
		t.Errorf("opened() after a failed open: got %d, want 0", got)
	}
	_, release := use(t, t.Context(), p, "a")
	release()
}

func TestPoolRetriesAfterOpenerGaveUp(t *testing.T) {
	entered := make(chan struct{})
	var calls atomic.Int32
	o := &opener{hook: func(ctx context.Context, _ string) error {
		if calls.Add(1) == 1 {
			close(entered)
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}}
	p := newTestPool(t, 4, o)

	ctx, cancel := context.WithCancel(t.Context())
	first := make(chan error, 1)
	go func() {
		_, err := p.acquire(ctx, "a")
		first <- err
	}()
	<-entered
	second := make(chan error, 1)
	go func() {
		h, err := p.acquire(t.Context(), "a")
		if err == nil {
			p.release(h)
		}
		second <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the second acquirer wait on the first open
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("first acquire: got %v, want %v", err, context.Canceled)
	}
	if err := <-second; err != nil {
		t.Errorf("second acquire: got %v, want success", err)
	}
}

func TestPoolDropWaitsForUsers(t *testing.T) {
	o := &opener{}
	p := newTestPool(t, 4, o)
	ctx := t.Context()

	old, release := use(t, ctx, p, "a")
	var removed atomic.Int32
	dropped := make(chan error, 1)
	go func() {
		dropped <- p.drop(ctx, "a", func() error {
			if !old.closed.Load() {
				t.Error("remove ran before the database was closed")
			}
			removed.Add(1)
			return nil
		})
	}()
	reopened := make(chan *fakeDB, 1)
	go func() {
		time.Sleep(10 * time.Millisecond) // after drop took a out of the pool
		h, err := p.acquire(ctx, "a")
		if err != nil {
			t.Errorf("acquire(a) during drop: %v", err)
			reopened <- nil
			return
		}
		p.release(h)
		reopened <- h.v
	}()

	time.Sleep(50 * time.Millisecond)
	if removed.Load() != 0 {
		t.Fatal("drop removed a while it was in use")
	}
	if old.closed.Load() {
		t.Fatal("drop closed a while it was in use")
	}
	release()
	if err := <-dropped; err != nil {
		t.Fatalf("drop: %v", err)
	}
	if got := removed.Load(); got != 1 {
		t.Errorf("remove calls: got %d, want 1", got)
	}
	if db := <-reopened; db == old {
		t.Error("acquire during drop got the dropped database")
	}
	if got := o.opensOf("a"); got != 2 {
		t.Errorf("opens of a: got %d, want 2", got)
	}
}

func TestPoolClose(t *testing.T) {
	o := &opener{}
	p := newPool(4, o.openDB, slog.New(slog.DiscardHandler))
	ctx := t.Context()

	a, release := use(t, ctx, p, "a")
	b, releaseB := use(t, ctx, p, "b")
	releaseB()
	closed := make(chan error, 1)
	go func() { closed <- p.close() }()

	time.Sleep(20 * time.Millisecond)
	if a.closed.Load() {
		t.Fatal("close closed a while it was in use")
	}
	release()
	if err := <-closed; err != nil {
		t.Fatalf("close: %v", err)
	}
	if !a.closed.Load() || !b.closed.Load() {
		t.Errorf("after close: a closed %v, b closed %v; want both", a.closed.Load(), b.closed.Load())
	}
	if _, err := p.acquire(ctx, "a"); !errors.Is(err, errClosed) {
		t.Errorf("acquire after close: got %v, want %v", err, errClosed)
	}
	if err := p.drop(ctx, "a", func() error { return nil }); !errors.Is(err, errClosed) {
		t.Errorf("drop after close: got %v, want %v", err, errClosed)
	}
	o.check(t)
}

func TestMaxOpenFor(t *testing.T) {
	tests := []struct {
		nofile uint64
		want   int
	}{
		{0, minMaxOpen},
		{128, minMaxOpen},     // 96 descriptors: 10 databases, raised to the minimum
		{256, 21},             // 192 / 9
		{1024, 85},            // 768 / 9
		{20_000, 1666},        // 15,000 / 9
		{1 << 20, maxMaxOpen}, // 786,432 / 9 = 87,381, capped
		{1<<63 - 1, maxMaxOpen},
	}
	for _, tt := range tests {
		if got := maxOpenFor(tt.nofile); got != tt.want {
			t.Errorf("maxOpenFor(%d) = %d, want %d", tt.nofile, got, tt.want)
		}
	}
	if got := defaultMaxOpen(); got < minMaxOpen || got > maxMaxOpen {
		t.Errorf("defaultMaxOpen() = %d, outside [%d, %d]", got, minMaxOpen, maxMaxOpen)
	}
}
