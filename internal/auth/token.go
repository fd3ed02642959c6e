package auth

import (
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// TokenOptions configure end-user token verification. Zero values are the
// defaults.
type TokenOptions struct {
	// Client fetches JWKS by URL; nil is a client with FetchTimeout.
	Client *http.Client
	// FetchTimeout bounds one JWKS fetch (default 5 s).
	FetchTimeout time.Duration
	// RefreshEvery is how long fetched keys are used before they are
	// fetched again (default 5 min).
	RefreshEvery time.Duration
	// MinRefresh is the least time between two fetches of one JWKS, however
	// many unknown kids or failures come (default 30 s).
	MinRefresh time.Duration
	// MaxStale is how long keys may be used past RefreshEvery while the
	// JWKS URL fails to answer (default 1 h); after that tokens are refused.
	MaxStale time.Duration
	// Leeway is the clock skew allowed on exp and nbf (default 30 s).
	Leeway time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// WithIssuers makes the Authenticator accept end-user tokens (JWTs) from
// the issuers that tenants registered in issuers, beside API keys.
func WithIssuers(issuers Issuers, o TokenOptions) Option {
	return func(a *Authenticator) {
		if o.FetchTimeout <= 0 {
			o.FetchTimeout = 5 * time.Second
		}
		if o.Client == nil {
			o.Client = &http.Client{Timeout: o.FetchTimeout}
		}
		if o.RefreshEvery <= 0 {
			o.RefreshEvery = 5 * time.Minute
		}
		if o.MinRefresh <= 0 {
			o.MinRefresh = 30 * time.Second
		}
		if o.MaxStale <= 0 {
			o.MaxStale = time.Hour
		}
		if o.Leeway <= 0 {
			o.Leeway = 30 * time.Second
		}
		if o.Now == nil {
			o.Now = time.Now
		}
		a.issuers = issuers
		a.jwks = &jwksCache{opts: o, sets: map[string]*keySet{}}
		a.validMethods = slices.Clone(Algorithms)
	}
}

// looksLikeJWT reports whether a bearer credential is a compact JWS rather
// than an API key: our keys start with KeyPrefix and hold no dots.
func looksLikeJWT(token string) bool {
	return !strings.HasPrefix(token, KeyPrefix) && strings.Count(token, ".") == 2
}

// tokenScope verifies an end-user token and returns its Scope. The token's
// unverified iss and aud only choose the registration; the token must then
// verify with that registration's keys and algorithms, and its claims
// against that registration's issuer and audience.
func (a *Authenticator) tokenScope(ctx context.Context, raw string) (Scope, error) {
	sum := sha256.Sum256([]byte(raw))
	if scope, ok := a.verified.scope(ctx, a, sum); ok {
		return scope, nil
	}
	var rec IssuerRecord
	var kid string
	var key crypto.PublicKey
	claims := jwt.MapClaims{}
	parser := jwt.NewParser(jwt.WithValidMethods(a.validMethods), jwt.WithoutClaimsValidation())
	_, err := parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		var err error
		if rec, err = a.registration(t.Claims); err != nil {
			return nil, err
		}
		if !slices.Contains(rec.Issuer.Algorithms, t.Method.Alg()) {
			return nil, fmt.Errorf("algorithm %s is not allowed for this issuer", t.Method.Alg())
		}
		kid, _ = t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("token has no kid")
		}
		key, err = a.jwks.key(ctx, rec, kid)
		return key, err
	})
	if err != nil {
		return Scope{}, tokenError(err)
	}
	o := a.jwks.opts
	v := jwt.NewValidator(jwt.WithIssuer(rec.Issuer.Issuer), jwt.WithAudience(rec.Issuer.Audience),
		jwt.WithExpirationRequired(), jwt.WithLeeway(o.Leeway), jwt.WithTimeFunc(o.Now))
	if err := v.Validate(claims); err != nil {
		return Scope{}, tokenError(err)
	}
	sub, _ := claims[rec.Issuer.userClaim()].(string)
	user, err := tenant.ParseUserID(sub)
	if err != nil || user == "" {
		return Scope{}, fmt.Errorf("%w: invalid token: claim %q must name the end user", kind.Unauthenticated, rec.Issuer.userClaim())
	}
	if rec.Status != tenant.StatusActive {
		return Scope{}, fmt.Errorf("%w: tenant is %s", kind.Denied, rec.Status)
	}
	if rec.Incarnation.Tenant() != rec.Tenant {
		return Scope{}, fmt.Errorf("issuer %s: incarnation %q is not of tenant %s", rec.Issuer.ID, rec.Incarnation, rec.Tenant)
	}
	scope := Scope{tenant: rec.Tenant, inc: rec.Incarnation, user: user, fromToken: true}
	exp, _ := claims.GetExpirationTime()
	nbf, _ := claims.GetNotBefore()
	aud, _ := claims.GetAudience()
	e := verifiedToken{scope: scope, iss: rec.Issuer.Issuer, aud: aud, issuerID: rec.Issuer.ID, kid: kid, key: key, exp: exp.Time}
	if nbf != nil {
		e.nbf = nbf.Time
	}
	a.verified.put(sum, e)
	return scope, nil
}

