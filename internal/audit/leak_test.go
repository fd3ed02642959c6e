package audit_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/audit"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// TestRecordForeignLeak: the victim's log gets a record of what kind of its
// data was caught leaving, and nothing else; with no way to make the
// operator's scope, nothing is recorded and the caller hears of it.
func TestRecordForeignLeak(t *testing.T) {
	st := &fakeStore{}
	var asked []tenant.ID
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l := audit.NewLog(st, audit.Options{Now: func() time.Time { return at }, OperatorScope: func(id tenant.ID) (auth.Scope, error) {
		asked = append(asked, id)
		return authtest.Scope(t, id, ""), nil
	}})
	if err := l.RecordForeignLeak("globex", "canary", true); err != nil {
		t.Fatalf("RecordForeignLeak: %v", err)
	}
	if err := l.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	recs := st.stored("globex")
	if len(recs) != 1 || recs[0].Type != audit.ForeignLeak || len(asked) != 1 || asked[0] != "globex" {
		t.Fatalf("stored %+v (asked %v), want one %s record for globex", recs, asked, audit.ForeignLeak)
	}
	if got, want := string(recs[0].Data), `{"count":1,"first":"2026-01-02T03:04:05Z","kind":"canary","last":"2026-01-02T03:04:05Z","streamed":1}`; got != want {
		t.Errorf("data = %s, want %s", got, want)
	}
	if err := audit.NewLog(st, audit.Options{}).RecordForeignLeak("globex", "secret", false); err == nil || !strings.Contains(err.Error(), "operator") {
		t.Errorf("without OperatorScope: err = %v, want an error", err)
	}
}

type leakData struct {
	Kind     string `json:"kind"`
	Count    int    `json:"count"`
	Streamed int    `json:"streamed"`
}

func leakRecords(t *testing.T, recs []store.AuditRecord) []leakData {
	t.Helper()
	var out []leakData
	for _, r := range recs {
		if r.Type != audit.ForeignLeak {
			continue
		}
		var d leakData
		if err := json.Unmarshal(r.Data, &d); err != nil {
			t.Fatalf("record %s: %v", r.Data, err)
		}
		out = append(out, d)
	}
	return out
}

// TestForeignLeaksAggregated checks the class "another tenant floods the
// victim's log": 100 leaks of one kind in one minute give the victim at
// most two records, the first at once, the rest counted and written when
// Run stops, counts summing to 100; a later window starts a new count; a
// read of another tenant's log does not write the victim's counts.
func TestForeignLeaksAggregated(t *testing.T) {
	st := &fakeStore{}
	var mu sync.Mutex
	now := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	l := audit.NewLog(st, audit.Options{Now: clock, OperatorScope: func(id tenant.ID) (auth.Scope, error) {
		return authtest.Scope(t, id, ""), nil
	}})
	stop := run(t, l)
	for i := range 100 {
		if err := l.RecordForeignLeak("globex", "secret", i%2 == 0); err != nil {
			t.Fatalf("leak %d: %v", i, err)
		}
	}
	l.FlushLeaks("acme") // acme reading its own log writes nothing of globex's
	if err := l.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := leakRecords(t, st.stored("globex")); len(got) != 1 || got[0].Count != 1 {
		t.Fatalf("before the window ends: %+v, want the first leak alone", got)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := leakRecords(t, st.stored("globex"))
	sum, streamed := 0, 0
	for _, d := range got {
		sum += d.Count
		streamed += d.Streamed
	}
	if len(got) > 2 || sum != 100 || streamed != 50 {
		t.Fatalf("after Run stopped: %d records %+v, counts summing to %d (%d streamed), want at most 2 summing to 100 (50)", len(got), got, sum, streamed)
	}
}

// TestForeignLeaksWindows: a leak in a later window writes the previous
// window's count, and the owner's read of its log writes its count at once
// without reopening the window.
func TestForeignLeaksWindows(t *testing.T) {
	st := &fakeStore{}
	now := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	l := audit.NewLog(st, audit.Options{Now: func() time.Time { return now }, OperatorScope: func(id tenant.ID) (auth.Scope, error) {
		return authtest.Scope(t, id, ""), nil
	}})
	for range 5 {
		l.RecordForeignLeak("globex", "canary", false)
	}
	l.FlushLeaks("globex")
	for range 3 {
		l.RecordForeignLeak("globex", "canary", false)
	}
	now = now.Add(time.Minute)
	l.RecordForeignLeak("globex", "canary", false)
	if err := l.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	var counts []int
	for _, d := range leakRecords(t, st.stored("globex")) {
		counts = append(counts, d.Count)
	}
	if got, want := counts, []int{1, 4, 3, 1}; !slices.Equal(got, want) {
		t.Errorf("counts %v, want %v", got, want)
	}
}

// TestForeignLeaksAcrossIncarnations: leaks counted for one incarnation of
// the owner never reach a tenant created again under its id, whether the
// lifecycle forgot them (Forget) or the id was taken again before the count
// was written.
func TestForeignLeaksAcrossIncarnations(t *testing.T) {
	for _, forget := range []bool{true, false} {
		t.Run(fmt.Sprintf("forget=%v", forget), func(t *testing.T) {
			old, current := tenant.NewIncarnation("globex", "s1"), tenant.NewIncarnation("globex", "s1")
			st := &fakeStore{}
			l := audit.NewLog(st, audit.Options{OperatorScope: func(id tenant.ID) (auth.Scope, error) {
				return authtest.ScopeIn(t, current, ""), nil
			}})
			for range 3 {
				if err := l.RecordForeignLeak("globex", "canary", false); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.Flush(t.Context()); err != nil { // the first, written at once, is the old incarnation's
				t.Fatal(err)
			}
			first := len(st.stored("globex"))
			if forget {
				l.Forget(old)
			}
			current = tenant.NewIncarnation("globex", "s2")
			l.FlushLeaks("globex")
			if err := l.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := st.stored("globex")[first:]; len(got) != 0 {
				t.Errorf("after re-creation the log got %+v, want nothing of the old incarnation", got)
			}
		})
	}
}
