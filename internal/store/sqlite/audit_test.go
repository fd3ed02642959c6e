package sqlite_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/audit"
	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/store/storetest"
)

func TestAuditConformance(t *testing.T) {
	storetest.RunAudit(t, func(t *testing.T) storetest.AuditBackend {
		db, _ := openTwo(t)
		return db
	})
}

func auditEvents(n int) []store.AuditRecord {
	recs := make([]store.AuditRecord, n)
	for i := range recs {
		recs[i] = store.AuditRecord{Type: "tool.call", Data: json.RawMessage(fmt.Sprintf(`{"tool":"search","n":%d}`, i))}
	}
	return recs
}

// TestAuditAppendOnly changes the audit table behind the store's back: the
// triggers refuse every change, and once someone with the file drops them,
// Verify finds the edit.
func TestAuditAppendOnly(t *testing.T) {
	db, dir := openTwo(t)
	ctx := t.Context()
	scope := authtest.Scope(t, storetest.Acme, "alice")
	if err := db.AppendAudit(ctx, scope, auditEvents(3)); err != nil {
		t.Fatal(err)
	}
	recs, err := db.AuditRecords(ctx, scope, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	raw := rawDB(t, dir, twoTenants[storetest.Acme])

	refused := []struct {
		name, query string
		args        []any
	}{
		{"update data", `UPDATE audit SET data = '{"tool":"other"}' WHERE seq = 2`, nil},
		{"update every row", `UPDATE audit SET type = 'x'`, nil},
		{"delete one", `DELETE FROM audit WHERE seq = 3`, nil},
		{"delete all", `DELETE FROM audit`, nil},
		{"replace", `INSERT OR REPLACE INTO audit (seq, time, type, data, prev, hash) VALUES (2, ?, 'x', '{}', ?, ?)`,
			[]any{"2025-01-01T00:00:00.000000000Z", recs[0].Hash, strings.Repeat("0", 64)}},
		{"upsert", `INSERT INTO audit (seq, time, type, data, prev, hash) VALUES (2, ?, 'x', '{}', ?, ?)
			ON CONFLICT (seq) DO UPDATE SET type = excluded.type`,
			[]any{"2025-01-01T00:00:00.000000000Z", recs[0].Hash, strings.Repeat("0", 64)}},
		{"skip a seq", `INSERT INTO audit (seq, time, type, data, prev, hash) VALUES (5, ?, 'x', '{}', ?, ?)`,
			[]any{"2025-01-01T00:00:00.000000000Z", recs[2].Hash, strings.Repeat("0", 64)}},
		{"wrong prev", `INSERT INTO audit (seq, time, type, data, prev, hash) VALUES (4, ?, 'x', '{}', ?, ?)`,
			[]any{"2025-01-01T00:00:00.000000000Z", recs[1].Hash, strings.Repeat("0", 64)}},
	}
	for _, tt := range refused {
		_, err := raw.ExecContext(ctx, tt.query, tt.args...)
		if err == nil || !strings.Contains(err.Error(), "audit") {
			t.Errorf("%s: got error %v, want the trigger's", tt.name, err)
		}
	}
	after, err := db.AuditRecords(ctx, scope, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 3 {
		t.Fatalf("after refused changes: got %d records, want 3", len(after))
	}
	if err := audit.VerifyHead(after, audit.HeadOf(recs)); err != nil {
		t.Fatalf("after refused changes: %v", err)
	}

	// Someone with the file can drop the triggers and edit; Verify sees it.
	if _, err := raw.ExecContext(ctx, `DROP TRIGGER audit_append_only_update`); err != nil {
		t.Fatal(err)
	}
	rawExec(t, raw, `UPDATE audit SET data = '{"tool":"other","n":1}' WHERE seq = 2`)
	edited, err := db.AuditRecords(ctx, scope, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	err = audit.Verify(edited)
	if ce, ok := err.(*audit.ChainError); !ok || ce.Seq != 2 || ce.What != audit.Edited {
		t.Errorf("Verify after an edit in the file: got %v, want seq 2 edited", err)
	}
}

// TestAuditBatchSizes appends batches around the rows-per-insert size: the
// chain is the one a single append of every record would give.
func TestAuditBatchSizes(t *testing.T) {
	db, _ := openTwo(t)
	ctx := t.Context()
	scope := authtest.Scope(t, storetest.Acme, "alice")
	all := auditEvents(1 + 63 + 64 + 65 + 130 + 512)
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range all {
		all[i].Time = base.Add(time.Duration(i) * time.Microsecond)
	}
	rest := all
	for _, n := range []int{1, 63, 64, 65, 130, 512} {
		if err := db.AppendAudit(ctx, scope, rest[:n]); err != nil {
			t.Fatalf("append %d: %v", n, err)
		}
		rest = rest[n:]
	}
	got, err := db.AuditRecords(ctx, scope, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(all) {
		t.Fatalf("got %d records, want %d", len(got), len(all))
	}
	var head audit.Head
	for i, r := range all {
		want, err := audit.Link(head, r)
		if err != nil {
			t.Fatal(err)
		}
		if got[i].Seq != want.Seq || got[i].Hash != want.Hash || got[i].Prev != want.Prev {
			t.Fatalf("record %d: got seq %d hash %s prev %s, want %d %s %s", i, got[i].Seq, got[i].Hash, got[i].Prev, want.Seq, want.Hash, want.Prev)
		}
		head = audit.Head{Seq: want.Seq, Hash: want.Hash}
	}
	if err := audit.Verify(got); err != nil {
		t.Fatal(err)
	}
}

// TestAuditAfterDrop checks that a dropped tenant's next log starts again at
// seq 1.
func TestAuditAfterDrop(t *testing.T) {
	db, _ := openTwo(t)
	ctx := t.Context()
	scope := authtest.Scope(t, storetest.Acme, "alice")
	if err := db.AppendAudit(ctx, scope, auditEvents(5)); err != nil {
		t.Fatal(err)
	}
	if err := db.Drop(ctx, acmeIncarnation); err != nil {
		t.Fatal(err)
	}
	if err := db.AppendAudit(ctx, scope, auditEvents(1)); err != nil {
		t.Fatal(err)
	}
	recs, err := db.AuditRecords(ctx, scope, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Seq != 1 || recs[0].Prev != "" {
		t.Fatalf("after drop: got %+v, want one record, seq 1, no prev", recs)
	}
}

// BenchmarkAppendAudit stores audit events in batches of 1 and 512, straight
// into the store.
func BenchmarkAppendAudit(b *testing.B) {
	for _, batch := range []int{1, 64, 512} {
		b.Run(fmt.Sprint("batch=", batch), func(b *testing.B) {
			db, scope := benchStore(b)
			ctx := b.Context()
			recs := auditEvents(batch)
			now := time.Now()
			for i := range recs {
				recs[i].Time = now
			}
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				if err := db.AppendAudit(ctx, scope, recs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "events/s")
		})
	}
}
