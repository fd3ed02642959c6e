package audit_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/audit"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/store/sqlite"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

var _ audit.Store = (*sqlite.DB)(nil)

// tenants maps tenant ids to storage ids and gives each a random data key.
type tenants struct {
	mu      sync.Mutex
	ciphers map[tenant.ID]*keyring.Cipher
}

func (*tenants) StorageID(_ context.Context, inc tenant.Incarnation) (string, error) {
	return "store0" + string(inc.Tenant()), nil
}

func (ts *tenants) Cipher(_ context.Context, inc tenant.Incarnation) (*keyring.Cipher, error) {
	id := inc.Tenant()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if c, ok := ts.ciphers[id]; ok {
		return c, nil
	}
	key, err := keyring.NewKey()
	if err != nil {
		return nil, err
	}
	c, err := keyring.NewCipher(id, key)
	if err != nil {
		return nil, err
	}
	ts.ciphers[id] = c
	return c, nil
}

func openStore(tb testing.TB) *sqlite.DB {
	tb.Helper()
	ts := &tenants{ciphers: map[tenant.ID]*keyring.Cipher{}}
	db, err := sqlite.Open(sqlite.Options{Dir: tb.TempDir(), Locator: ts, Ciphers: ts})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Error(err)
		}
	})
	return db
}

// TestLogToSQLite records events for two tenants through a running Log into
// the SQLite store: each tenant's log holds exactly its events, in order, as
// one chain that verifies.
func TestLogToSQLite(t *testing.T) {
	db := openStore(t)
	l := audit.NewLog(db, audit.Options{FlushInterval: time.Millisecond, MaxBatch: 16})
	stop := run(t, l)
	acme := authtest.Scope(t, "acme", "alice")
	globex := authtest.Scope(t, "globex", "bob")
	const n = 500
	for i := range n {
		mustRecord(t, l, acme, event(i))
		mustRecord(t, l, globex, event(i))
		if i%100 == 0 {
			time.Sleep(2 * time.Millisecond) // let Run flush mid-way
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, scope := range []auth.Scope{acme, globex} {
		recs, err := db.AuditRecords(t.Context(), scope, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		checkNumbers(t, string(scope.Tenant()), recs, 0, n)
		if err := audit.Verify(recs); err != nil {
			t.Errorf("%s: %v", scope.Tenant(), err)
		}
	}
}

// BenchmarkLogAppend records events through a running Log into the SQLite
// store, for 1 and 4 tenants, until every event is stored, and reports the
// events stored per second per tenant store. When the queue is full, Record
// fails with ErrFull and the benchmark waits for a flush, so the figure is
// what the store sustains, not how fast events queue.
func BenchmarkLogAppend(b *testing.B) {
	for _, nTenants := range []int{1, 4} {
		b.Run(fmt.Sprint("tenants=", nTenants), func(b *testing.B) {
			db := openStore(b)
			ctx := b.Context()
			scopes := make([]auth.Scope, nTenants)
			for i := range scopes {
				scopes[i] = authtest.Scope(b, tenant.ID(fmt.Sprint("t", i)), "alice")
				// Open each tenant's database before timing.
				if err := db.AppendAudit(ctx, scopes[i], nil); err != nil {
					b.Fatal(err)
				}
			}
			l := audit.NewLog(db, audit.Options{})
			runCtx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- l.Run(runCtx) }()
			e := audit.Event{Type: "tool.call", Data: map[string]any{
				"tool": "search", "args": map[string]any{"query": "string", "k": "number"},
				"decision": "allow", "policies": []string{"policy0"},
			}}
			b.ReportAllocs()
			start := time.Now()
			i := 0
			for b.Loop() {
				scope := scopes[i%nTenants]
				i++
				for {
					err := l.Record(scope, e)
					if err == nil {
						break
					}
					if !errors.Is(err, audit.ErrFull) {
						b.Fatal(err)
					}
					if err := l.Flush(ctx); err != nil {
						b.Fatal(err)
					}
				}
			}
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			elapsed := time.Since(start)
			b.ReportMetric(float64(b.N)/float64(nTenants)/elapsed.Seconds(), "events/s/tenant")
			var stored int
			for _, scope := range scopes {
				recs, err := db.AuditRecords(ctx, scope, 0, 0)
				if err != nil {
					b.Fatal(err)
				}
				stored += len(recs)
			}
			if stored != b.N {
				b.Fatalf("stored %d events, want %d", stored, b.N)
			}
		})
	}
}

// BenchmarkRecordNow stores one admin-change event at a time, as an admin
// handler does before it makes the change: the latency an audited change
// adds.
func BenchmarkRecordNow(b *testing.B) {
	db := openStore(b)
	ctx := b.Context()
	scope := authtest.Scope(b, "t0", "")
	if err := db.AppendAudit(ctx, scope, nil); err != nil {
		b.Fatal(err)
	}
	l := audit.NewLog(db, audit.Options{})
	e := audit.Event{Type: "secret.set", Data: map[string]any{"secret": "crm_token"}}
	b.ReportAllocs()
	for b.Loop() {
		if err := l.RecordNow(ctx, scope, e); err != nil {
			b.Fatal(err)
		}
	}
}
