// Package cache is an exact response cache for chat completions, shared by all
// tenants and partitioned between them so that it can never serve one
// tenant's answer to another.
//
// Three layers keep tenants apart:
//
//   - The key is "<tenant>:" + hex(HMAC-SHA256(k, canonical request)), where
//     the tenant is the one whose data key the caller holds (Cipher.Tenant)
//     and k is derived from that data key. Nothing in a Request can change the
//     tenant part, and without the tenant's key nobody can compute — or probe
//     for — its keys.
//   - The stored entry is an envelope that records its tenant; on read it
//     must name the reader's tenant. (The record is not authenticated on its
//     own; the seal below is what a forger cannot get past.)
//   - The value inside is sealed with the tenant's Cipher, bound to the
//     tenant and to the entry's key, so bytes copied to another tenant's key,
//     or to another key of the same tenant, do not open.
//
// An entry that fails any check is refused: Get reports a miss with
// ErrForeignEntry, for the caller to audit, and never returns its value.
// Crypto-shredding a tenant's data key makes its entries unreadable and
// unaddressable even where DeleteTenant has not reached them.
package cache

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/layers"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Request is the canonical form of what determines an answer. Two requests
// share a cache entry only if every field is equal, in order.
type Request struct {
	Profile       string
	Model         string
	Messages      []llm.Message
	Tools         []string // names of the tools offered, in the order offered
	PolicyVersion string   // changes when the tenant's policy or profile changes
	MaxTokens     int
	Temperature   *float64
	// Options is the canonical JSON of every other request field sent to
	// the model (llm.Options): any of them may change the answer.
	Options string
}

// Value is a cached answer.
type Value struct {
	Content      string
	FinishReason string
	Usage        llm.Usage // what the answer cost when it was made
	// Model and SystemFingerprint are what the provider reported.
	Model, SystemFingerprint string
}

// Backend stores opaque bytes under keys. Every key starts with
// "<tenant>:"; a Backend knows nothing else about what it holds.
type Backend interface {
	// Get returns the bytes under key; false means there are none (or they
	// expired).
	Get(ctx context.Context, key string) ([]byte, bool, error)
	// Set stores val under key for ttl; ttl <= 0 means no expiry.
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
	// DeleteTenant drops every entry whose key starts with id + ":", id
	// being a tenant's incarnation.
	DeleteTenant(ctx context.Context, id tenant.Incarnation) error
}

// ErrForeignEntry reports a refused entry: its envelope names another tenant,
// it does not decrypt under the reader's key for its key, or it is
// malformed. Get returns it with a miss and never the entry's value; the
// caller should audit it and may go on to the model.
var ErrForeignEntry = errors.New("cache: entry refused: not provably this tenant's")

// DefaultTTL is the entry lifetime of New(b, 0).
const DefaultTTL = 10 * time.Minute

// Key derivation purposes; see keyring.Cipher.Derive.
const (
	responsePurpose    = "response-cache"
	promptCachePurpose = "prompt-cache"
)

// Cache is a tenant-partitioned response cache over a Backend. It is safe for
// concurrent use if its Backend is.
type Cache struct {
	b   Backend
	ttl time.Duration
}

// New returns a Cache storing entries in b for ttl. A nil b means
// NewMemory(0, 0); ttl <= 0 means DefaultTTL.
func New(b Backend, ttl time.Duration) *Cache {
	if b == nil {
		b = NewMemory(0, 0)
	}
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return &Cache{b: b, ttl: ttl}
}

// Get looks up req for the tenant of c. A hit returns the value and true. Any
// error comes with a miss: ErrForeignEntry (wrapped) for a refused entry, or
// a Backend or argument error.
func (x *Cache) Get(ctx context.Context, c *keyring.Cipher, req Request) (Value, bool, error) {
	if layers.Off("cache") { // redteamswitch builds only; see package layers
		return unpartitioned.get(req)
	}
	id, key, err := entryKey(c, req)
	if err != nil {
		return Value{}, false, err
	}
	b, ok, err := x.b.Get(ctx, key)
	if err != nil {
		return Value{}, false, fmt.Errorf("cache: get: %w", err)
	}
	if !ok {
		return Value{}, false, nil
	}
	v, err := openEntry(c, id, key, b)
	if err != nil {
		return Value{}, false, err
	}
	return v, true, nil
}

