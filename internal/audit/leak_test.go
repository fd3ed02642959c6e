package audit_test

import (
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/audit"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// TestRecordForeignLeak: the victim's log gets a record of what kind of its
// data was caught leaving, and nothing else; with no way to make the
// operator's scope, nothing is recorded and the caller hears of it.
func TestRecordForeignLeak(t *testing.T) {
	st := &fakeStore{}
	var asked []tenant.ID
	l := audit.NewLog(st, audit.Options{OperatorScope: func(id tenant.ID) (auth.Scope, error) {
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
	if got, want := string(recs[0].Data), `{"kind":"canary","streamed":true}`; got != want {
		t.Errorf("data = %s, want %s", got, want)
	}
	if err := audit.NewLog(st, audit.Options{}).RecordForeignLeak("globex", "secret", false); err == nil || !strings.Contains(err.Error(), "operator") {
		t.Errorf("without OperatorScope: err = %v, want an error", err)
	}
}
