package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auditchain"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/store"
)

// AuditBackend is the audit-log part of a tenant data-plane backend.
type AuditBackend interface {
	AppendAudit(ctx context.Context, scope auth.Scope, recs []store.AuditRecord) error
	AuditRecords(ctx context.Context, scope auth.Scope, afterSeq int64, limit int) ([]store.AuditRecord, error)
}

// RunAudit runs the audit-log suite. open is as for Run.
func RunAudit(t *testing.T, open func(t *testing.T) AuditBackend) {
	t.Run("AuditChain", func(t *testing.T) { testAuditChain(t, open(t)) })
	t.Run("AuditPages", func(t *testing.T) { testAuditPages(t, open(t)) })
	t.Run("AuditTenantsAreSeparate", func(t *testing.T) { testAuditTenantsAreSeparate(t, open(t)) })
	t.Run("AuditInvalid", func(t *testing.T) { testAuditInvalid(t, open(t)) })
	t.Run("AuditRefused", func(t *testing.T) { testAuditRefused(t, open(t)) })
	t.Run("AuditConcurrentAppends", func(t *testing.T) { testAuditConcurrentAppends(t, open(t)) })
}

// auditRecs returns n records of type typ, numbered from first in Data.
func auditRecs(typ string, first, n int) []store.AuditRecord {
	base := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	recs := make([]store.AuditRecord, n)
	for i := range recs {
		recs[i] = store.AuditRecord{
			Time: base.Add(time.Duration(first+i) * time.Nanosecond),
			Type: typ,
			Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, first+i)),
		}
	}
	return recs
}

