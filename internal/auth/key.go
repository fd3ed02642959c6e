package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// KeyPrefix starts every tenant API key, so leaked keys are easy to spot.
const KeyPrefix = "bk_"

// A key reads bk_<id>_<secret>: a 16-hex-digit public id used for lookup, then
// 256 random bits in base64url. Only the SHA-256 of the whole key is stored;
// with 256 bits of entropy a slow hash would add cost and no safety.
const (
	keyIDLen     = 16
	keySecretLen = 43 // base64url, unpadded, of 32 bytes
	keyLen       = len(KeyPrefix) + keyIDLen + 1 + keySecretLen
)

// KeyHash is the stored digest of an API key.
type KeyHash [sha256.Size]byte

// Secret is an API key shown to its owner once. It prints redacted.
type Secret string

func (Secret) String() string   { return "[REDACTED]" }
func (Secret) GoString() string { return "[REDACTED]" }

// Reveal returns the key itself, for the one response that shows it.
func (s Secret) Reveal() string { return string(s) }

// NewKey makes a fresh API key.
func NewKey() (tenant.KeyID, Secret, KeyHash, error) {
	var raw [8 + 32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", "", KeyHash{}, fmt.Errorf("generate api key: %w", err)
	}
	id := tenant.KeyID(hex.EncodeToString(raw[:8]))
	key := KeyPrefix + string(id) + "_" + base64.RawURLEncoding.EncodeToString(raw[8:])
	return id, Secret(key), sha256.Sum256([]byte(key)), nil
}

// parseKey splits a presented key into its id and digest without looking
// anything up.
func parseKey(key string) (tenant.KeyID, KeyHash, error) {
	if len(key) != keyLen || !strings.HasPrefix(key, KeyPrefix) || key[len(KeyPrefix)+keyIDLen] != '_' {
		return "", KeyHash{}, fmt.Errorf("%w: malformed api key", kind.Unauthenticated)
	}
	id := key[len(KeyPrefix) : len(KeyPrefix)+keyIDLen]
	if _, err := hex.DecodeString(id); err != nil {
		return "", KeyHash{}, fmt.Errorf("%w: malformed api key", kind.Unauthenticated)
	}
	return tenant.KeyID(id), sha256.Sum256([]byte(key)), nil
}

// equal compares digests in constant time.
func (h KeyHash) equal(o KeyHash) bool {
	return subtle.ConstantTimeCompare(h[:], o[:]) == 1
}
