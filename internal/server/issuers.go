package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Issuers registers tenants' end-user token issuers and answers which
// origins any tenant lists for CORS (*control.Plane).
type Issuers interface {
	AddIssuer(ctx context.Context, id tenant.ID, iss auth.Issuer) (auth.Issuer, error)
	DeleteIssuer(ctx context.Context, id tenant.ID, issuerID string) error
	OriginListed(origin string) bool
}

// issuerBody is POST /admin/v1/tenants/{tenant}/issuers.
type issuerBody struct {
	Issuer     string          `json:"issuer"`
	Audience   string          `json:"audience"`
	JWKS       json.RawMessage `json:"jwks"`
	JWKSURL    string          `json:"jwks_url"`
	Algorithms []string        `json:"algorithms"`
	UserClaim  string          `json:"user_claim"`
}

type issuerView struct {
	auth.Issuer
	Object string    `json:"object"`
	Tenant tenant.ID `json:"tenant"`
}

func handleCreateIssuer(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, err := adminTenantScope(d, r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		body, err := decode[issuerBody](w, r, d.MaxBodyBytes, true)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		if string(body.JWKS) == "null" {
			body.JWKS = nil
		}
		iss := auth.Issuer{Issuer: body.Issuer, Audience: body.Audience, JWKS: body.JWKS, JWKSURL: body.JWKSURL,
			Algorithms: body.Algorithms, UserClaim: body.UserClaim}
		if err := iss.Validate(); err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		if iss.ID, err = control.NewIssuerID(); err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		change := map[string]any{"issuer_id": iss.ID, "issuer": iss.Issuer, "audience": iss.Audience}
		if err := recordChange(d, r, scope, "issuer.create", change); err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		added, err := d.Issuers.AddIssuer(r.Context(), scope.Tenant(), iss)
		if err != nil {
			changeFailed(d, r, scope, "issuer.create", err)
			writeError(d.Logger, w, r, err)
			return
		}
		d.Logger.InfoContext(r.Context(), "issuer registered", "tenant", scope.Tenant(), "issuer_id", added.ID)
		encode(w, http.StatusCreated, issuerView{Issuer: added, Object: "issuer", Tenant: scope.Tenant()})
	})
}

func handleListIssuers(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t, err := pathTenantRecord(d, r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		out := make([]issuerView, len(t.Issuers))
		for i, iss := range t.Issuers {
			out[i] = issuerView{Issuer: iss, Object: "issuer", Tenant: t.ID}
		}
		encode(w, http.StatusOK, map[string]any{"object": "list", "data": out})
	})
}

func handleDeleteIssuer(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, err := adminTenantScope(d, r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		issuerID := r.PathValue("id")
		if err := recordChange(d, r, scope, "issuer.delete", map[string]any{"issuer_id": issuerID}); err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		if err := d.Issuers.DeleteIssuer(r.Context(), scope.Tenant(), issuerID); err != nil {
			changeFailed(d, r, scope, "issuer.delete", err)
			writeError(d.Logger, w, r, err)
			return
		}
		d.Logger.InfoContext(r.Context(), "issuer deleted", "tenant", scope.Tenant(), "issuer_id", issuerID)
		w.WriteHeader(http.StatusNoContent)
	})
}

// ProtectedResourceMetadataURL is where an MCP client finds, per RFC 9728,
// the authorization servers (token issuers) of tenant id's MCP endpoint
// <base>/mcp/{tenant}; an empty id gives the metadata of the bare <base>/mcp,
// which names none. It is what a 401 from /mcp points to:
//
//	WWW-Authenticate: Bearer resource_metadata="<this URL>"
func ProtectedResourceMetadataURL(r *http.Request, id tenant.ID) string {
	return requestBase(r) + "/.well-known/oauth-protected-resource" + mcpResourcePath(id)
}

func mcpResourcePath(id tenant.ID) string {
	if id == "" {
		return "/mcp"
	}
	return "/mcp/" + string(id)
}

// requestBase is the scheme and host the request was addressed to.
func requestBase(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// handleProtectedResource serves RFC 9728 metadata for <base>/mcp/{tenant}:
// the issuers that tenant registered. Each tenant's issuers are found only
// under its own path, never listed together; an unknown or inactive tenant
// looks like one with no issuers, so the endpoint tells no one which
// tenants exist.
func handleProtectedResource(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var id tenant.ID
		if s := r.PathValue("tenant"); s != "" {
			parsed, err := tenant.ParseID(s)
			if err != nil {
				writeError(d.Logger, w, r, fmt.Errorf("%w: %w", kind.NotFound, err))
				return
			}
			id = parsed
		}
		servers := []string{}
		if id != "" {
			if t, err := d.Tenants.Tenant(id); err == nil && t.Status == tenant.StatusActive {
				for _, iss := range t.Issuers {
					if !slices.Contains(servers, iss.Issuer) {
						servers = append(servers, iss.Issuer)
					}
				}
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		encode(w, http.StatusOK, map[string]any{
			"resource":                 requestBase(r) + mcpResourcePath(id),
			"authorization_servers":    servers,
			"bearer_methods_supported": []string{"header"},
		})
	})
}

// CORS. A preflight carries no credential, so the tenant is unknown when it
// is answered: it is allowed for an origin that any active tenant lists.
// The response to the real request then carries Access-Control-Allow-Origin
// only if the tenant its credential authenticated lists the origin, so a
// browser hands the answer to a page of that tenant's origins only. Bearer
// credentials are never ambient (no cookies), so a page can only send a
// credential it already holds; CORS decides what it may read.
const (
	corsMethods = "GET, POST, DELETE, OPTIONS"
	corsHeaders = "Authorization, Content-Type, X-Session-Id"
	corsExpose  = "X-Request-Id"
)

// handlePreflight answers OPTIONS on the tenant API.
func handlePreflight(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		w.Header().Add("Vary", "Origin")
		if origin == "" || !d.Issuers.OriginListed(origin) {
			writeError(d.Logger, w, r, fmt.Errorf("%w: origin not allowed", kind.Denied))
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Methods", corsMethods)
		h.Set("Access-Control-Allow-Headers", corsHeaders)
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
	})
}

// corsForTenant lets a page read the response if its Origin is one the
// authenticated tenant lists. It runs after authentication.
func corsForTenant(d Deps, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); origin != "" {
			w.Header().Add("Vary", "Origin")
			if scope, ok := auth.FromContext(r.Context()); ok {
				if t, err := d.Tenants.Tenant(scope.Tenant()); err == nil && slices.Contains(t.CORSOrigins, origin) {
					w.Header().Set("Access-Control-Allow-Origin", origin)
					w.Header().Set("Access-Control-Expose-Headers", corsExpose)
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// canonicalOrigins checks and normalises a tenant's cors_origins.
func canonicalOrigins(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, o := range in {
		c, err := control.CanonicalOrigin(strings.TrimSpace(o))
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out, nil
}