// chainOf links recs as a store must, from the start of a log.
func chainOf(t *testing.T, recs []store.AuditRecord) []store.AuditRecord {
	t.Helper()
	var (
		head auditchain.Head
		out  []store.AuditRecord
	)
	for _, r := range recs {
		r, err := auditchain.Link(head, r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
		head = auditchain.Head{Seq: r.Seq, Hash: r.Hash}
	}
	return out
}

func mustAppendAudit(t *testing.T, b AuditBackend, scope auth.Scope, recs []store.AuditRecord) {
	t.Helper()
	if err := b.AppendAudit(t.Context(), scope, recs); err != nil {
		t.Fatalf("AppendAudit(%s, %d records): %v", scope.Tenant(), len(recs), err)
	}
}

func mustAudit(t *testing.T, b AuditBackend, scope auth.Scope, afterSeq int64, limit int) []store.AuditRecord {
	t.Helper()
	recs, err := b.AuditRecords(t.Context(), scope, afterSeq, limit)
	if err != nil {
		t.Fatalf("AuditRecords(%s, after %d, limit %d): %v", scope.Tenant(), afterSeq, limit, err)
	}
	return recs
}

// diffAudit describes how got differs from want, or returns "".
func diffAudit(got, want []store.AuditRecord) string {
	if len(got) != len(want) {
		return fmt.Sprintf("got %d records, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Seq != w.Seq || !g.Time.Equal(w.Time) || g.Time.Location() != time.UTC ||
			g.Type != w.Type || !bytes.Equal(g.Data, w.Data) || g.Prev != w.Prev || g.Hash != w.Hash {
			return fmt.Sprintf("record %d: got %+v (data %s), want %+v (data %s)", i, g, g.Data, w, w.Data)
		}
	}
	return ""
}

func testAuditChain(t *testing.T, b AuditBackend) {
	scope := authtest.Scope(t, Acme, "alice")
	if got := mustAudit(t, b, scope, 0, 0); len(got) != 0 {
		t.Fatalf("fresh tenant: got %d records, want 0", len(got))
	}
	all := auditRecs("tool.call", 0, 7)
	// Whatever Seq, Prev and Hash the caller sets, the store assigns them;
	// data is stored canonical.
	all[0].Seq, all[0].Prev, all[0].Hash = 42, "beef", "cafe"
	all[1].Data = json.RawMessage("{ \"tool\" : \"a<b\",\n \"args\": [ ] }")
	mustAppendAudit(t, b, scope, all[:1])
	mustAppendAudit(t, b, scope, all[1:4])
	mustAppendAudit(t, b, scope, nil)
	mustAppendAudit(t, b, scope, all[4:])

	// Batching does not change the chain: it is what one append of every
	// record would give.
	all[0].Seq, all[0].Prev, all[0].Hash = 0, "", ""
	want := chainOf(t, all)
	if got, w := string(want[1].Data), `{"tool":"a\u003cb","args":[]}`; got != w {
		t.Fatalf("canonical data: got %s, want %s", got, w)
	}
	got := mustAudit(t, b, scope, 0, 0)
	if diff := diffAudit(got, want); diff != "" {
		t.Fatalf("AuditRecords: %s", diff)
	}
	if err := auditchain.Verify(got); err != nil {
		t.Errorf("Verify: %v", err)
	}
	// Read back through JSON, as a client would, it still verifies.
	enc, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	var decoded []store.AuditRecord
	if err := json.Unmarshal(enc, &decoded); err != nil {
		t.Fatal(err)
	}
	if err := auditchain.VerifyHead(decoded, auditchain.HeadOf(got)); err != nil {
		t.Errorf("Verify after a JSON round trip: %v", err)
	}

	// A record without a time gets the append time, in UTC.
	before := time.Now()
	mustAppendAudit(t, b, scope, []store.AuditRecord{{Type: "key.create", Data: json.RawMessage(`{"key":"k1"}`)}})
	after := time.Now()
	got = mustAudit(t, b, scope, 7, 0)
	if len(got) != 1 {
		t.Fatalf("after seq 7: got %d records, want 1", len(got))
	}
	if c := got[0].Time; c.Before(before.Add(-time.Second)) || c.After(after.Add(time.Second)) || c.Location() != time.UTC {
		t.Errorf("zero Time: got %v, want the append time in UTC, between %v and %v", c, before, after)
	}
	if err := auditchain.Verify(mustAudit(t, b, scope, 0, 0)); err != nil {
		t.Errorf("Verify after a time-less record: %v", err)
	}
}

func testAuditPages(t *testing.T, b AuditBackend) {
	scope := authtest.Scope(t, Acme, "alice")
	want := chainOf(t, auditRecs("cache.hit", 0, 10))
	mustAppendAudit(t, b, scope, auditRecs("cache.hit", 0, 10))
	tests := []struct {
		after int64
		limit int
		want  []store.AuditRecord
	}{
		{0, 0, want},
		{-5, -1, want},
		{0, 3, want[:3]},
		{3, 3, want[3:6]},
		{8, 100, want[8:]},
		{10, 0, nil},
		{99, 5, nil},
	}
	for _, tt := range tests {
		got := mustAudit(t, b, scope, tt.after, tt.limit)
		if diff := diffAudit(got, tt.want); diff != "" {
			t.Errorf("AuditRecords(after %d, limit %d): %s", tt.after, tt.limit, diff)
		}
	}
	var pages []store.AuditRecord
	for after := int64(0); ; {
		page := mustAudit(t, b, scope, after, 4)
		if len(page) == 0 {
			break
		}
		pages = append(pages, page...)
		after = page[len(page)-1].Seq
	}
	if err := auditchain.Verify(pages); err != nil {
		t.Errorf("Verify pages: %v", err)
	}
}

func testAuditTenantsAreSeparate(t *testing.T, b AuditBackend) {
	acme := authtest.Scope(t, Acme, "alice")
	globex := authtest.Scope(t, Globex, "alice")
	acmeRecs := auditRecs("acme.event", 0, 3)
	globexRecs := auditRecs("globex.event", 100, 5)
	mustAppendAudit(t, b, acme, acmeRecs[:1])
	mustAppendAudit(t, b, globex, globexRecs[:2])
	mustAppendAudit(t, b, acme, acmeRecs[1:])
	mustAppendAudit(t, b, globex, globexRecs[2:])

	// Each tenant's log is its own chain, from seq 1; another end user of the
	// tenant reads the same log.
	tests := []struct {
		name  string
		scope auth.Scope
		want  []store.AuditRecord
	}{
		{"acme", acme, chainOf(t, acmeRecs)},
		{"acme's other user", acme.WithUser("bob"), chainOf(t, acmeRecs)},
		{"globex", globex, chainOf(t, globexRecs)},
	}
	for _, tt := range tests {
		got := mustAudit(t, b, tt.scope, 0, 0)
		if diff := diffAudit(got, tt.want); diff != "" {
			t.Errorf("%s reads its log: %s", tt.name, diff)
		}
		if err := auditchain.Verify(got); err != nil {
			t.Errorf("%s: Verify: %v", tt.name, err)
		}
	}
	// Paging past the end of one's own log does not reach the other's.
	if got := mustAudit(t, b, acme, 3, 0); len(got) != 0 {
		t.Errorf("acme after its last seq: got %d records, want 0", len(got))
	}
}

func testAuditInvalid(t *testing.T, b AuditBackend) {
	ctx := t.Context()
	scope := authtest.Scope(t, Acme, "alice")
	good := auditRecs("tool.call", 0, 1)[0]
	tests := []struct {
		name string
		edit func(*store.AuditRecord)
		want error
	}{
		{"empty type", func(r *store.AuditRecord) { r.Type = "" }, kind.Invalid},
		{"type with a space", func(r *store.AuditRecord) { r.Type = "tool call" }, kind.Invalid},
		{"data not JSON", func(r *store.AuditRecord) { r.Data = json.RawMessage(`{"a":`) }, kind.Invalid},
		{"data too large", func(r *store.AuditRecord) {
			r.Data = json.RawMessage(`"` + string(bytes.Repeat([]byte("x"), auditchain.MaxData)) + `"`)
		}, kind.TooLarge},
		{"time out of range", func(r *store.AuditRecord) { r.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, kind.Invalid},
	}
	for _, tt := range tests {
		bad := good
		tt.edit(&bad)
		// A bad record fails the whole batch.
		if err := b.AppendAudit(ctx, scope, []store.AuditRecord{good, bad}); !errors.Is(err, tt.want) {
			t.Errorf("%s: got error %v, want %v", tt.name, err, tt.want)
		}
	}
	if got := mustAudit(t, b, scope, 0, 0); len(got) != 0 {
		t.Errorf("after refused appends: got %d records, want 0", len(got))
	}
}

func testAuditRefused(t *testing.T, b AuditBackend) {
	ctx := t.Context()
	var zero auth.Scope
	tests := []struct {
		name  string
		scope auth.Scope
		want  error
	}{
		{"zero scope", zero, store.ErrNoScope},
		{"unknown tenant", authtest.Scope(t, "initech", "alice"), store.ErrUnknownTenant},
	}
	for _, tt := range tests {
		if err := b.AppendAudit(ctx, tt.scope, auditRecs("tool.call", 0, 1)); !errors.Is(err, tt.want) {
			t.Errorf("%s: AppendAudit: got error %v, want %v", tt.name, err, tt.want)
		}
		recs, err := b.AuditRecords(ctx, tt.scope, 0, 0)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: AuditRecords: got error %v, want %v", tt.name, err, tt.want)
		}
		if len(recs) != 0 {
			t.Errorf("%s: AuditRecords: got %d records, want 0", tt.name, len(recs))
		}
	}
}

func testAuditConcurrentAppends(t *testing.T, b AuditBackend) {
	const writers, batches, perBatch = 8, 10, 5
	ctx := t.Context()
	scopeOf := func(w int) auth.Scope {
		if w%2 == 1 {
			return authtest.Scope(t, Globex, "alice")
		}
		return authtest.Scope(t, Acme, "alice")
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range batches {
				recs := auditRecs(fmt.Sprintf("writer.w%d", w), i*perBatch, perBatch)
				if err := b.AppendAudit(ctx, scopeOf(w), recs); err != nil {
					errs <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, id := range []auth.Scope{scopeOf(0), scopeOf(1)} {
		got := mustAudit(t, b, id, 0, 0)
		if want := writers / 2 * batches * perBatch; len(got) != want {
			t.Errorf("%s: got %d records, want %d", id.Tenant(), len(got), want)
		}
		if err := auditchain.Verify(got); err != nil {
			t.Errorf("%s: Verify: %v", id.Tenant(), err)
		}
		// Each batch is contiguous, and no writer's records are in the other
		// tenant's log.
		for i := 0; i < len(got); i += perBatch {
			for j := i; j < i+perBatch && j < len(got); j++ {
				if got[j].Type != got[i].Type {
					t.Fatalf("%s: batch at seq %d is interleaved with %s", id.Tenant(), got[i].Seq, got[j].Type)
				}
			}
			var w int
			if _, err := fmt.Sscanf(got[i].Type, "writer.w%d", &w); err != nil || scopeOf(w).Tenant() != id.Tenant() {
				t.Errorf("%s: seq %d is %s's", id.Tenant(), got[i].Seq, got[i].Type)
			}
		}
	}
}