// maxVerified bounds the cache of verified tokens; when full it is emptied.
const maxVerified = 10_000

// verifiedTokens remembers tokens whose signature and claims checked out,
// by their SHA-256, so a front end sending one token with every request
// pays for the signature once. A hit is checked again against what can
// change: the registration must still be the one that verified it (not
// deleted, no second match), its tenant active, exp and nbf hold now, and
// the registration's keys (refreshed as for any token) still hold the key
// that verified it under its kid: a key the issuer dropped, or keys too
// stale to use, refuse a token seen before as they refuse a new one.
type verifiedTokens struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]verifiedToken
}

type verifiedToken struct {
	scope    Scope
	iss      string
	aud      []string
	issuerID string
	kid      string
	key      crypto.PublicKey
	exp, nbf time.Time
}

// equalKey reports whether a and b are the same public key.
func equalKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

func (v *verifiedTokens) scope(ctx context.Context, a *Authenticator, sum [sha256.Size]byte) (Scope, bool) {
	v.mu.Lock()
	e, ok := v.m[sum]
	v.mu.Unlock()
	if !ok {
		return Scope{}, false
	}
	now, leeway := a.jwks.opts.Now(), a.jwks.opts.Leeway
	if !now.Before(e.exp.Add(leeway)) || now.Before(e.nbf.Add(-leeway)) {
		return Scope{}, false
	}
	rec, err := a.registration(jwt.RegisteredClaims{Issuer: e.iss, Audience: e.aud})
	if err != nil || rec.Issuer.ID != e.issuerID || rec.Incarnation != e.scope.inc || rec.Status != tenant.StatusActive {
		return Scope{}, false
	}
	if key, err := a.jwks.key(ctx, rec, e.kid); err != nil || !equalKey(key, e.key) {
		return Scope{}, false
	}
	return e.scope, true
}

func (v *verifiedTokens) put(sum [sha256.Size]byte, e verifiedToken) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil || len(v.m) >= maxVerified {
		v.m = map[[sha256.Size]byte]verifiedToken{}
	}
	v.m[sum] = e
}

// registration picks the one registration whose issuer is the token's iss
// and whose audience the token's aud names. None, or more than one (two
// tenants that registered one issuer and audience), refuses the token: it
// must never be guessed which tenant a token is for.
func (a *Authenticator) registration(c jwt.Claims) (IssuerRecord, error) {
	iss, err := c.GetIssuer()
	if err != nil || iss == "" {
		return IssuerRecord{}, errors.New("token has no iss")
	}
	aud, err := c.GetAudience()
	if err != nil {
		return IssuerRecord{}, errors.New("token aud is malformed")
	}
	var found []IssuerRecord
	for _, r := range a.issuers.IssuerRecords(iss) {
		if r.Issuer.Issuer == iss && slices.Contains(aud, r.Issuer.Audience) {
			found = append(found, r)
		}
	}
	switch len(found) {
	case 0:
		return IssuerRecord{}, errors.New("no tenant registered this token's issuer and audience")
	case 1:
		return found[0], nil
	}
	return IssuerRecord{}, errors.New("the token's issuer and audience match several registrations")
}

