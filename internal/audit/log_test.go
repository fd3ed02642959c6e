package audit_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/audit"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// call is one AppendAudit call a fakeStore received.
type call struct {
	scope auth.Scope
	recs  []store.AuditRecord
}

// fakeStore records AppendAudit calls; fail, when set, can fail one.
type fakeStore struct {
	mu    sync.Mutex
	calls []call
	fail  func(c call) error
}

func (s *fakeStore) AppendAudit(_ context.Context, scope auth.Scope, recs []store.AuditRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := call{scope: scope, recs: append([]store.AuditRecord(nil), recs...)}
	if s.fail != nil {
		if err := s.fail(c); err != nil {
			return err
		}
	}
	s.calls = append(s.calls, c)
	return nil
}

func (s *fakeStore) snapshot() []call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]call(nil), s.calls...)
}

// stored returns the events stored for tenant id, in order.
func (s *fakeStore) stored(id tenant.ID) []store.AuditRecord {
	var recs []store.AuditRecord
	for _, c := range s.snapshot() {
		if c.scope.Tenant() == id {
			recs = append(recs, c.recs...)
		}
	}
	return recs
}

// numbers returns the "n" of each record's data.
func numbers(t *testing.T, recs []store.AuditRecord) []int {
	t.Helper()
	var ns []int
	for _, r := range recs {
		var d struct{ N int }
		if err := json.Unmarshal(r.Data, &d); err != nil {
			t.Fatalf("data %s: %v", r.Data, err)
		}
		ns = append(ns, d.N)
	}
	return ns
}

func checkNumbers(t *testing.T, what string, recs []store.AuditRecord, from, to int) {
	t.Helper()
	ns := numbers(t, recs)
	if len(ns) != to-from {
		t.Fatalf("%s: got %d events, want %d", what, len(ns), to-from)
	}
	for i, n := range ns {
		if n != from+i {
			t.Fatalf("%s: event %d is n=%d, want %d", what, i, n, from+i)
		}
	}
}

func event(n int) audit.Event {
	return audit.Event{Type: "tool.call", Data: map[string]any{"tool": "search", "n": n}}
}

func mustRecord(t *testing.T, l *audit.Log, scope auth.Scope, e audit.Event) {
	t.Helper()
	if err := l.Record(scope, e); err != nil {
		t.Fatalf("Record: %v", err)
	}
}

// run starts l.Run and returns a function that stops it and returns its
// error.
func run(t *testing.T, l *audit.Log) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				err = errors.New("Run did not return")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func TestLogBatches(t *testing.T) {
	s := &fakeStore{}
	l := audit.NewLog(s, audit.Options{FlushInterval: time.Hour, MaxBatch: 512})
	stop := run(t, l)
	scope := authtest.Scope(t, "acme", "alice")
	for i := range 1000 {
		mustRecord(t, l, scope, event(i))
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	calls := s.snapshot()
	// One call when 512 are pending (taking what is pending by then, up to
	// 512 per call), and the rest when Run stops.
	if len(calls) < 2 || len(calls) > 3 {
		t.Errorf("got %d AppendAudit calls for 1000 events, want 2 or 3", len(calls))
	}
	for i, c := range calls {
		if len(c.recs) > 512 {
			t.Errorf("call %d: got %d events, want at most MaxBatch (512)", i, len(c.recs))
		}
	}
	checkNumbers(t, "stored", s.stored("acme"), 0, 1000)
	if n := l.Pending(); n != 0 {
		t.Errorf("Pending after Run: got %d, want 0", n)
	}
}

func TestLogFlushInterval(t *testing.T) {
	s := &fakeStore{}
	l := audit.NewLog(s, audit.Options{FlushInterval: 5 * time.Millisecond})
	run(t, l)
	scope := authtest.Scope(t, "acme", "alice")
	for i := range 5 {
		mustRecord(t, l, scope, event(i))
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(s.stored("acme")) < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("after 5s: %d of 5 events stored", len(s.stored("acme")))
		}
		time.Sleep(time.Millisecond)
	}
	if calls := s.snapshot(); len(calls) != 1 {
		t.Errorf("got %d AppendAudit calls for 5 events, want 1", len(calls))
	}
}

