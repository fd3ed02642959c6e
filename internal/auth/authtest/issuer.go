package authtest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Issuer is a token issuer for tests: an RSA key made in the test, its
// JWKS, and tokens signed with it.
type Issuer struct {
	URL string // the iss claim
	Kid string
	Key *rsa.PrivateKey
}

// NewIssuer makes an issuer named url with a fresh 2048-bit key.
func NewIssuer(t testing.TB, url string) *Issuer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &Issuer{URL: url, Kid: "test-key-1", Key: k}
}

// JWKS is the issuer's public key as a JWK Set.
func (i *Issuer) JWKS() json.RawMessage {
	enc := base64.RawURLEncoding.EncodeToString
	b, _ := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "RSA", "kid": i.Kid, "use": "sig", "alg": "RS256",
		"n": enc(i.Key.N.Bytes()), "e": enc(big.NewInt(int64(i.Key.E)).Bytes())}}})
	return b
}

// Token signs an RS256 token for end user sub and audience aud, valid for
// ttl from now (a negative ttl makes an expired one). extra claims are
// added or replace the standard ones.
func (i *Issuer) Token(t testing.TB, sub, aud string, ttl time.Duration, extra map[string]any) string {
	t.Helper()
	s, err := i.Sign(sub, aud, ttl, extra)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Sign is Token for code that cannot fail a test (an HTTP handler).
func (i *Issuer) Sign(sub, aud string, ttl time.Duration, extra map[string]any) (string, error) {
	now := time.Now()
	c := jwt.MapClaims{"iss": i.URL, "sub": sub, "aud": aud, "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
	for k, v := range extra {
		c[k] = v
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	tok.Header["kid"] = i.Kid
	return tok.SignedString(i.Key)
}