// tokenError turns a failed verification into a 401 that says why, without
// echoing the token.
func tokenError(err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return fmt.Errorf("%w: token has expired", kind.Unauthenticated)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return fmt.Errorf("%w: token is not valid yet", kind.Unauthenticated)
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fmt.Errorf("%w: malformed token", kind.Unauthenticated)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return fmt.Errorf("%w: invalid token: signature is invalid", kind.Unauthenticated)
	}
	return fmt.Errorf("%w: invalid token: %w", kind.Unauthenticated, err)
}

// jwksCache holds the registrations' public keys, parsed, by registration.
type jwksCache struct {
	opts TokenOptions
	mu   sync.Mutex
	sets map[string]*keySet
}

// keySet is one registration's keys. Its own mutex serialises fetches, so a
// slow JWKS URL holds up only its own issuer's tokens.
type keySet struct {
	mu      sync.Mutex
	keys    map[string]crypto.PublicKey
	fetched time.Time // when keys were fetched; zero before the first success
	tried   time.Time // the last fetch attempt
	err     error     // the last fetch's failure
}

// key returns the key kid of rec's JWKS. Inline keys are parsed once. Keys
// by URL are fetched on first use, again after RefreshEvery, and for an
// unknown kid, never more often than MinRefresh; if the URL fails, the old
// keys serve until MaxStale past their refresh, then nothing does.
func (c *jwksCache) key(ctx context.Context, rec IssuerRecord, kid string) (crypto.PublicKey, error) {
	id := string(rec.Incarnation) + "\x00" + rec.Issuer.ID
	c.mu.Lock()
	s := c.sets[id]
	if s == nil {
		s = &keySet{}
		c.sets[id] = s
	}
	c.mu.Unlock()

	s.mu.Lock()
	defer s.mu.Unlock()
	if rec.Issuer.JWKSURL == "" {
		if s.keys == nil {
			keys, err := parseJWKS(rec.Issuer.JWKS)
			if err != nil {
				return nil, fmt.Errorf("issuer keys: %w", err)
			}
			s.keys = keys
		}
		return s.lookup(kid)
	}
	now := c.opts.Now()
	_, known := s.keys[kid]
	due := s.fetched.IsZero() || now.Sub(s.fetched) >= c.opts.RefreshEvery || !known
	if due && (s.tried.IsZero() || now.Sub(s.tried) >= c.opts.MinRefresh) {
		s.tried = now
		keys, err := c.fetch(ctx, rec.Issuer.JWKSURL)
		if err == nil {
			s.keys, s.fetched, s.err = keys, now, nil
		} else {
			s.err = err
		}
	}
	if s.fetched.IsZero() || now.Sub(s.fetched) >= c.opts.RefreshEvery+c.opts.MaxStale {
		if s.err != nil {
			return nil, fmt.Errorf("issuer keys unavailable: %w", s.err)
		}
		return nil, errors.New("issuer keys unavailable")
	}
	return s.lookup(kid)
}

func (s *keySet) lookup(kid string) (crypto.PublicKey, error) {
	k, ok := s.keys[kid]
	if !ok {
		return nil, fmt.Errorf("kid %q is not in the issuer's JWKS", kid)
	}
	return k, nil
}

// fetch reads a JWKS by URL with a timeout and a size limit.
func (c *jwksCache) fetch(ctx context.Context, url string) (map[string]crypto.PublicKey, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.opts.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch jwks: status %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	if len(b) > maxJWKSBytes {
		return nil, fmt.Errorf("fetch jwks: larger than %d bytes", maxJWKSBytes)
	}
	keys, err := parseJWKS(b)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	return keys, nil
}
