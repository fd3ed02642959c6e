package audit

import (
	"errors"
	"fmt"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Foreign leaks are counted, not recorded one by one.
//
// A guard.foreign_leak record goes into the log of the tenant whose data
// was caught, on a request of another tenant: without a bound, that other
// tenant could add a hash-chained record to the victim's log with every
// answer it gets blocked, burying the log and filling its disk. So, like
// Refusals for refused keys, the Log writes at most one record per owner,
// kind and window (a minute) plus one: the first leak of a window is written
// at once, so the victim hears of it without delay, with count 1; the leaks
// after it in the same window are counted and written as one record, with
// their count, when the window ends (Run's tick), when the next leak falls
// in a later window, or when Run stops. At most maxLeakKeys (owner, kind)
// pairs are counted at once; leaks past that are only logged for the
// operator.
const (
	leakWindow  = time.Minute
	maxLeakKeys = 10_000
)

// leakKey is by the owner's incarnation: a count of a deleted tenant must
// never be written to a tenant created again under its id.
type leakKey struct {
	owner tenant.Incarnation
	kind  string
}

// leakCount is what is counted for one (owner, kind) in one window and not
// written yet.
type leakCount struct {
	start       time.Time // the window
	n, streamed int       // leaks counted, of which streamed
	first, last time.Time // of the leaks counted
}

// RecordForeignLeak records in owner's log that its data of the given kind
// ("canary" or "secret") was caught leaving towards another tenant, which the
// record does not name: it is for the victim to know, not to learn who
// received it (the operator's log names both). It is the one record written
// to a tenant other than the request's, so it takes no Scope and no data
// beyond the kind, how many such leaks it stands for ("count", of which
// "streamed") and the time of the first and last of them. Leaks are
// aggregated (see leakWindow): an error is returned only for a record
// written at once.
func (l *Log) RecordForeignLeak(owner tenant.ID, kind string, streamed bool) error {
	if l.operator == nil {
		return errors.New("audit " + ForeignLeak + ": no operator scope configured")
	}
	scope, err := l.operator(owner)
	if err != nil {
		return fmt.Errorf("audit %s: %w", ForeignLeak, err)
	}
	now := l.now().UTC()
	start := now.Truncate(leakWindow)
	k := leakKey{scope.Incarnation(), kind}
	s := 0
	if streamed {
		s = 1
	}
	l.leakMu.Lock()
	defer l.leakMu.Unlock()
	c := l.leaks[k]
	if c != nil && !c.start.Equal(start) {
		// The pair's window is over: write what it counted, then start anew.
		l.writeLeak(k, c)
		delete(l.leaks, k)
		c = nil
	}
	if c == nil {
		if len(l.leaks) >= maxLeakKeys {
			l.leakOverflow++
			return nil
		}
		// The first leak of the window is written now.
		l.leaks[k] = &leakCount{start: start}
		return l.recordLeak(scope, k, leakCount{n: 1, streamed: s, first: now, last: now})
	}
	if c.n == 0 {
		c.first = now
	}
	c.n++
	c.streamed += s
	c.last = now
	return nil
}

// flushLeaks writes the counts of windows that ended before now (all of
// them, with all set).
func (l *Log) flushLeaks(all bool) {
	start := l.now().UTC().Truncate(leakWindow)
	l.leakMu.Lock()
	defer l.leakMu.Unlock()
	for k, c := range l.leaks {
		if all || c.start.Before(start) {
			l.writeLeak(k, c)
			delete(l.leaks, k)
		}
	}
	if l.leakOverflow > 0 {
		l.log.Warn("foreign leaks not audited in their owners' logs: too many owners at once",
			"leaks", l.leakOverflow, "max_keys", maxLeakKeys)
		l.leakOverflow = 0
	}
}

// writeLeak writes c's record if it counted any leak, logging a failure;
// l.leakMu is held.
func (l *Log) writeLeak(k leakKey, c *leakCount) {
	if c.n == 0 {
		return
	}
	scope, err := scopeOf(l.operator, k.owner)
	if err == nil {
		err = l.recordLeak(scope, k, *c)
	}
	if err != nil {
		l.log.Error("audit foreign leaks", "tenant", k.owner.Tenant(), "kind", k.kind, "count", c.n, "error", err.Error())
	}
}

func (l *Log) recordLeak(scope auth.Scope, k leakKey, c leakCount) error {
	return l.Record(scope, Event{Type: ForeignLeak, Data: map[string]any{
		"kind":     k.kind,
		"count":    c.n,
		"streamed": c.streamed,
		"first":    c.first,
		"last":     c.last,
	}})
}

// FlushLeaks writes the foreign leaks counted for owner now, so that a
// reader of its log sees them. Only the owner's own reads may do this: if
// any tenant's read flushed every count, another tenant could alternate
// blocked answers and reads of its own log to write a record per leak. The
// window stays open, so later leaks in it are counted, not written at once.
func (l *Log) FlushLeaks(owner tenant.ID) {
	l.leakMu.Lock()
	defer l.leakMu.Unlock()
	for k, c := range l.leaks {
		if k.owner.Tenant() == owner && c.n > 0 {
			l.writeLeak(k, c)
			c.n, c.streamed = 0, 0
		}
	}
}
