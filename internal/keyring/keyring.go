// Package keyring holds the per-tenant data keys. Each tenant's content is
// encrypted under its own random 256-bit data key (AES-256-GCM); data keys are
// stored only wrapped by the key-encryption key (KEK). Destroying a tenant's
// wrapped key makes everything encrypted under it unreadable.
package keyring

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// KeySize is the size of every key here: AES-256.
const KeySize = 32

// ErrDecrypt is returned for any ciphertext that does not open: wrong key,
// wrong tenant, wrong context or tampering. The causes are not told apart.
var ErrDecrypt = errors.New("keyring: ciphertext does not decrypt")

// KEK wraps and unwraps data keys. The local implementation is a master key
// held in memory; an external KMS or Vault can stand behind the same methods.
type KEK interface {
	Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error)
	Unwrap(ctx context.Context, ciphertext, aad []byte) ([]byte, error)
}

// ParseMasterKey decodes a base64 master key of KeySize bytes.
func ParseMasterKey(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != KeySize {
				return nil, fmt.Errorf("master key is %d bytes, want %d", len(b), KeySize)
			}
			return b, nil
		}
	}
	return nil, errors.New("master key is not valid base64")
}

// NewKey returns a fresh random key.
func NewKey() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return k, nil
}

// LocalKEK is a KEK held in process memory.
type LocalKEK struct{ aead cipher.AEAD }

// NewLocalKEK returns a KEK for a KeySize-byte master key.
func NewLocalKEK(masterKey []byte) (*LocalKEK, error) {
	aead, err := newAEAD(masterKey)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	return &LocalKEK{aead: aead}, nil
}

// Wrap implements KEK.
func (k *LocalKEK) Wrap(_ context.Context, plaintext, aad []byte) ([]byte, error) {
	return seal(k.aead, plaintext, aad), nil
}

// Unwrap implements KEK.
func (k *LocalKEK) Unwrap(_ context.Context, ciphertext, aad []byte) ([]byte, error) {
	return open(k.aead, ciphertext, aad)
}

// Cipher encrypts one tenant's records under its data key. Every ciphertext is
// bound to the tenant and to a caller-chosen context (e.g. "messages.content")
// as associated data, so a ciphertext copied to another tenant, or to another
// column, does not decrypt.
type Cipher struct {
	tenant tenant.ID
	inc    tenant.Incarnation // set by Ring: the incarnation it was handed out for
	aead   cipher.AEAD
	derive []byte // HMAC key for Derive, itself derived from the data key
}

// Seal encrypts plaintext. Each call uses a fresh random nonce.
func (c *Cipher) Seal(plaintext []byte, context string) []byte {
	return seal(c.aead, plaintext, c.aad(context))
}

// Open decrypts what Seal produced for the same tenant and context.
func (c *Cipher) Open(ciphertext []byte, context string) ([]byte, error) {
	return open(c.aead, ciphertext, c.aad(context))
}

// OpenedLen returns the length of the plaintext in a ciphertext of n bytes
// that Seal produced, without opening it, so that a listing can give sizes
// without decrypting every record (the length is no secret: the ciphertext
// shows it).
func (c *Cipher) OpenedLen(n int) int {
	return max(n-1-c.aead.NonceSize()-c.aead.Overhead(), 0)
}

// Derive returns a 256-bit key for purpose (e.g. "blind-index",
// "embedding-cache"), derived from the tenant's data key: it dies with the
// data key, and one purpose's key reveals nothing of another's.
func (c *Cipher) Derive(purpose string) []byte {
	m := hmac.New(sha256.New, c.derive)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

// Tenant returns the tenant whose key this is.
func (c *Cipher) Tenant() tenant.ID { return c.tenant }

// Incarnation returns the incarnation of the tenant a Ring handed c out for;
// a Cipher made by NewCipher has the bare tenant id.
func (c *Cipher) Incarnation() tenant.Incarnation { return c.inc }

func (c *Cipher) aad(context string) []byte {
	b := make([]byte, 0, len(recordPrefix)+len(c.tenant)+1+len(context))
	b = append(b, recordPrefix...)
	b = append(b, c.tenant...)
	b = append(b, 0)
	return append(b, context...)
}

const (
	recordPrefix = "bulkhead/record/v1\x00"
	wrapPrefix   = "bulkhead/data-key/v1\x00"
	version      = 1
)

// WrapKey wraps a tenant's data key with kek, bound to the tenant id.
func WrapKey(ctx context.Context, kek KEK, id tenant.ID, dataKey []byte) ([]byte, error) {
	w, err := kek.Wrap(ctx, dataKey, []byte(wrapPrefix+string(id)))
	if err != nil {
		return nil, fmt.Errorf("wrap data key of %s: %w", id, err)
	}
	return w, nil
}

// UnwrapKey reverses WrapKey. A key wrapped for another tenant fails.
func UnwrapKey(ctx context.Context, kek KEK, id tenant.ID, wrapped []byte) ([]byte, error) {
	k, err := kek.Unwrap(ctx, wrapped, []byte(wrapPrefix+string(id)))
	if err != nil {
		return nil, fmt.Errorf("unwrap data key of %s: %w", id, err)
	}
	if len(k) != KeySize {
		return nil, fmt.Errorf("unwrap data key of %s: %w", id, ErrDecrypt)
	}
	return k, nil
}

// NewCipher returns the Cipher for tenant id's data key.
func NewCipher(id tenant.ID, dataKey []byte) (*Cipher, error) {
	aead, err := newAEAD(dataKey)
	if err != nil {
		return nil, fmt.Errorf("data key of %s: %w", id, err)
	}
	m := hmac.New(sha256.New, dataKey)
	m.Write([]byte("bulkhead/derive/v1\x00" + string(id)))
	return &Cipher{tenant: id, inc: tenant.Incarnation(id), aead: aead, derive: m.Sum(nil)}, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal returns version || nonce || ciphertext+tag.
func seal(aead cipher.AEAD, plaintext, aad []byte) []byte {
	ns := aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plaintext)+aead.Overhead())
	out[0] = version
	_, _ = rand.Read(out[1 : 1+ns]) // crypto/rand.Read never fails
	return aead.Seal(out, out[1:1+ns], plaintext, aad)
}

