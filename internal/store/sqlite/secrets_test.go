package sqlite_test

import (
	"sync"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/store/storetest"
)

// TestSecretsCacheFollowsWrites checks the cached, decrypted secrets never
// go stale: every write is seen by the next read, also when reads and
// writes race.
func TestSecretsCacheFollowsWrites(t *testing.T) {
	k := newKeys(t, storetest.Acme, storetest.Globex)
	db := open(t, t.TempDir(), 0, twoTenants, k.Ring())
	ctx := t.Context()
	acme := authtest.Scope(t, storetest.Acme, "")
	value := func() string {
		t.Helper()
		list, err := db.Secrets(ctx, acme)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == 0 {
			return ""
		}
		return list[0].Value.Reveal()
	}
	for _, v := range []string{"first-value-1", "second-value-2"} {
		if err := db.PutSecret(ctx, acme, "token", []byte(v)); err != nil {
			t.Fatal(err)
		}
		if got := value(); got != v {
			t.Fatalf("after put: got %q, want %q", got, v)
		}
		if got := value(); got != v { // served from the cache
			t.Fatalf("cached: got %q, want %q", got, v)
		}
	}
	if err := db.DeleteSecret(ctx, acme, "token"); err != nil {
		t.Fatal(err)
	}
	if got := value(); got != "" {
		t.Fatalf("after delete: got %q", got)
	}

	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if i%2 == 0 {
				db.PutSecret(ctx, acme, "token", []byte("racing-value"))
			} else {
				db.Secrets(ctx, acme)
			}
		})
	}
	wg.Wait()
	if err := db.PutSecret(ctx, acme, "token", []byte("final-value-9")); err != nil {
		t.Fatal(err)
	}
	if got := value(); got != "final-value-9" {
		t.Fatalf("after the race: got %q, want the last write", got)
	}
}
