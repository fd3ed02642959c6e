package server

import (
	"errors"
	"net/http"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
)

// addRoutes lists the whole API.
func addRoutes(mux *http.ServeMux, d Deps) {
	fail := func(w http.ResponseWriter, r *http.Request, err error) { writeError(d.Logger, w, r, err) }
	failTenant := func(w http.ResponseWriter, r *http.Request, err error) {
		if id, ok := auth.RefusedTenant(err); ok && d.AuditRefused != nil {
			key, _ := auth.RefusedKey(err)
			d.AuditRefused.Add(id, key, err.Error())
		}
		writeError(d.Logger, w, r, err)
	}
	requireTenant := d.Auth.RequireTenant(failTenant)
	// Every route gets a request id first, so even a refused credential's
	// response and log line carry one; unrouted requests get theirs in
	// writeError.
	tenantAPI := func(h http.Handler) http.Handler { return requestIDs(requireTenant(track(d, h))) }
	requireAdmin := d.Auth.RequireAdmin(fail)
	admin := func(h http.Handler) http.Handler { return requestIDs(requireAdmin(h)) }

	mux.Handle("GET /healthz", requestIDs(handleHealth()))

	mux.Handle("POST /v1/chat/completions", tenantAPI(handleChat(d)))
	mux.Handle("GET /v1/models", tenantAPI(handleModels(d)))
	mux.Handle("GET /v1/models/{id}", tenantAPI(handleModel(d)))
	mux.Handle("POST /v1/embeddings", tenantAPI(handleEmbeddings(d)))
	mux.Handle("POST /v1/documents", tenantAPI(handleAddDocument(d)))
	mux.Handle("GET /v1/documents", tenantAPI(handleListDocuments(d)))
	mux.Handle("GET /v1/documents/{id}", tenantAPI(handleGetDocument(d)))
	mux.Handle("DELETE /v1/documents/{id}", tenantAPI(handleDeleteDocument(d)))
	mux.Handle("POST /v1/search", tenantAPI(handleSearch(d)))
	mux.Handle("POST /v1/memories", tenantAPI(handleAddMemory(d)))
	mux.Handle("GET /v1/memories", tenantAPI(handleListMemories(d)))
	mux.Handle("GET /v1/audit", tenantAPI(handleTenantAudit(d)))

	mux.Handle("POST /admin/v1/tenants", admin(handleCreateTenant(d)))
	mux.Handle("GET /admin/v1/tenants", admin(handleListTenants(d)))
	mux.Handle("GET /admin/v1/tenants/{tenant}", admin(handleGetTenant(d)))
	mux.Handle("PATCH /admin/v1/tenants/{tenant}", admin(handlePatchTenant(d)))
	mux.Handle("DELETE /admin/v1/tenants/{tenant}", admin(handleDeleteTenant(d)))
	mux.Handle("POST /admin/v1/tenants/{tenant}/keys", admin(handleCreateKey(d)))
	mux.Handle("GET /admin/v1/tenants/{tenant}/keys", admin(handleListKeys(d)))
	mux.Handle("DELETE /admin/v1/tenants/{tenant}/keys/{id}", admin(handleRevokeKey(d)))
	mux.Handle("PUT /admin/v1/tenants/{tenant}/secrets/{name}", admin(handlePutSecret(d)))
	mux.Handle("DELETE /admin/v1/tenants/{tenant}/secrets/{name}", admin(handleDeleteSecret(d)))
	mux.Handle("GET /admin/v1/tenants/{tenant}/export", admin(handleExport(d)))
	mux.Handle("PUT /admin/v1/tenants/{tenant}/policy", admin(handlePutPolicy(d)))
	mux.Handle("GET /admin/v1/tenants/{tenant}/policy", admin(handleGetPolicy(d)))
	mux.Handle("GET /admin/v1/tenants/{tenant}/audit", admin(handleAdminAudit(d)))

	mux.Handle("POST /admin/v1/tools", admin(handleCreateTool(d)))
	mux.Handle("GET /admin/v1/tools", admin(handleListTools(d)))
	mux.Handle("GET /admin/v1/tools/{name}", admin(handleGetTool(d)))
	mux.Handle("DELETE /admin/v1/tools/{name}", admin(handleDeleteTool(d)))

	// Prometheus metrics; also without a token on --metrics-addr.
	mux.Handle("GET /metrics", admin(handleMetrics(d)))
}

// track runs each tenant API request under a context that the lifecycle
// cancels when its tenant is deleted or suspended or its key revoked.
func track(d Deps, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, ok := auth.FromContext(r.Context())
		if !ok {
			// RequireTenant runs first; without its Scope nothing runs.
			writeError(d.Logger, w, r, errors.New("tenant request without a scope"))
			return
		}
		d.Telemetry.Authenticated(r.Context(), scope.Tenant())
		if key := scope.Key(); key != "" {
			d.Tenants.KeyUsed(key)
		}
		ctx, done := d.Lifecycle.Track(r.Context(), scope)
		defer done()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}
