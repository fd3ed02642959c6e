package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Locator maps tenants to storage ids, as the control plane does for a
// backend; any other tenant is unknown.
type Locator map[tenant.ID]string

// StorageID implements the backends' Locator.
func (l Locator) StorageID(_ context.Context, inc tenant.Incarnation) (string, error) {
	id := inc.Tenant()
	s, ok := l[id]
	if !ok {
		return "", fmt.Errorf("tenant %q: %w", id, store.ErrUnknownTenant)
	}
	return s, nil
}

// Incarnation returns tenant id's incarnation as l stores it, the way Drop
// takes it.
func (l Locator) Incarnation(id tenant.ID) tenant.Incarnation {
	return tenant.NewIncarnation(id, l[id])
}

// TwoTenants locates Acme and Globex.
var TwoTenants = Locator{Acme: "acme0storage", Globex: "globex0storage"}

// Keys holds tenants' data keys wrapped by a random master key, as the
// control plane does, and hands out their Ciphers through a real
// keyring.Ring (Ring).
type Keys struct {
	kek  *keyring.LocalKEK
	ring *keyring.Ring

	mu      sync.Mutex
	wrapped map[tenant.ID][]byte
}

// NewKeys returns Keys holding a new data key for each of ids.
func NewKeys(tb testing.TB, ids ...tenant.ID) *Keys {
	tb.Helper()
	master, err := keyring.NewKey()
	if err != nil {
		tb.Fatal(err)
	}
	kek, err := keyring.NewLocalKEK(master)
	if err != nil {
		tb.Fatal(err)
	}
	k := &Keys{kek: kek, wrapped: map[tenant.ID][]byte{}}
	k.ring = keyring.NewRing(kek, k, 0)
	for _, id := range ids {
		k.Replace(tb, id)
	}
	return k
}

// Ring returns the keyring the backends take as their Ciphers.
func (k *Keys) Ring() *keyring.Ring { return k.ring }

// Replace gives tenant id a new random data key, as deleting and re-creating
// the tenant would; what the old key sealed no longer opens.
func (k *Keys) Replace(tb testing.TB, id tenant.ID) {
	tb.Helper()
	dataKey, err := keyring.NewKey()
	if err != nil {
		tb.Fatal(err)
	}
	w, err := keyring.WrapKey(context.Background(), k.kek, id, dataKey)
	if err != nil {
		tb.Fatal(err)
	}
	k.mu.Lock()
	k.wrapped[id] = w
	k.mu.Unlock()
}

// Destroy forgets tenant id's data key (crypto-shredding).
func (k *Keys) Destroy(id tenant.ID) {
	k.mu.Lock()
	delete(k.wrapped, id)
	k.mu.Unlock()
	k.ring.Forget(tenant.Incarnation(id))
}

// WrappedKey implements keyring.WrappedKeys.
func (k *Keys) WrappedKey(_ context.Context, inc tenant.Incarnation) ([]byte, error) {
	id := inc.Tenant()
	k.mu.Lock()
	defer k.mu.Unlock()
	w, ok := k.wrapped[id]
	if !ok {
		return nil, fmt.Errorf("tenant %q has no data key: %w", id, store.ErrUnknownTenant)
	}
	return w, nil
}
