package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"strings"
	"testing"
)

func TestIssuerValidate(t *testing.T) {
	good := Issuer{Issuer: "https://login.example", Audience: "acme", JWKS: rsaJWKS(t, "k1", &testRSA.PublicKey), Algorithms: []string{"RS256"}}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(*Issuer)
		ok     bool
	}{
		{"good", func(*Issuer) {}, true},
		{"jwks url https", func(i *Issuer) { i.JWKS, i.JWKSURL = nil, "https://login.example/jwks" }, true},
		{"jwks url http loopback", func(i *Issuer) { i.JWKS, i.JWKSURL = nil, "http://127.0.0.1:9/jwks" }, true},
		{"jwks url http remote", func(i *Issuer) { i.JWKS, i.JWKSURL = nil, "http://login.example/jwks" }, false},
		{"both jwks and url", func(i *Issuer) { i.JWKSURL = "https://login.example/jwks" }, false},
		{"neither", func(i *Issuer) { i.JWKS = nil }, false},
		{"HS256", func(i *Issuer) { i.Algorithms = []string{"HS256"} }, false},
		{"none", func(i *Issuer) { i.Algorithms = []string{"none"} }, false},
		{"no algorithms", func(i *Issuer) { i.Algorithms = nil }, false},
		{"no audience", func(i *Issuer) { i.Audience = "" }, false},
		{"issuer not a URL", func(i *Issuer) { i.Issuer = "login" }, false},
		{"small RSA key", func(i *Issuer) { i.JWKS = rsaJWKS(t, "k1", &small.PublicKey) }, false},
		{"key without kid", func(i *Issuer) { i.JWKS = json.RawMessage(strings.Replace(string(i.JWKS), `"kid":"k1",`, "", 1)) }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			i := good
			tc.change(&i)
			err := i.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tc.ok)
			}
		})
	}
}
