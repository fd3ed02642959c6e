// Package websession seals console sessions into stateless cookies: an
// HMAC-signed value holding who signed in, when, and until when, so that any
// replica holding the same key accepts a session another one issued. It
// holds no credential: a tenant session names a key id, never the key, and
// an operator session names no token at all.
package websession

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Lifetime is how long a session lasts after sign-in.
const Lifetime = 8 * time.Hour

// Session is one signed-in console user: the operator, or a tenant by the
// key it signed in with.
type Session struct {
	ID          string             `json:"sid"`
	Operator    bool               `json:"op,omitempty"`
	Tenant      tenant.ID          `json:"t,omitempty"`
	Incarnation tenant.Incarnation `json:"inc,omitempty"`
	Key         tenant.KeyID       `json:"k,omitempty"`
	IssuedAt    time.Time          `json:"iat"`
	ExpiresAt   time.Time          `json:"exp"`
}

// ErrInvalid is a cookie that is malformed, forged or expired.
var ErrInvalid = errors.New("invalid or expired console session")

// Codec seals and opens sessions with one key.
type Codec struct {
	key []byte
	now func() time.Time
}

// New returns a Codec keyed with key (at least 32 bytes). now may be nil
// for time.Now.
func New(key []byte, now func() time.Time) (*Codec, error) {
	if len(key) < 32 {
		return nil, fmt.Errorf("console session key must be at least 32 bytes")
	}
	if now == nil {
		now = time.Now
	}
	return &Codec{key: key, now: now}, nil
}

// Start returns a new session for s's principal, issued now with a fresh
// random id.
func (c *Codec) Start(s Session) (Session, error) {
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return Session{}, fmt.Errorf("session id: %w", err)
	}
	s.ID = base64.RawURLEncoding.EncodeToString(raw[:])
	s.IssuedAt = c.now().UTC().Truncate(time.Second)
	s.ExpiresAt = s.IssuedAt.Add(Lifetime)
	return s, nil
}

func (c *Codec) mac(purpose string, b []byte) []byte {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write(b)
	return m.Sum(nil)
}

// Seal returns the cookie value of s.
func (c *Codec) Seal(s Session) (string, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("seal session: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b) + "." + base64.RawURLEncoding.EncodeToString(c.mac("session", b)), nil
}

// Open checks a cookie value's signature and expiry and returns its session.
func (c *Codec) Open(value string) (Session, error) {
	body, sig, ok := strings.Cut(value, ".")
	if !ok {
		return Session{}, ErrInvalid
	}
	b, err1 := base64.RawURLEncoding.DecodeString(body)
	mac, err2 := base64.RawURLEncoding.DecodeString(sig)
	if err1 != nil || err2 != nil || !hmac.Equal(mac, c.mac("session", b)) {
		return Session{}, ErrInvalid
	}
	var s Session
	if err := json.Unmarshal(b, &s); err != nil || s.ID == "" {
		return Session{}, ErrInvalid
	}
	now := c.now()
	if !now.Before(s.ExpiresAt) || now.Add(time.Minute).Before(s.IssuedAt) || s.ExpiresAt.Sub(s.IssuedAt) > Lifetime {
		return Session{}, ErrInvalid
	}
	if s.Operator == (s.Tenant != "") {
		return Session{}, ErrInvalid // exactly one principal
	}
	return s, nil
}

// CSRF returns the anti-forgery token of s: bound to its session id, so a
// token from one session is worthless in another.
func (c *Codec) CSRF(s Session) string {
	return base64.RawURLEncoding.EncodeToString(c.mac("csrf", []byte(s.ID)))
}

// CheckCSRF reports whether token is s's anti-forgery token, in constant
// time.
func (c *Codec) CheckCSRF(s Session, token string) bool {
	got, err := base64.RawURLEncoding.DecodeString(token)
	return err == nil && token != "" && hmac.Equal(got, c.mac("csrf", []byte(s.ID)))
}