// Put stores v as the answer to req for the tenant of c. Whether an answer is
// worth caching (complete, deterministic enough) is the caller's decision.
func (x *Cache) Put(ctx context.Context, c *keyring.Cipher, req Request, v Value) error {
	if layers.Off("cache") { // redteamswitch builds only; see package layers
		return unpartitioned.put(req, v)
	}
	id, key, err := entryKey(c, req)
	if err != nil {
		return err
	}
	if err := x.b.Set(ctx, key, sealEntry(c, id, key, appendValue(nil, v)), x.ttl); err != nil {
		return fmt.Errorf("cache: put: %w", err)
	}
	return nil
}

// DeleteTenant drops every entry of incarnation id of a tenant, for
// offboarding. Keys start with the incarnation, so a re-created tenant
// never addresses its predecessor's entries even before they are gone.
func (x *Cache) DeleteTenant(ctx context.Context, id tenant.Incarnation) error {
	if err := tenant.CheckIncarnation(id); err != nil {
		return fmt.Errorf("cache: delete tenant: %w", err)
	}
	if err := x.b.DeleteTenant(ctx, id); err != nil {
		return fmt.Errorf("cache: delete tenant %s: %w", id, err)
	}
	return nil
}

// PromptCacheKey returns the value to send upstream as OpenAI's
// prompt_cache_key (and user), so that the provider's prompt cache is
// partitioned by tenant and profile. It is an HMAC under a key derived from
// the tenant's data key: stable per tenant and profile, different across
// tenants for the same profile name, and revealing neither. c must not be
// nil.
func PromptCacheKey(c *keyring.Cipher, profile string) string {
	m := hmac.New(sha256.New, c.Derive(promptCachePurpose))
	m.Write([]byte(profile))
	var sum [sha256.Size]byte
	return "bh-" + hex.EncodeToString(m.Sum(sum[:0])[:16])
}

// entryKey returns the tenant of c and the key of req for it. It fails
// closed on a nil Cipher or one whose tenant is not a valid id (which could
// contain the ':' separator).
func entryKey(c *keyring.Cipher, req Request) (tenant.Incarnation, string, error) {
	if c == nil {
		return "", "", errors.New("cache: no tenant cipher")
	}
	id := c.Incarnation()
	if err := tenant.CheckIncarnation(id); err != nil {
		return "", "", fmt.Errorf("cache: %w", err)
	}
	m := hmac.New(sha256.New, c.Derive(responsePurpose))
	m.Write(appendCanonical(make([]byte, 0, canonicalSize(req)), req))
	var sum [sha256.Size]byte
	b := make([]byte, 0, len(id)+1+2*sha256.Size)
	b = append(b, id...)
	b = append(b, ':')
	b = hex.AppendEncode(b, m.Sum(sum[:0]))
	return id, string(b), nil
}

// canonicalVersion starts every canonical encoding, so a future format can
// never collide with this one.
const canonicalVersion = "bulkhead/response-cache/v2\x00"

// appendCanonical appends the canonical encoding of r to b: a version tag,
// then every field in a fixed order, each string length-prefixed and each
// list count-prefixed (unsigned varints), so the encoding is unambiguous:
// no two different requests encode alike. Nil and empty lists are the same
// request. Every field of llm.Message and its tool calls is included; a test
// checks by reflection that a change to any field changes the encoding.
func appendCanonical(b []byte, r Request) []byte {
	b = append(b, canonicalVersion...)
	b = appendString(b, r.Profile)
	b = appendString(b, r.Model)
	b = appendString(b, r.PolicyVersion)
	b = appendString(b, r.Options)
	b = binary.AppendVarint(b, int64(r.MaxTokens))
	if r.Temperature == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(*r.Temperature))
	}
	b = binary.AppendUvarint(b, uint64(len(r.Tools)))
	for _, t := range r.Tools {
		b = appendString(b, t)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Messages)))
	for _, m := range r.Messages {
		b = appendString(b, m.Role)
		b = appendString(b, m.Content)
		b = appendString(b, m.Name)
		b = appendString(b, m.ToolCallID)
		b = binary.AppendUvarint(b, uint64(len(m.ToolCalls)))
		for _, tc := range m.ToolCalls {
			b = appendString(b, tc.ID)
			b = appendString(b, tc.Type)
			b = appendString(b, tc.Function.Name)
			b = appendString(b, tc.Function.Arguments)
		}
	}
	return b
}

