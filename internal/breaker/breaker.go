// Package breaker guards calls to a shared service (Redis) with a short
// deadline and a circuit breaker, so that a slow or dead service costs a
// request at most one deadline, and while it stays unhealthy, nothing: the
// caller takes its fallback at once.
//
// The circuit is closed while calls succeed. After Failures consecutive
// failures (errors or timeouts) it opens: Do refuses with ErrOpen without
// calling anything. After Cooldown one call is let through as a probe
// (half-open); if it succeeds the circuit closes, otherwise it opens for
// another Cooldown. Transitions are logged, a change of health once, not
// once per call.
package breaker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Defaults of the zero Options.
const (
	DefaultTimeout  = 100 * time.Millisecond
	DefaultFailures = 5
	DefaultCooldown = time.Second
)

// ErrOpen is returned by Do, without calling its function, while the circuit
// is open (or half-open with its probe in flight).
var ErrOpen = errors.New("circuit open")

// State is the state of a circuit.
type State int

// The states of a circuit.
const (
	Closed   State = iota // calls go through
	Open                  // calls are refused until the cooldown ends
	HalfOpen              // one probe call is in flight, others are refused
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return "invalid"
}

// Options configures a Breaker; zero fields take the defaults.
type Options struct {
	// Name says what is guarded, in log lines ("redis rate limits").
	Name string
	// Timeout is the deadline of each call.
	Timeout time.Duration
	// Failures is how many consecutive failures open the circuit.
	Failures int
	// Cooldown is how long the circuit stays open before a probe.
	Cooldown time.Duration
	// Logger receives the transitions; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now. Tests inject one.
	Now func() time.Time
}

// Breaker is a circuit breaker with a per-call deadline. It is safe for
// concurrent use; make one with New.
type Breaker struct {
	name     string
	timeout  time.Duration
	failures int
	cooldown time.Duration
	log      *slog.Logger
	now      func() time.Time

	mu       sync.Mutex
	state    State
	fails    int       // consecutive failures while closed
	openedAt time.Time // when the circuit last opened
	downAt   time.Time // when it left Closed, for the recovery log line
	probing  bool      // half-open: the probe is in flight
	// gen changes on every transition: the outcome of a call let through in
	// an earlier state is stale and ignored.
	gen uint64
}

// New returns a closed Breaker.
func New(o Options) *Breaker {
	b := &Breaker{name: o.Name, timeout: o.Timeout, failures: o.Failures, cooldown: o.Cooldown, log: o.Logger, now: o.Now}
	if b.timeout <= 0 {
		b.timeout = DefaultTimeout
	}
	if b.failures <= 0 {
		b.failures = DefaultFailures
	}
	if b.cooldown <= 0 {
		b.cooldown = DefaultCooldown
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.now == nil {
		b.now = time.Now
	}
	return b
}

// Do calls fn with ctx bounded by the breaker's timeout, unless the circuit
// is open, in which case it returns ErrOpen at once. fn's error counts as a
// failure of the service, unless ctx itself ended first: a caller that gave
// up says nothing about the service's health.
func (b *Breaker) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	gen, ok := b.allow()
	if !ok {
		return ErrOpen
	}
	callCtx, cancel := context.WithTimeout(ctx, b.timeout)
	err := fn(callCtx)
	cancel()
	if err != nil && ctx.Err() != nil {
		b.abandon(gen)
		return err
	}
	b.record(gen, err)
	return err
}

// State returns the circuit's state now. An open circuit whose cooldown has
// passed still reports Open until a call probes it.
func (b *Breaker) State() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

// allow reports whether a call may go through, and the generation it belongs
// to.
func (b *Breaker) allow() (uint64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case Open:
		if b.now().Sub(b.openedAt) < b.cooldown {
			return 0, false
		}
		b.set(HalfOpen)
		b.probing = true
	case HalfOpen:
		if b.probing {
			return 0, false
		}
		b.probing = true
	}
	return b.gen, true
}

// abandon gives up a call whose outcome is unknown: a probe's place goes to
// the next caller.
func (b *Breaker) abandon(gen uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if gen == b.gen && b.state == HalfOpen {
		b.probing = false
	}
}

// record counts the outcome of a call of generation gen.
func (b *Breaker) record(gen uint64, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if gen != b.gen {
		return
	}
	switch {
	case b.state == Closed && err == nil:
		b.fails = 0
	case b.state == Closed:
		if b.fails++; b.fails >= b.failures {
			b.downAt = b.now()
			b.open()
			b.log.Warn("circuit breaker open: skipping calls, using the fallback",
				"breaker", b.name, "consecutive_failures", b.fails, "error", err.Error())
		}
	case b.state == HalfOpen && err == nil:
		b.set(Closed)
		b.log.Info("circuit breaker closed: service answers again",
			"breaker", b.name, "after", b.now().Sub(b.downAt).Round(time.Millisecond))
	case b.state == HalfOpen:
		// Still down: said once already when the circuit first opened.
		b.open()
		b.log.Debug("circuit breaker probe failed", "breaker", b.name, "error", err.Error())
	}
}

// open opens the circuit for a cooldown; b.mu must be held.
func (b *Breaker) open() {
	b.set(Open)
	b.openedAt = b.now()
}

// set moves to state s, starting a new generation; b.mu must be held.
func (b *Breaker) set(s State) {
	b.state, b.fails, b.probing = s, 0, false
	b.gen++
}
