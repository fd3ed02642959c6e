package keyring

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

func mustKEK(t testing.TB) *LocalKEK {
	t.Helper()
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	kek, err := NewLocalKEK(k)
	if err != nil {
		t.Fatal(err)
	}
	return kek
}

func mustCipher(t testing.TB, id tenant.ID) *Cipher {
	t.Helper()
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCipher(id, k)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSealOpen(t *testing.T) {
	acme := mustCipher(t, "acme")
	msg := []byte("acme's order A-1001")
	ct := acme.Seal(msg, "message.content")
	if bytes.Contains(ct, msg) {
		t.Fatal("ciphertext contains the plaintext")
	}
	if again := acme.Seal(msg, "message.content"); bytes.Equal(ct, again) {
		t.Fatal("two seals of one plaintext are equal: nonces repeat")
	}
	got, err := acme.Open(ct, "message.content")
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("Open = %q, %v; want %q", got, err, msg)
	}

	// Same key bytes under another tenant id: still refused, because the
	// tenant is bound as associated data.
	key, _ := NewKey()
	a, _ := NewCipher("acme", key)
	g, _ := NewCipher("globex", key)
	tampered := append([]byte(nil), ct...)
	tampered[len(tampered)-1] ^= 1
	tests := []struct {
		name    string
		c       *Cipher
		ct      []byte
		context string
	}{
		{"other tenant's key", mustCipher(t, "globex"), ct, "message.content"},
		{"same key, other tenant id", g, a.Seal(msg, "x"), "x"},
		{"other context", acme, ct, "message.meta"},
		{"tampered", acme, tampered, "message.content"},
		{"truncated", acme, ct[:10], "message.content"},
		{"empty", acme, nil, "message.content"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if pt, err := tt.c.Open(tt.ct, tt.context); !errors.Is(err, ErrDecrypt) || pt != nil {
				t.Fatalf("Open = %q, %v; want nil, ErrDecrypt", pt, err)
			}
		})
	}
}

func TestOpenedLen(t *testing.T) {
	c := mustCipher(t, "acme")
	for _, n := range []int{0, 1, 100, 4 << 20} {
		if got := c.OpenedLen(len(c.Seal(make([]byte, n), "x"))); got != n {
			t.Errorf("OpenedLen of a seal of %d bytes = %d", n, got)
		}
	}
	if got := c.OpenedLen(3); got != 0 {
		t.Errorf("OpenedLen(3) = %d, want 0", got)
	}
}

func TestWrapUnwrap(t *testing.T) {
	ctx := context.Background()
	kek := mustKEK(t)
	dek, _ := NewKey()
	w, err := WrapKey(ctx, kek, "acme", dek)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(w, dek) {
		t.Fatal("wrapped key contains the key")
	}
	got, err := UnwrapKey(ctx, kek, "acme", w)
	if err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("UnwrapKey = %x, %v", got, err)
	}
	if _, err := UnwrapKey(ctx, kek, "globex", w); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("unwrap as another tenant: err = %v, want ErrDecrypt", err)
	}
	if _, err := UnwrapKey(ctx, mustKEK(t), "acme", w); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("unwrap with another KEK: err = %v, want ErrDecrypt", err)
	}
}

func TestParseMasterKey(t *testing.T) {
	k, _ := NewKey()
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding} {
		got, err := ParseMasterKey(enc.EncodeToString(k))
		if err != nil || !bytes.Equal(got, k) {
			t.Fatalf("ParseMasterKey = %x, %v", got, err)
		}
	}
	for _, bad := range []string{"", "not base64!", base64.StdEncoding.EncodeToString(k[:16])} {
		if _, err := ParseMasterKey(bad); err == nil {
			t.Errorf("ParseMasterKey(%q) succeeded", bad)
		}
	}
}

type wrappedMap map[tenant.ID][]byte

func (m wrappedMap) WrappedKey(_ context.Context, inc tenant.Incarnation) ([]byte, error) {
	id := inc.Tenant()
	w, ok := m[id]
	if !ok {
		return nil, fmt.Errorf("no tenant %s", id)
	}
	return w, nil
}

func TestRing(t *testing.T) {
	ctx := context.Background()
	kek := mustKEK(t)
	keys := wrappedMap{}
	for _, id := range []tenant.ID{"acme", "globex"} {
		dek, _ := NewKey()
		w, err := WrapKey(ctx, kek, id, dek)
		if err != nil {
			t.Fatal(err)
		}
		keys[id] = w
	}
	r := NewRing(kek, keys, time.Minute)
	now := time.Unix(1000, 0)
	r.now = func() time.Time { return now }

	acme, err := r.Cipher(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := r.Cipher(ctx, "acme"); again != acme {
		t.Fatal("second lookup did not hit the cache")
	}
	globex, err := r.Cipher(ctx, "globex")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := globex.Open(acme.Seal([]byte("x"), "c"), "c"); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("globex opened acme's ciphertext: %v", err)
	}
	if _, err := r.Cipher(ctx, "initech"); err == nil {
		t.Fatal("Cipher for an unknown tenant succeeded")
	}

	// A re-created tenant (new wrapped key) never gets the old cached key.
	dek, _ := NewKey()
	keys["acme"], _ = WrapKey(ctx, kek, "acme", dek)
	fresh, err := r.Cipher(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if fresh == acme {
		t.Fatal("re-created tenant got its predecessor's cached key")
	}
	// A deleted tenant's key stops working even while cached.
	delete(keys, "acme")
	if _, err := r.Cipher(ctx, "acme"); err == nil {
		t.Fatal("deleted tenant's key still usable")
	}
	// Entries expire.
	now = now.Add(2 * time.Minute)
	if c, _ := r.Cipher(ctx, "globex"); c == globex {
		t.Fatal("expired entry served from cache")
	}
	// A corrupted wrapped key fails closed.
	keys["globex"] = append([]byte(nil), keys["globex"][:20]...)
	r.Forget("globex")
	if _, err := r.Cipher(ctx, "globex"); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("corrupted wrapped key: err = %v, want ErrDecrypt", err)
	}
}

// BenchmarkSealOpen4K seals and opens one 4 KiB record; MB/s counts the
// record once per round trip.
func BenchmarkSealOpen4K(b *testing.B) {
	c := mustCipher(b, "acme")
	rec := bytes.Repeat([]byte("0123456789abcdef"), 256)
	b.SetBytes(int64(len(rec)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Open(c.Seal(rec, "message.content"), "message.content"); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDerive(t *testing.T) {
	key, _ := NewKey()
	a, _ := NewCipher("acme", key)
	a2, _ := NewCipher("acme", key)
	g, _ := NewCipher("globex", key)
	if !bytes.Equal(a.Derive("blind-index"), a2.Derive("blind-index")) {
		t.Fatal("Derive is not deterministic")
	}
	if bytes.Equal(a.Derive("blind-index"), a.Derive("embedding-cache")) {
		t.Fatal("two purposes share a key")
	}
	if bytes.Equal(a.Derive("blind-index"), g.Derive("blind-index")) {
		t.Fatal("two tenants share a derived key")
	}
	other := mustCipher(t, "acme")
	if bytes.Equal(a.Derive("blind-index"), other.Derive("blind-index")) {
		t.Fatal("a new data key derives the old key")
	}
}