// canonicalSize bounds the length of r's canonical encoding.
func canonicalSize(r Request) int {
	const v = binary.MaxVarintLen64
	n := len(canonicalVersion) + len(r.Profile) + len(r.Model) + len(r.PolicyVersion) + len(r.Options) + 6*v + 9
	for _, t := range r.Tools {
		n += v + len(t)
	}
	for _, m := range r.Messages {
		n += 5*v + len(m.Role) + len(m.Content) + len(m.Name) + len(m.ToolCallID)
		for _, tc := range m.ToolCalls {
			n += 4*v + len(tc.ID) + len(tc.Type) + len(tc.Function.Name) + len(tc.Function.Arguments)
		}
	}
	return n
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Envelope layout: envelopeVersion, len(incarnation) as one byte (at most
// 63+1+64 bytes), the tenant's incarnation, then the value sealed by the tenant's Cipher under
// sealContext(key).
const envelopeVersion = 1

func sealContext(key string) string { return "cache\x00" + key }

func sealEntry(c *keyring.Cipher, id tenant.Incarnation, key string, plaintext []byte) []byte {
	sealed := c.Seal(plaintext, sealContext(key))
	b := make([]byte, 0, 2+len(id)+len(sealed))
	b = append(b, envelopeVersion, byte(len(id)))
	b = append(b, id...)
	return append(b, sealed...)
}

// openEntry checks that the envelope b names tenant id and that its value
// opens under c for key, and decodes it.
func openEntry(c *keyring.Cipher, id tenant.Incarnation, key string, b []byte) (Value, error) {
	if len(b) < 2 || b[0] != envelopeVersion || len(b) < 2+int(b[1]) {
		return Value{}, fmt.Errorf("%w: malformed envelope", ErrForeignEntry)
	}
	n := int(b[1])
	if string(b[2:2+n]) != string(id) {
		// The other tenant is not named: this error may reach id's audit log.
		return Value{}, fmt.Errorf("%w: envelope records another tenant", ErrForeignEntry)
	}
	pt, err := c.Open(b[2+n:], sealContext(key))
	if err != nil {
		return Value{}, fmt.Errorf("%w: value does not decrypt for this tenant and key", ErrForeignEntry)
	}
	v, ok := parseValue(pt)
	if !ok {
		return Value{}, fmt.Errorf("%w: value does not decode", ErrForeignEntry)
	}
	return v, nil
}

// appendValue appends the encoding of v: its strings length-prefixed, its
// counts as varints. A test checks by reflection that every field of Value
// survives a round trip.
func appendValue(b []byte, v Value) []byte {
	b = appendString(b, v.Content)
	b = appendString(b, v.FinishReason)
	b = appendString(b, v.Model)
	b = appendString(b, v.SystemFingerprint)
	b = binary.AppendVarint(b, int64(v.Usage.PromptTokens))
	b = binary.AppendVarint(b, int64(v.Usage.CompletionTokens))
	b = binary.AppendVarint(b, int64(v.Usage.TotalTokens))
	return binary.AppendVarint(b, int64(v.Usage.PromptTokensDetails.CachedTokens))
}

// parseValue reverses appendValue; it reports false for anything else.
func parseValue(b []byte) (Value, bool) {
	var v Value
	for _, p := range []*string{&v.Content, &v.FinishReason, &v.Model, &v.SystemFingerprint} {
		var ok bool
		if *p, b, ok = cutString(b); !ok {
			return Value{}, false
		}
	}
	for _, p := range []*int{&v.Usage.PromptTokens, &v.Usage.CompletionTokens, &v.Usage.TotalTokens, &v.Usage.PromptTokensDetails.CachedTokens} {
		n, w := binary.Varint(b)
		if w <= 0 || n < math.MinInt || n > math.MaxInt {
			return Value{}, false
		}
		*p, b = int(n), b[w:]
	}
	return v, len(b) == 0
}

func cutString(b []byte) (s string, rest []byte, ok bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return "", nil, false
	}
	return string(b[w : w+int(n)]), b[w+int(n):], true
}
