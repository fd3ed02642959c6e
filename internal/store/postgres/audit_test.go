package postgres_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/auditchain"
	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/store/postgres"
	"github.com/bulkhead-ai/bulkhead/internal/store/storetest"
)

// TestAuditTwoReplicas appends to one tenant's log through two stores on the
// same database, as two replicas would, all at once: the log must come out
// as one verified chain holding every record.
func TestAuditTwoReplicas(t *testing.T) {
	f := newFixture(t)
	second, err := postgres.Open(t.Context(), postgres.Options{URL: f.appURL, OwnerURL: f.ownerURL, Locator: storetest.TwoTenants, Ciphers: f.keys.Ring()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Close() })
	replicas := []*postgres.DB{f.DB, second}
	scope := authtest.Scope(t, storetest.Acme, "alice")

	const writers, batches, perBatch = 8, 10, 3
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range batches {
				recs := make([]store.AuditRecord, perBatch)
				for j := range recs {
					recs[j] = store.AuditRecord{Type: "test.replica", Data: json.RawMessage(fmt.Sprintf(`{"w":%d,"i":%d,"j":%d}`, w, i, j))}
				}
				if err := replicas[w%2].AppendAudit(t.Context(), scope, recs); err != nil {
					t.Errorf("writer %d through replica %d: %v", w, w%2, err)
					return
				}
			}
		})
	}
	wg.Wait()
	got, err := second.AuditRecords(t.Context(), scope, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != writers*batches*perBatch {
		t.Errorf("got %d records, want %d", len(got), writers*batches*perBatch)
	}
	if err := auditchain.Verify(got); err != nil {
		t.Errorf("Verify: %v", err)
	}
}