func TestLogRunFlushesOnCancel(t *testing.T) {
	s := &fakeStore{}
	l := audit.NewLog(s, audit.Options{FlushInterval: time.Hour})
	stop := run(t, l)
	scope := authtest.Scope(t, "acme", "alice")
	for i := range 10 {
		mustRecord(t, l, scope, event(i))
	}
	if got := len(s.snapshot()); got != 0 {
		t.Fatalf("before cancel: got %d AppendAudit calls, want 0", got)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkNumbers(t, "stored", s.stored("acme"), 0, 10)
	if err := l.Record(scope, event(10)); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Record after Run: got %v, want %v", err, audit.ErrClosed)
	}
	if err := l.Run(t.Context()); err == nil {
		t.Error("second Run: got nil error")
	}
}

func TestLogTenantsAreSeparate(t *testing.T) {
	s := &fakeStore{}
	l := audit.NewLog(s, audit.Options{FlushInterval: time.Millisecond, MaxBatch: 7})
	stop := run(t, l)
	ids := []tenant.ID{"acme", "globex", "initech"}
	const perTenant = 300
	var wg sync.WaitGroup
	for _, id := range ids {
		scope := authtest.Scope(t, id, "user-of-"+tenant.UserID(id))
		wg.Go(func() {
			for i := range perTenant {
				e := event(i)
				e.Data["tenant"] = string(id)
				if err := l.Record(scope, e); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for i, c := range s.snapshot() {
		if c.scope.User() != "" {
			t.Errorf("call %d: stored under end user %q, want the tenant's scope", i, c.scope.User())
		}
		for _, r := range c.recs {
			var d struct{ Tenant tenant.ID }
			if err := json.Unmarshal(r.Data, &d); err != nil {
				t.Fatal(err)
			}
			if d.Tenant != c.scope.Tenant() {
				t.Fatalf("call %d for %s holds an event of %s", i, c.scope.Tenant(), d.Tenant)
			}
		}
	}
	for _, id := range ids {
		checkNumbers(t, string(id), s.stored(id), 0, perTenant)
	}
}

func TestLogTime(t *testing.T) {
	s := &fakeStore{}
	now := time.Date(2025, 6, 7, 8, 9, 10, 11, time.FixedZone("X", 3600))
	l := audit.NewLog(s, audit.Options{Now: func() time.Time { return now }})
	scope := authtest.Scope(t, "acme", "alice")
	mustRecord(t, l, scope, event(0))
	recorded := now
	now = now.Add(time.Hour)
	if err := l.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := s.stored("acme")
	if len(got) != 1 || !got[0].Time.Equal(recorded) || got[0].Time.Location() != time.UTC {
		t.Fatalf("got %+v, want one event at %v, in UTC", got, recorded)
	}
}

func TestLogFull(t *testing.T) {
	s := &fakeStore{}
	l := audit.NewLog(s, audit.Options{MaxPending: 10})
	acme := authtest.Scope(t, "acme", "alice")
	globex := authtest.Scope(t, "globex", "alice")
	for i := range 10 {
		scope := acme
		if i%2 == 1 {
			scope = globex
		}
		mustRecord(t, l, scope, event(i))
	}
	if err := l.Record(acme, event(10)); !errors.Is(err, audit.ErrFull) || !errors.Is(err, kind.Unavailable) {
		t.Fatalf("Record past MaxPending: got %v, want %v", err, audit.ErrFull)
	}
	if err := l.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	mustRecord(t, l, acme, event(10))
	if n := l.Pending(); n != 1 {
		t.Errorf("Pending: got %d, want 1", n)
	}
}

func TestLogRetriesAfterStoreError(t *testing.T) {
	down := errors.New("disk unavailable")
	failing := true
	s := &fakeStore{fail: func(call) error {
		if failing {
			return down
		}
		return nil
	}}
	l := audit.NewLog(s, audit.Options{MaxBatch: 4})
	scope := authtest.Scope(t, "acme", "alice")
	for i := range 10 {
		mustRecord(t, l, scope, event(i))
	}
	if err := l.Flush(t.Context()); !errors.Is(err, down) {
		t.Fatalf("Flush while the store fails: got %v, want %v", err, down)
	}
	if n := l.Pending(); n != 10 {
		t.Fatalf("Pending after a failed flush: got %d, want 10", n)
	}
	// Events recorded meanwhile queue behind the ones that failed.
	for i := 10; i < 15; i++ {
		mustRecord(t, l, scope, event(i))
	}
	s.mu.Lock()
	failing = false
	s.mu.Unlock()
	if err := l.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkNumbers(t, "stored", s.stored("acme"), 0, 15)
	if n := l.Pending(); n != 0 {
		t.Errorf("Pending: got %d, want 0", n)
	}
}

func TestLogDropsForUnknownTenant(t *testing.T) {
	s := &fakeStore{fail: func(c call) error {
		if c.scope.Tenant() == "gone" {
			return fmt.Errorf("locate: %w", store.ErrUnknownTenant)
		}
		return nil
	}}
	l := audit.NewLog(s, audit.Options{})
	mustRecord(t, l, authtest.Scope(t, "gone", ""), event(0))
	mustRecord(t, l, authtest.Scope(t, "acme", ""), event(0))
	if err := l.Flush(t.Context()); !errors.Is(err, store.ErrUnknownTenant) {
		t.Fatalf("Flush: got %v, want %v", err, store.ErrUnknownTenant)
	}
	if n := l.Pending(); n != 0 {
		t.Errorf("Pending: got %d, want 0: an unknown tenant's events cannot be stored", n)
	}
	checkNumbers(t, "acme", s.stored("acme"), 0, 1)
}

func TestLogRecordRefuses(t *testing.T) {
	l := audit.NewLog(&fakeStore{}, audit.Options{})
	scope := authtest.Scope(t, "acme", "alice")
	var zero auth.Scope
	tests := []struct {
		name  string
		scope auth.Scope
		e     audit.Event
		want  error
	}{
		{"zero scope", zero, event(0), store.ErrNoScope},
		{"empty type", scope, audit.Event{}, kind.Invalid},
		{"bad type", scope, audit.Event{Type: "tool call"}, kind.Invalid},
		{"data not JSON", scope, audit.Event{Type: "x", Data: map[string]any{"c": make(chan int)}}, kind.Invalid},
		{"data too large", scope, audit.Event{Type: "x", Data: map[string]any{"s": string(make([]byte, audit.MaxData))}}, kind.TooLarge},
	}
	for _, tt := range tests {
		if err := l.Record(tt.scope, tt.e); !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
	if n := l.Pending(); n != 0 {
		t.Errorf("Pending: got %d, want 0", n)
	}
}

// TestRecordNow: RecordNow returns only once its event is stored, after the
// tenant's events queued before it; when the store fails it returns the
// error and leaves nothing of the event behind to be stored later.
func TestRecordNow(t *testing.T) {
	fs := &fakeStore{}
	l := audit.NewLog(fs, audit.Options{FlushInterval: time.Hour})
	acme := authtest.Scope(t, "acme", "alice")
	for i := range 3 {
		if err := l.Record(acme, audit.Event{Type: "tool.call", Data: map[string]any{"n": i}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.RecordNow(context.Background(), acme, audit.Event{Type: "secret.set", Data: map[string]any{"n": 3}}); err != nil {
		t.Fatalf("RecordNow: %v", err)
	}
	checkNumbers(t, "after RecordNow", fs.stored("acme"), 0, 4)
	if got := l.Pending(); got != 0 {
		t.Fatalf("pending after RecordNow: %d, want 0", got)
	}

	fs.fail = func(call) error { return errors.New("disk I/O error") }
	if err := l.RecordNow(context.Background(), acme, audit.Event{Type: "secret.set", Data: map[string]any{"n": 4}}); err == nil {
		t.Fatal("RecordNow with a failing store = nil, want an error")
	}
	fs.fail = nil
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkNumbers(t, "after a failed RecordNow", fs.stored("acme"), 0, 4)
}
