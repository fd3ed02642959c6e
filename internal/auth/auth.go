package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/layers"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/websession"
)

// KeyRecord is what the control plane knows about one API key.
type KeyRecord struct {
	Tenant tenant.ID
	// Incarnation is the owning tenant's current incarnation.
	Incarnation tenant.Incarnation
	Hash        KeyHash
	Status      tenant.Status // the owning tenant's status
	ExpiresAt   time.Time     // zero: the key never expires
}

// Keys finds API keys by id. A revoked key or deleted tenant is simply absent.
type Keys interface {
	KeyRecord(id tenant.KeyID) (KeyRecord, bool)
}

// Authenticator checks bearer credentials.
type Authenticator struct {
	keys  Keys
	admin [sha256.Size]byte

	// End-user tokens, if WithIssuers was given.
	issuers      Issuers
	jwks         *jwksCache
	verified     verifiedTokens
	validMethods []string

	// Console sessions (console.go).
	sessions *websession.Codec
}

// Option adds to what an Authenticator accepts.
type Option func(*Authenticator)

// New returns an Authenticator for tenant keys from keys and the operator's
// admin token. An empty admin token is refused: the admin API must never be
// open.
func New(keys Keys, adminToken string, opts ...Option) (*Authenticator, error) {
	if len(adminToken) < 16 {
		return nil, fmt.Errorf("admin token must be at least 16 characters")
	}
	a := &Authenticator{keys: keys, admin: sha256.Sum256([]byte(adminToken))}
	for _, o := range opts {
		o(a)
	}
	sessions, err := websession.New(consoleKey(a.admin), nil)
	if err != nil {
		return nil, err
	}
	a.sessions = sessions
	return a, nil
}

// Tenant authenticates r with a tenant API key, or an end-user token from an
// issuer a tenant registered, and returns its Scope. Nothing in the request
// other than the credential influences the tenant (or, for a token, the end
// user).
func (a *Authenticator) Tenant(r *http.Request) (Scope, error) {
	token, err := tenantKey(r)
	if err != nil {
		return Scope{}, err
	}
	if a.issuers != nil && looksLikeJWT(token) {
		return a.tokenScope(r.Context(), token)
	}
	return a.keyScope(token)
}

// keyScope checks a tenant API key and returns its Scope.
func (a *Authenticator) keyScope(token string) (Scope, error) {
	id, hash, err := parseKey(token)
	if err != nil {
		return Scope{}, err
	}
	rec, ok := a.keys.KeyRecord(id)
	if !ok {
		return Scope{}, fmt.Errorf("%w: invalid api key", kind.Unauthenticated)
	}
	if !rec.Hash.equal(hash) && !layers.Off("auth") { // redteamswitch builds only: the key id alone identifies
		return Scope{}, refused{tenant: rec.Tenant, key: id, err: fmt.Errorf("%w: invalid api key", kind.Unauthenticated)}
	}
	return recordScope(id, rec)
}

// recordScope checks what a key's current record says (expiry, the tenant's
// status and incarnation) and returns the key's Scope. Every request with
// a key, and every console request of a session signed in with one, passes
// here.
func recordScope(id tenant.KeyID, rec KeyRecord) (Scope, error) {
	if !rec.ExpiresAt.IsZero() && !time.Now().Before(rec.ExpiresAt) {
		return Scope{}, refused{tenant: rec.Tenant, key: id, err: fmt.Errorf("%w: api key expired at %s",
			kind.Unauthenticated, rec.ExpiresAt.UTC().Format(time.RFC3339))}
	}
	if rec.Status != tenant.StatusActive {
		return Scope{}, refused{tenant: rec.Tenant, key: id, err: fmt.Errorf("%w: tenant is %s", kind.Denied, rec.Status)}
	}
	if rec.Incarnation.Tenant() != rec.Tenant {
		return Scope{}, fmt.Errorf("key %s: incarnation %q is not of tenant %s", id, rec.Incarnation, rec.Tenant)
	}
	return Scope{tenant: rec.Tenant, inc: rec.Incarnation, key: id}, nil
}

// Admin reports whether r carries the admin token, as an error.
func (a *Authenticator) Admin(r *http.Request) error {
	token, err := bearer(r)
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(sum[:], a.admin[:]) != 1 {
		return fmt.Errorf("%w: invalid admin token", kind.Unauthenticated)
	}
	return nil
}

