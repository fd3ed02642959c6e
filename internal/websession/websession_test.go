package websession

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

func testCodec(t *testing.T, now *time.Time) *Codec {
	t.Helper()
	c, err := New(bytes.Repeat([]byte{7}, 32), func() time.Time { return *now })
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSealOpen(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	c := testCodec(t, &now)
	for _, in := range []Session{{Operator: true}, {Tenant: "acme", Incarnation: "acme.1", Key: "k1"}} {
		s, err := c.Start(in)
		if err != nil {
			t.Fatal(err)
		}
		v, err := c.Seal(s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Open(v)
		if err != nil || got != s {
			t.Errorf("Open(Seal(%+v)) = %+v, %v", s, got, err)
		}
		if !got.ExpiresAt.Equal(now.Add(Lifetime)) {
			t.Errorf("expires %v, want %v", got.ExpiresAt, now.Add(Lifetime))
		}
	}
}

func TestOpenRefuses(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	c := testCodec(t, &now)
	s, _ := c.Start(Session{Tenant: "acme", Incarnation: "acme.1", Key: "k1"})
	good, _ := c.Seal(s)
	body, sig, _ := strings.Cut(good, ".")
	forge := func(raw string) string {
		return base64.RawURLEncoding.EncodeToString([]byte(raw)) + "." + sig
	}
	other, _ := New(bytes.Repeat([]byte{8}, 32), func() time.Time { return now })
	otherValue, _ := other.Seal(s)
	both, _ := c.Seal(Session{ID: "x", Operator: true, Tenant: "acme", IssuedAt: now, ExpiresAt: now.Add(time.Hour)})
	long, _ := c.Seal(Session{ID: "x", Operator: true, IssuedAt: now, ExpiresAt: now.Add(2 * Lifetime)})
	for name, v := range map[string]string{
		"empty":               "",
		"no signature":        body,
		"operator swapped in": forge(strings.Replace(string(must(base64.RawURLEncoding.DecodeString(body))), `"t":"acme"`, `"op":true`, 1)),
		"other key":           otherValue,
		"two principals":      both,
		"too long a life":     long,
	} {
		if _, err := c.Open(v); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Open = %v, want ErrInvalid", name, err)
		}
	}
	now = now.Add(Lifetime)
	if _, err := c.Open(good); !errors.Is(err, ErrInvalid) {
		t.Errorf("expired: Open = %v, want ErrInvalid", err)
	}
}

func TestCSRF(t *testing.T) {
	now := time.Now()
	c := testCodec(t, &now)
	a, _ := c.Start(Session{Operator: true})
	b, _ := c.Start(Session{Operator: true})
	if !c.CheckCSRF(a, c.CSRF(a)) {
		t.Error("a session's own token refused")
	}
	for name, tok := range map[string]string{"empty": "", "another session's": c.CSRF(b), "garbage": "not base64!", "truncated": c.CSRF(a)[:10]} {
		if c.CheckCSRF(a, tok) {
			t.Errorf("%s token accepted", name)
		}
	}
}

func TestNewShortKey(t *testing.T) {
	if _, err := New(make([]byte, 16), nil); err == nil {
		t.Error("a 16-byte key was accepted")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
