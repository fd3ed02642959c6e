package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"slices"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Issuer is one registration of a tenant's end-user token issuer: tokens
// it signs for Audience authenticate as the tenant, for the end user named
// by UserClaim. A registration is never changed, only added or deleted, so
// its ID also names its keys in the JWKS cache.
type Issuer struct {
	ID       string `json:"id"`
	Issuer   string `json:"issuer"`
	Audience string `json:"audience"`
	// JWKS is the issuer's public keys inline; JWKSURL where to fetch them.
	// Exactly one is set.
	JWKS       json.RawMessage `json:"jwks,omitempty"`
	JWKSURL    string          `json:"jwks_url,omitempty"`
	Algorithms []string        `json:"algorithms"`
	// UserClaim names the claim holding the end-user id ("sub" if empty).
	UserClaim string    `json:"user_claim,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// IssuerRecord is a registration with the tenant that made it.
type IssuerRecord struct {
	Tenant      tenant.ID
	Incarnation tenant.Incarnation
	Status      tenant.Status // the owning tenant's status
	Issuer      Issuer
}

// Issuers finds the registrations of an issuer URL, across tenants. A
// deleted registration or tenant is simply absent.
type Issuers interface {
	IssuerRecords(iss string) []IssuerRecord
}

// Algorithms are the signature algorithms a registration may allow: public
// key ones only. HMAC would make the "public" key a shared secret, and none
// is no signature at all.
var Algorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}

const (
	maxJWKSBytes     = 64 << 10
	maxIssuerURLLen  = 2048
	maxAudienceLen   = 512
	minRSABits       = 2048
	defaultUserClaim = "sub"
)

// Validate reports, as an invalid-request error, what is wrong with i.
func (i Issuer) Validate() error {
	if len(i.Issuer) > maxIssuerURLLen {
		return fmt.Errorf("%w: issuer longer than %d bytes", kind.Invalid, maxIssuerURLLen)
	}
	if u, err := url.Parse(i.Issuer); err != nil || u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("%w: issuer must be an absolute URL (the tokens' iss claim)", kind.Invalid)
	}
	if i.Audience == "" || len(i.Audience) > maxAudienceLen {
		return fmt.Errorf("%w: audience is required (at most %d bytes): tokens must name it in aud", kind.Invalid, maxAudienceLen)
	}
	if len(i.Algorithms) == 0 {
		return fmt.Errorf("%w: algorithms is required, e.g. [\"RS256\"]", kind.Invalid)
	}
	for _, alg := range i.Algorithms {
		if !slices.Contains(Algorithms, alg) {
			return fmt.Errorf("%w: algorithm %q is not allowed (one of %v)", kind.Invalid, alg, Algorithms)
		}
	}
	if len(i.UserClaim) > 64 {
		return fmt.Errorf("%w: user_claim longer than 64 bytes", kind.Invalid)
	}
	switch {
	case len(i.JWKS) > 0 && i.JWKSURL != "":
		return fmt.Errorf("%w: give jwks or jwks_url, not both", kind.Invalid)
	case len(i.JWKS) > 0:
		if len(i.JWKS) > maxJWKSBytes {
			return fmt.Errorf("%w: jwks larger than %d bytes", kind.Invalid, maxJWKSBytes)
		}
		if _, err := parseJWKS(i.JWKS); err != nil {
			return fmt.Errorf("%w: jwks: %w", kind.Invalid, err)
		}
	case i.JWKSURL != "":
		if err := checkJWKSURL(i.JWKSURL); err != nil {
			return fmt.Errorf("%w: jwks_url: %w", kind.Invalid, err)
		}
	default:
		return fmt.Errorf("%w: jwks or jwks_url is required", kind.Invalid)
	}
	return nil
}

// userClaim returns the claim naming the end user.
func (i Issuer) userClaim() string {
	if i.UserClaim == "" {
		return defaultUserClaim
	}
	return i.UserClaim
}

// checkJWKSURL admits https URLs, and plain http to this machine only (a
// local issuer in development and tests): keys fetched in the clear could
// be replaced on the way.
func checkJWKSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || len(s) > maxIssuerURLLen {
		return fmt.Errorf("must be an absolute URL")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); h == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
	}
	return fmt.Errorf("must be https (http only to localhost)")
}

// jwk is the part of a JSON Web Key (RFC 7517, 7518) needed for RSA and EC
// signature keys.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS decodes a JWK Set's signature keys by kid. Keys meant for
// encryption are skipped; a set with no usable key, a key without a kid, or
// two keys with one kid are errors, so a token's kid names one key.
func parseJWKS(b []byte) (map[string]crypto.PublicKey, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("not a JWK set: %w", err)
	}
	out := map[string]crypto.PublicKey{}
	for _, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if k.Kid == "" {
			return nil, fmt.Errorf("every key needs a kid")
		}
		if _, dup := out[k.Kid]; dup {
			return nil, fmt.Errorf("kid %q appears twice", k.Kid)
		}
		pub, err := k.publicKey()
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k.Kid, err)
		}
		out[k.Kid] = pub
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no signature keys")
	}
	return out, nil
}

func (k jwk) publicKey() (crypto.PublicKey, error) {
	switch k.Kty {
	case "RSA":
		n, err := b64int(k.N)
		if err != nil {
			return nil, fmt.Errorf("n: %w", err)
		}
		e, err := b64int(k.E)
		if err != nil || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 || e.Bit(0) == 0 {
			return nil, fmt.Errorf("e: not a valid RSA exponent")
		}
		if n.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA keys must have at least %d bits", minRSABits)
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
	case "EC":
		var curve elliptic.Curve
		switch k.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, fmt.Errorf("unsupported curve %q", k.Crv)
		}
		size := (curve.Params().BitSize + 7) / 8
		x, errX := base64.RawURLEncoding.DecodeString(k.X)
		y, errY := base64.RawURLEncoding.DecodeString(k.Y)
		if errX != nil || errY != nil || len(x) != size || len(y) != size {
			return nil, fmt.Errorf("x and y must be %d bytes of base64url", size)
		}
		// ParseUncompressedPublicKey checks the point is on the curve.
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, fmt.Errorf("not a point on %s: %w", k.Crv, err)
		}
		return pub, nil
	}
	return nil, fmt.Errorf("unsupported key type %q (RSA or EC)", k.Kty)
}

func b64int(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("not base64url")
	}
	return new(big.Int).SetBytes(b), nil
}