// RequireTenant is middleware that admits only requests with a valid tenant
// key and puts their Scope in the context. fail writes the error response.
func (a *Authenticator) RequireTenant(fail func(http.ResponseWriter, *http.Request, error)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			scope, err := a.Tenant(r)
			if err != nil {
				fail(w, r, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(withScope(r.Context(), scope)))
		})
	}
}

// RequireAdmin is middleware that admits only requests with the admin token.
func (a *Authenticator) RequireAdmin(fail func(http.ResponseWriter, *http.Request, error)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := a.Admin(r); err != nil {
				fail(w, r, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), adminKey{}, true)))
		})
	}
}

// refused is an authentication failure whose key named an existing tenant:
// that tenant's audit log should hear of it.
type refused struct {
	tenant tenant.ID
	key    tenant.KeyID
	err    error
}

func (r refused) Error() string { return r.err.Error() }
func (r refused) Unwrap() error { return r.err }

// RefusedTenant reports the tenant whose key was presented, when err is an
// authentication failure for a known key id (a wrong secret, a suspended
// tenant). The tenant is for auditing only; it grants nothing.
func RefusedTenant(err error) (tenant.ID, bool) {
	var r refused
	if errors.As(err, &r) {
		return r.tenant, true
	}
	return "", false
}

// RefusedKey reports the key id that was presented, when err is such a
// failure (see RefusedTenant): refusals are counted per key id.
func RefusedKey(err error) (tenant.KeyID, bool) {
	var r refused
	if errors.As(err, &r) {
		return r.key, true
	}
	return "", false
}

// OperatorContext returns ctx marked as the operator's, if token is the
// admin token. It lets the process itself act in a tenant as the operator
// would (AdminScope), e.g. to index stored text at start or to audit a
// refused request; only a holder of the admin token can have it.
func (a *Authenticator) OperatorContext(ctx context.Context, token string) (context.Context, error) {
	sum := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(sum[:], a.admin[:]) != 1 {
		return nil, fmt.Errorf("%w: invalid admin token", kind.Unauthenticated)
	}
	return context.WithValue(ctx, adminKey{}, true), nil
}

type adminKey struct{}

// AdminScope returns a Scope acting in incarnation inc of a tenant for an
// operator's request. Only a context that passed RequireAdmin gets one: the
// admin token is the credential, the path names the tenant it acts on and the
// control plane its current incarnation.
func AdminScope(ctx context.Context, inc tenant.Incarnation) (Scope, error) {
	if ok, _ := ctx.Value(adminKey{}).(bool); !ok {
		return Scope{}, fmt.Errorf("%w: admin credentials required", kind.Unauthenticated)
	}
	if err := tenant.CheckIncarnation(inc); err != nil {
		return Scope{}, fmt.Errorf("%w: %w", kind.Invalid, err)
	}
	return Scope{tenant: inc.Tenant(), inc: inc}, nil
}

// KeyHeaders are the headers besides Authorization that may carry a tenant
// API key: Azure OpenAI's clients send api-key, Anthropic's x-api-key.
var KeyHeaders = []string{"Api-Key", "X-Api-Key"}

// tenantKey returns the tenant API key of r: from "Authorization: Bearer
// <key>", "api-key: <key>" or "x-api-key: <key>". Any of them will do, and
// none outranks another: when several are sent they must all carry the same
// key, or the request is refused, so that no proxy or client library can
// have one key checked and another one acted on.
func tenantKey(r *http.Request) (string, error) {
	var key string
	take := func(v string) error {
		switch {
		case v == "":
		case key == "":
			key = v
		case v != key:
			return fmt.Errorf("%w: conflicting api keys: Authorization, api-key and x-api-key must carry the same key", kind.Unauthenticated)
		}
		return nil
	}
	for _, h := range r.Header.Values("Authorization") {
		token, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return "", fmt.Errorf("%w: missing bearer token", kind.Unauthenticated)
		}
		if err := take(strings.TrimSpace(token)); err != nil {
			return "", err
		}
	}
	for _, name := range KeyHeaders {
		for _, v := range r.Header.Values(name) {
			if err := take(strings.TrimSpace(v)); err != nil {
				return "", err
			}
		}
	}
	if key == "" {
		return "", fmt.Errorf("%w: missing api key (send Authorization: Bearer <key>, api-key or x-api-key)", kind.Unauthenticated)
	}
	return key, nil
}

func bearer(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || token == "" {
		return "", fmt.Errorf("%w: missing bearer token", kind.Unauthenticated)
	}
	return strings.TrimSpace(token), nil
}
