package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// issuerList is an Issuers over fixed records.
type issuerList []IssuerRecord

func (l issuerList) IssuerRecords(iss string) []IssuerRecord {
	var out []IssuerRecord
	for _, r := range l {
		if r.Issuer.Issuer == iss {
			out = append(out, r)
		}
	}
	return out
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// rsaJWKS returns a JWK Set holding pub as kid.
func rsaJWKS(t testing.TB, kid string, pub *rsa.PublicKey) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "RSA", "kid": kid, "use": "sig",
		"n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes())}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ecJWKS(t testing.TB, kid string, pub *ecdsa.PublicKey) json.RawMessage {
	t.Helper()
	raw, err := pub.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	n := (len(raw) - 1) / 2
	b, _ := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "EC", "kid": kid, "crv": "P-256",
		"x": b64(raw[1 : 1+n]), "y": b64(raw[1+n:])}}})
	return b
}

var (
	testRSA  = mustRSA()
	testRSA2 = mustRSA()
)

func mustRSA() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

func sign(t testing.TB, method jwt.SigningMethod, kid string, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claimsFor(iss, aud, sub string, now time.Time) jwt.MapClaims {
	return jwt.MapClaims{"iss": iss, "aud": aud, "sub": sub, "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
}

func record(id tenant.ID, iss Issuer) IssuerRecord {
	return IssuerRecord{Tenant: id, Incarnation: tenant.NewIncarnation(id, "s-"+string(id)), Status: tenant.StatusActive, Issuer: iss}
}

func tokenAuth(t testing.TB, now time.Time, recs ...IssuerRecord) *Authenticator {
	t.Helper()
	a, err := New(oneKeyless{}, "admin-token-0123456789", WithIssuers(issuerList(recs), TokenOptions{Now: func() time.Time { return now }}))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

type oneKeyless struct{}

func (oneKeyless) KeyRecord(tenant.KeyID) (KeyRecord, bool) { return KeyRecord{}, false }

func bearerRequest(token string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	return r
}

func TestTokenScope(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	const iss = "https://login.example"
	acme := record("acme", Issuer{ID: "iss_a", Issuer: iss, Audience: "acme-app", JWKS: rsaJWKS(t, "k1", &testRSA.PublicKey), Algorithms: []string{"RS256"}})
	// globex registered the same issuer with another audience.
	globex := record("globex", Issuer{ID: "iss_g", Issuer: iss, Audience: "globex-app", JWKS: rsaJWKS(t, "k1", &testRSA.PublicKey), Algorithms: []string{"RS256", "ES256"}})
	suspended := record("initech", Issuer{ID: "iss_i", Issuer: "https://initech.example", Audience: "initech", JWKS: rsaJWKS(t, "k1", &testRSA.PublicKey), Algorithms: []string{"RS256"}})
	suspended.Status = tenant.StatusSuspended
	a := tokenAuth(t, now, acme, globex, suspended)

	ok := claimsFor(iss, "acme-app", "alice", now)
	with := func(k string, v any) jwt.MapClaims {
		c := jwt.MapClaims{}
		for kk, vv := range ok {
			c[kk] = vv
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&testRSA.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	noneToken := sign(t, jwt.SigningMethodNone, "k1", jwt.UnsafeAllowNoneSignatureType, ok)

	tests := []struct {
		name       string
		token      string
		wantTenant tenant.ID
		wantUser   tenant.UserID
		wantKind   error
		wantMsg    string
	}{
		{"valid", sign(t, jwt.SigningMethodRS256, "k1", testRSA, ok), "acme", "alice", nil, ""},
		{"same issuer, other audience is the other tenant", sign(t, jwt.SigningMethodRS256, "k1", testRSA, with("aud", "globex-app")), "globex", "alice", nil, ""},
		{"audience list naming both is ambiguous", sign(t, jwt.SigningMethodRS256, "k1", testRSA, with("aud", []string{"acme-app", "globex-app"})), "", "", kind.Unauthenticated, "several"},
		{"expired", sign(t, jwt.SigningMethodRS256, "k1", testRSA, with("exp", now.Add(-time.Hour).Unix())), "", "", kind.Unauthenticated, "expired"},
		{"no exp", sign(t, jwt.SigningMethodRS256, "k1", testRSA, with("exp", nil)), "", "", kind.Unauthenticated, "exp"},
		{"not yet valid", sign(t, jwt.SigningMethodRS256, "k1", testRSA, with("nbf", now.Add(time.Hour).Unix())), "", "", kind.Unauthenticated, "not valid yet"},
		{"nbf within leeway", sign(t, jwt.SigningMethodRS256, "k1", testRSA, with("nbf", now.Add(10*time.Second).Unix())), "acme", "alice", nil, ""},
		{"wrongly signed", sign(t, jwt.SigningMethodRS256, "k1", testRSA2, ok), "", "", kind.Unauthenticated, "signature"},
		{"wrong audience", sign(t, jwt.SigningMethodRS256, "k1", testRSA, with("aud", "someone-else")), "", "", kind.Unauthenticated, "audience"},
		{"wrong issuer", sign(t, jwt.SigningMethodRS256, "k1", testRSA, with("iss", "https://evil.example")), "", "", kind.Unauthenticated, "issuer"},
		{"alg none", noneToken, "", "", kind.Unauthenticated, ""},
		{"HS256 with the public key bytes", sign(t, jwt.SigningMethodHS256, "k1", pubDER, ok), "", "", kind.Unauthenticated, ""},
		{"alg not in the registration", sign(t, jwt.SigningMethodRS512, "k1", testRSA, ok), "", "", kind.Unauthenticated, "not allowed"},
		{"ES256 with a key not in the JWKS", sign(t, jwt.SigningMethodES256, "k1", ec, with("aud", "globex-app")), "", "", kind.Unauthenticated, ""},
		{"unknown kid", sign(t, jwt.SigningMethodRS256, "k9", testRSA, ok), "", "", kind.Unauthenticated, "kid"},
		{"no kid", sign(t, jwt.SigningMethodRS256, "", testRSA, ok), "", "", kind.Unauthenticated, "kid"},
		{"no subject", sign(t, jwt.SigningMethodRS256, "k1", testRSA, with("sub", nil)), "", "", kind.Unauthenticated, "sub"},
		{"suspended tenant", sign(t, jwt.SigningMethodRS256, "k1", testRSA, claimsFor("https://initech.example", "initech", "bob", now)), "", "", kind.Denied, "suspended"},
		{"garbage", "a.b.c", "", "", kind.Unauthenticated, "malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			scope, err := a.Tenant(bearerRequest(tc.token))
			if tc.wantKind != nil {
				if !errors.Is(err, tc.wantKind) || !strings.Contains(err.Error(), tc.wantMsg) {
					t.Fatalf("got scope %v, err %v; want %v containing %q", scope.Tenant(), err, tc.wantKind, tc.wantMsg)
				}
				if scope.Valid() {
					t.Fatalf("refused token gave a valid scope for %s", scope.Tenant())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if scope.Tenant() != tc.wantTenant || scope.User() != tc.wantUser || !scope.FromToken() || scope.Key() != "" {
				t.Fatalf("got tenant %s user %s fromToken %v, want %s %s true", scope.Tenant(), scope.User(), scope.FromToken(), tc.wantTenant, tc.wantUser)
			}
		})
	}
}

func TestTokenUserCannotBeChanged(t *testing.T) {
	now := time.Now()
	acme := record("acme", Issuer{ID: "iss_a", Issuer: "https://login.example", Audience: "acme", JWKS: rsaJWKS(t, "k1", &testRSA.PublicKey), Algorithms: []string{"RS256"}})
	scope, err := tokenAuth(t, now, acme).Tenant(bearerRequest(sign(t, jwt.SigningMethodRS256, "k1", testRSA, claimsFor("https://login.example", "acme", "alice", now))))
	if err != nil {
		t.Fatal(err)
	}
	if got := scope.WithUser("mallory").User(); got != "alice" {
		t.Fatalf("WithUser changed a token's user to %s", got)
	}
	if _, err := scope.ForUser("mallory"); !errors.Is(err, kind.Invalid) {
		t.Fatalf("ForUser(another user) = %v, want invalid", err)
	}
	for _, u := range []tenant.UserID{"", "alice"} {
		s, err := scope.ForUser(u)
		if err != nil || s.User() != "alice" {
			t.Fatalf("ForUser(%q) = %s, %v; want alice", u, s.User(), err)
		}
	}
}

func TestCustomUserClaim(t *testing.T) {
	now := time.Now()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rec := record("acme", Issuer{ID: "iss_a", Issuer: "https://login.example", Audience: "acme", JWKS: ecJWKS(t, "e1", &ec.PublicKey), Algorithms: []string{"ES256"}, UserClaim: "email"})
	c := claimsFor("https://login.example", "acme", "opaque-sub", now)
	c["email"] = "alice@example.com"
	scope, err := tokenAuth(t, now, rec).Tenant(bearerRequest(sign(t, jwt.SigningMethodES256, "e1", ec, c)))
	if err != nil {
		t.Fatal(err)
	}
	if scope.User() != "alice@example.com" {
		t.Fatalf("user = %s, want the email claim", scope.User())
	}
}

func TestJWKSByURL(t *testing.T) {
	var fetches atomic.Int32
	jwks := rsaJWKS(t, "k1", &testRSA.PublicKey)
	var current atomic.Value
	current.Store([]byte(jwks))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if string(current.Load().([]byte)) == "fail" {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.Write(current.Load().([]byte))
	}))
	defer srv.Close()
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	clock := now
	rec := record("acme", Issuer{ID: "iss_a", Issuer: "https://login.example", Audience: "acme", JWKSURL: srv.URL, Algorithms: []string{"RS256"}})
	a, err := New(oneKeyless{}, "admin-token-0123456789", WithIssuers(issuerList{rec}, TokenOptions{
		Now: func() time.Time { return clock }, RefreshEvery: time.Minute, MinRefresh: 10 * time.Second, MaxStale: time.Minute}))
	if err != nil {
		t.Fatal(err)
	}
	tok := func(kid string, key *rsa.PrivateKey) string {
		return sign(t, jwt.SigningMethodRS256, kid, key, claimsFor("https://login.example", "acme", "alice", clock))
	}
	check := func(step, token string, wantOK bool, wantFetches int32) {
		t.Helper()
		_, err := a.Tenant(bearerRequest(token))
		if (err == nil) != wantOK {
			t.Fatalf("%s: err = %v, want ok %v", step, err, wantOK)
		}
		if got := fetches.Load(); got != wantFetches {
			t.Fatalf("%s: %d fetches, want %d", step, got, wantFetches)
		}
	}
	check("first use fetches", tok("k1", testRSA), true, 1)
	check("cached", tok("k1", testRSA), true, 1)
	// A rotated key: the unknown kid triggers one refresh, rate-limited.
	current.Store([]byte(rsaJWKS(t, "k2", &testRSA2.PublicKey)))
	check("unknown kid within MinRefresh", tok("k2", testRSA2), false, 1)
	clock = clock.Add(11 * time.Second)
	check("unknown kid refreshes", tok("k2", testRSA2), true, 2)
	check("a flood of unknown kids is one refresh per MinRefresh", tok("k3", testRSA2), false, 2)
	check("old kid gone", tok("k1", testRSA), false, 2)
	// The URL fails: keys serve until MaxStale past refresh, then nothing.
	current.Store([]byte("fail"))
	clock = clock.Add(90 * time.Second)
	check("stale keys while the URL fails", tok("k2", testRSA2), true, 3)
	clock = clock.Add(60 * time.Second)
	check("too stale: fail closed", tok("k2", testRSA2), false, 4)
}

// BenchmarkTokenVerify measures authenticating one request by an end-user
// token with the JWKS cached: a token seen before, and one seen first.
func BenchmarkTokenVerify(b *testing.B) {
	for _, bc := range []struct {
		name   string
		method jwt.SigningMethod
	}{{"RS256", jwt.SigningMethodRS256}, {"ES256", jwt.SigningMethodES256}} {
		b.Run(bc.name, func(b *testing.B) {
			now := time.Now()
			ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			var jwks json.RawMessage
			var key any
			if bc.method == jwt.SigningMethodES256 {
				jwks, key = ecJWKS(b, "k1", &ec.PublicKey), ec
			} else {
				jwks, key = rsaJWKS(b, "k1", &testRSA.PublicKey), testRSA
			}
			rec := record("acme", Issuer{ID: "iss_a", Issuer: "https://login.example", Audience: "acme", JWKS: jwks, Algorithms: []string{bc.method.Alg()}})
			a := tokenAuth(b, now, rec)
			r := bearerRequest(sign(b, bc.method, "k1", key, claimsFor("https://login.example", "acme", "alice", now)))
			if _, err := a.Tenant(r); err != nil {
				b.Fatal(err)
			}
			b.Run("repeated", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := a.Tenant(r); err != nil {
						b.Fatal(err)
					}
				}
			})
			// Each token seen for the first time: signature checked.
			b.Run("first-use", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					a.verified.m = nil
					if _, err := a.Tenant(r); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// TestVerifiedTokenFollowsJWKS attacks the cache of verified tokens: a token
// seen once must not outlive its signing key. The issuer drops a leaked key
// from its JWKS, or its JWKS URL stays down past MaxStale; a token signed by
// that key, already verified, is refused from then on like a new one.
func TestVerifiedTokenFollowsJWKS(t *testing.T) {
	var current atomic.Value
	current.Store([]byte(rsaJWKS(t, "k1", &testRSA.PublicKey)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if string(current.Load().([]byte)) == "fail" {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.Write(current.Load().([]byte))
	}))
	defer srv.Close()
	start := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name   string
		jwks   string // what the URL serves after the token was verified
		wantOK bool
	}{
		{"the key stays", string(rsaJWKS(t, "k1", &testRSA.PublicKey)), true},
		{"the key left the JWKS", string(rsaJWKS(t, "k2", &testRSA2.PublicKey)), false},
		{"the kid now names another key", string(rsaJWKS(t, "k1", &testRSA2.PublicKey)), false},
		{"the JWKS URL is down past MaxStale", "fail", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			current.Store([]byte(rsaJWKS(t, "k1", &testRSA.PublicKey)))
			clock := start
			rec := record("acme", Issuer{ID: "iss_a", Issuer: "https://login.example", Audience: "acme", JWKSURL: srv.URL, Algorithms: []string{"RS256"}})
			a, err := New(oneKeyless{}, "admin-token-0123456789", WithIssuers(issuerList{rec}, TokenOptions{
				Now: func() time.Time { return clock }, RefreshEvery: time.Minute, MinRefresh: 10 * time.Second, MaxStale: time.Minute}))
			if err != nil {
				t.Fatal(err)
			}
			claims := claimsFor("https://login.example", "acme", "alice", start)
			claims["exp"] = start.Add(24 * time.Hour).Unix()
			token := sign(t, jwt.SigningMethodRS256, "k1", testRSA, claims)
			if _, err := a.Tenant(bearerRequest(token)); err != nil {
				t.Fatalf("first use: %v", err)
			}
			current.Store([]byte(tt.jwks))
			// Past RefreshEvery and MaxStale: the keys are what the URL
			// serves now, or none.
			clock = start.Add(3 * time.Minute)
			if _, err := a.Tenant(bearerRequest(token)); (err == nil) != tt.wantOK {
				t.Fatalf("the verified token again: err = %v, want ok %v", err, tt.wantOK)
			}
		})
	}
}