func open(aead cipher.AEAD, ciphertext, aad []byte) ([]byte, error) {
	ns := aead.NonceSize()
	if len(ciphertext) < 1+ns+aead.Overhead() || ciphertext[0] != version {
		return nil, ErrDecrypt
	}
	pt, err := aead.Open(nil, ciphertext[1:1+ns], ciphertext[1+ns:], aad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// WrappedKeys finds the wrapped data key of a tenant's incarnation; the
// control plane implements it, and fails for an incarnation that is not the
// tenant's current one.
type WrappedKeys interface {
	WrappedKey(ctx context.Context, inc tenant.Incarnation) ([]byte, error)
}

// Ring hands out tenants' Ciphers, unwrapping each data key once and caching
// it for a bounded time, so a destroyed key stops being usable soon even on a
// replica that did not destroy it.
type Ring struct {
	kek     KEK
	wrapped WrappedKeys
	ttl     time.Duration
	now     func() time.Time

	mu        sync.Mutex
	cache     map[tenant.Incarnation]cached
	lastSweep time.Time
}

type cached struct {
	c       *Cipher
	wrapped string // the wrapped key it came from, to notice a re-created tenant
	expires time.Time
}

// DefaultTTL bounds how long an unwrapped data key stays in memory unused.
const DefaultTTL = 5 * time.Minute

// NewRing returns a Ring. ttl <= 0 means DefaultTTL.
func NewRing(kek KEK, wrapped WrappedKeys, ttl time.Duration) *Ring {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return &Ring{kek: kek, wrapped: wrapped, ttl: ttl, now: time.Now, cache: map[tenant.Incarnation]cached{}}
}

// Cipher returns the Cipher of incarnation inc of a tenant (a Scope's
// Incarnation). It fails closed: an unknown tenant, an incarnation that is no
// longer current or a key that does not unwrap is an error, never a default
// key or the key of the tenant's next life.
func (r *Ring) Cipher(ctx context.Context, inc tenant.Incarnation) (*Cipher, error) {
	if err := tenant.CheckIncarnation(inc); err != nil {
		return nil, fmt.Errorf("find data key: %w", err)
	}
	id := inc.Tenant()
	wrapped, err := r.wrapped.WrappedKey(ctx, inc)
	if err != nil {
		return nil, fmt.Errorf("find data key: %w", err)
	}
	now := r.now()
	r.mu.Lock()
	e, ok := r.cache[inc]
	r.mu.Unlock()
	if ok && now.Before(e.expires) && e.wrapped == string(wrapped) {
		return e.c, nil
	}
	key, err := UnwrapKey(ctx, r.kek, id, wrapped)
	if err != nil {
		return nil, err
	}
	c, err := NewCipher(id, key)
	clear(key)
	if err != nil {
		return nil, err
	}
	c.inc = inc
	r.mu.Lock()
	r.cache[inc] = cached{c: c, wrapped: string(wrapped), expires: now.Add(r.ttl)}
	r.sweep(now)
	r.mu.Unlock()
	return c, nil
}

// Forget drops the cached key of incarnation inc.
func (r *Ring) Forget(inc tenant.Incarnation) {
	r.mu.Lock()
	delete(r.cache, inc)
	r.mu.Unlock()
}

// sweep drops expired entries, at most once per TTL so that a burst of
// misses stays linear; called with mu held.
func (r *Ring) sweep(now time.Time) {
	if now.Sub(r.lastSweep) < r.ttl {
		return
	}
	r.lastSweep = now
	for id, e := range r.cache {
		if !now.Before(e.expires) {
			delete(r.cache, id)
		}
	}
}
