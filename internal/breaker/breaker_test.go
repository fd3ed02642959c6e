package breaker

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

var errDown = errors.New("connection refused")

// step is one call (or, with wait set, only the passing of time).
type step struct {
	wait       time.Duration
	err        error // the call's outcome
	wantCalled bool  // whether Do may call fn
	wantState  State // after the step
}

func TestStateMachine(t *testing.T) {
	ok := func(called bool, s State) step { return step{wantCalled: called, wantState: s} }
	fail := func(called bool, s State) step { return step{err: errDown, wantCalled: called, wantState: s} }
	wait := func(d time.Duration, s State) step { return step{wait: d, wantState: s} }
	// Failures 3, Cooldown 1s.
	tests := []struct {
		name  string
		steps []step
	}{
		{"successes keep it closed", []step{ok(true, Closed), ok(true, Closed), ok(true, Closed)}},
		{"fewer failures than the threshold keep it closed", []step{
			fail(true, Closed), fail(true, Closed), ok(true, Closed)}},
		{"a success resets the count", []step{
			fail(true, Closed), fail(true, Closed), ok(true, Closed), fail(true, Closed), fail(true, Closed), fail(true, Open)}},
		{"consecutive failures open it and calls are refused", []step{
			fail(true, Closed), fail(true, Closed), fail(true, Open), ok(false, Open), fail(false, Open)}},
		{"before the cooldown it stays open", []step{
			fail(true, Closed), fail(true, Closed), fail(true, Open), wait(999*time.Millisecond, Open), ok(false, Open)}},
		{"a successful probe closes it", []step{
			fail(true, Closed), fail(true, Closed), fail(true, Open), wait(time.Second, Open), ok(true, Closed), ok(true, Closed)}},
		{"a failed probe opens it for another cooldown", []step{
			fail(true, Closed), fail(true, Closed), fail(true, Open), wait(time.Second, Open), fail(true, Open),
			ok(false, Open), wait(time.Second, Open), ok(true, Closed)}},
		{"after recovery it takes the threshold again to open", []step{
			fail(true, Closed), fail(true, Closed), fail(true, Open), wait(time.Second, Open), ok(true, Closed),
			fail(true, Closed), fail(true, Closed), fail(true, Open)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Unix(1000, 0)
			b := New(Options{Failures: 3, Cooldown: time.Second, Now: func() time.Time { return now }})
			for i, s := range tt.steps {
				if s.wait > 0 {
					now = now.Add(s.wait)
				} else {
					called := false
					err := b.Do(t.Context(), func(context.Context) error { called = true; return s.err })
					if called != s.wantCalled {
						t.Fatalf("step %d: called = %v, want %v", i, called, s.wantCalled)
					}
					if !called && !errors.Is(err, ErrOpen) {
						t.Fatalf("step %d: refused call returned %v, want ErrOpen", i, err)
					}
					if called && err != s.err {
						t.Fatalf("step %d: Do returned %v, want fn's %v", i, err, s.err)
					}
				}
				if got := b.State(); got != s.wantState {
					t.Fatalf("step %d: state %v, want %v", i, got, s.wantState)
				}
			}
		})
	}
}

// TestHalfOpenLetsOneProbeThrough holds the probe in flight: every other
// call meanwhile is refused, and the probe's success closes the circuit.
func TestHalfOpenLetsOneProbeThrough(t *testing.T) {
	now := time.Unix(1000, 0)
	b := New(Options{Failures: 1, Cooldown: time.Second, Now: func() time.Time { return now }})
	_ = b.Do(t.Context(), func(context.Context) error { return errDown })
	now = now.Add(time.Second)
	inProbe, finish, done := make(chan struct{}), make(chan struct{}), make(chan error)
	go func() {
		done <- b.Do(context.Background(), func(context.Context) error { close(inProbe); <-finish; return nil })
	}()
	<-inProbe
	if got := b.State(); got != HalfOpen {
		t.Errorf("during the probe: state %v, want half-open", got)
	}
	if err := b.Do(t.Context(), func(context.Context) error { t.Error("second call during the probe was let through"); return nil }); !errors.Is(err, ErrOpen) {
		t.Errorf("second call during the probe: %v, want ErrOpen", err)
	}
	close(finish)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := b.State(); got != Closed {
		t.Errorf("after the probe: state %v, want closed", got)
	}
}

// TestStaleOutcomeIgnored: a call let through while closed that fails after
// the circuit has opened and closed again must not count against the new
// closed period.
func TestStaleOutcomeIgnored(t *testing.T) {
	now := time.Unix(1000, 0)
	b := New(Options{Failures: 1, Cooldown: time.Second, Now: func() time.Time { return now }})
	inSlow, finish, done := make(chan struct{}), make(chan struct{}), make(chan error)
	go func() {
		done <- b.Do(context.Background(), func(context.Context) error { close(inSlow); <-finish; return errDown })
	}()
	<-inSlow
	_ = b.Do(t.Context(), func(context.Context) error { return errDown }) // opens
	now = now.Add(time.Second)
	_ = b.Do(t.Context(), func(context.Context) error { return nil }) // probe closes
	close(finish)
	<-done
	if got := b.State(); got != Closed {
		t.Errorf("after a stale failure: state %v, want closed", got)
	}
}

// TestCallerGaveUp: a caller whose own context ends does not count as a
// failure of the service, and an abandoned probe frees its place.
func TestCallerGaveUp(t *testing.T) {
	now := time.Unix(1000, 0)
	b := New(Options{Failures: 1, Cooldown: time.Second, Now: func() time.Time { return now }})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_ = b.Do(ctx, func(ctx context.Context) error { return ctx.Err() })
	if got := b.State(); got != Closed {
		t.Fatalf("after a cancelled caller: state %v, want closed", got)
	}
	_ = b.Do(t.Context(), func(context.Context) error { return errDown })
	now = now.Add(time.Second)
	_ = b.Do(ctx, func(ctx context.Context) error { return ctx.Err() }) // abandoned probe
	called := false
	_ = b.Do(t.Context(), func(context.Context) error { called = true; return nil })
	if !called || b.State() != Closed {
		t.Errorf("after an abandoned probe: next call let through %v, state %v; want true, closed", called, b.State())
	}
}

func TestDoSetsDeadline(t *testing.T) {
	b := New(Options{Timeout: 20 * time.Millisecond})
	err := b.Do(t.Context(), func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("fn's context has no deadline")
		}
		<-ctx.Done()
		return ctx.Err()
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Do = %v, want the deadline's error", err)
	}
}

// TestTransitionsLoggedOnce: an outage of many calls and failed probes logs
// one warning when it starts and one line when it ends.
func TestTransitionsLoggedOnce(t *testing.T) {
	now := time.Unix(1000, 0)
	var buf bytes.Buffer
	b := New(Options{Name: "test redis", Failures: 2, Cooldown: time.Second, Now: func() time.Time { return now },
		Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	for range 10 {
		_ = b.Do(t.Context(), func(context.Context) error { return errDown })
	}
	for range 3 {
		now = now.Add(time.Second)
		_ = b.Do(t.Context(), func(context.Context) error { return errDown })
	}
	now = now.Add(time.Second)
	_ = b.Do(t.Context(), func(context.Context) error { return nil })
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "breaker open") || !strings.Contains(lines[1], "breaker closed") {
		t.Errorf("log lines:\n%s\nwant one 'open' then one 'closed'", buf.String())
	}
	for _, l := range lines {
		if !strings.Contains(l, `breaker="test redis"`) {
			t.Errorf("log line does not name the breaker: %s", l)
		}
	}
}
