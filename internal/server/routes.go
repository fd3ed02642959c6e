package server

import (
	"errors"
	"net/http"
	"strings"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/mcpserver"
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
	tenantAPI := func(h http.Handler) http.Handler { return requestIDs(requireTenant(corsForTenant(d, track(d, h)))) }
	requireAdmin := d.Auth.RequireAdmin(fail)
	admin := func(h http.Handler) http.Handler { return requestIDs(requireAdmin(h)) }

	mux.Handle("GET /healthz", requestIDs(handleHealth()))

	// Every tenant API path also answers CORS preflights, each path named:
	// a catch-all "OPTIONS /v1/" would turn every unknown /v1 path into a
	// 405.
	tenantPaths := map[string]bool{}
	tenantRoute := func(pattern string, h http.Handler) {
		mux.Handle(pattern, tenantAPI(h))
		_, path, _ := strings.Cut(pattern, " ")
		tenantPaths[path] = true
	}

	tenantRoute("POST /v1/chat/completions", handleChat(d))
	tenantRoute("GET /v1/models", handleModels(d))
	tenantRoute("GET /v1/models/{id...}", handleModel(d))
	tenantRoute("POST /v1/embeddings", handleEmbeddings(d))
	tenantRoute("POST /v1/responses", handleCreateResponse(d))
	tenantRoute("GET /v1/responses/{id}", handleGetResponse(d))
	tenantRoute("DELETE /v1/responses/{id}", handleDeleteResponse(d))
	tenantRoute("POST /v1/documents", handleAddDocument(d))
	tenantRoute("GET /v1/documents", handleListDocuments(d))
	tenantRoute("GET /v1/documents/{id}", handleGetDocument(d))
	tenantRoute("DELETE /v1/documents/{id}", handleDeleteDocument(d))
	tenantRoute("POST /v1/search", handleSearch(d))
	tenantRoute("POST /v1/memories", handleAddMemory(d))
	tenantRoute("GET /v1/memories", handleListMemories(d))
	tenantRoute("GET /v1/audit", handleTenantAudit(d))
	tenantRoute("GET /v1/usage", handleUsage(d))

	// MCP server (streamable HTTP): the tenant's tools and documents for
	// MCP clients; a 401 points to the protected-resource metadata.
	if h, err := newMCP(d); err != nil {
		d.Logger.Error("the MCP endpoint is not served", "error", err.Error())
	} else {
		mcpAPI := func(h http.Handler) http.Handler {
			return requestIDs(d.Auth.RequireTenant(mcpserver.Challenge(failTenant))(track(d, h)))
		}
		mux.Handle("/mcp", mcpAPI(h))
		mux.Handle("/mcp/{tenant}", mcpAPI(mcpForTenant(d, h)))
	}

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
	mux.Handle("GET /admin/v1/policy-templates", admin(handlePolicyTemplates()))
	mux.Handle("GET /admin/v1/tenants/{tenant}/audit", admin(handleAdminAudit(d)))
	mux.Handle("GET /admin/v1/tenants/{tenant}/usage", admin(handleAdminTenantUsage(d)))
	mux.Handle("GET /admin/v1/usage", admin(handleAdminUsage(d)))

	// End-user tokens: issuers, RFC 9728 metadata for MCP clients, CORS.
	mux.Handle("POST /admin/v1/tenants/{tenant}/issuers", admin(handleCreateIssuer(d)))
	mux.Handle("GET /admin/v1/tenants/{tenant}/issuers", admin(handleListIssuers(d)))
	mux.Handle("DELETE /admin/v1/tenants/{tenant}/issuers/{id}", admin(handleDeleteIssuer(d)))
	mux.Handle("GET /.well-known/oauth-protected-resource/mcp", requestIDs(handleProtectedResource(d)))
	mux.Handle("GET /.well-known/oauth-protected-resource/mcp/{tenant}", requestIDs(handleProtectedResource(d)))
	for path := range tenantPaths {
		mux.Handle("OPTIONS "+path, requestIDs(handlePreflight(d)))
	}

	mux.Handle("POST /admin/v1/tools", admin(handleCreateTool(d)))
	mux.Handle("GET /admin/v1/tools", admin(handleListTools(d)))
	mux.Handle("GET /admin/v1/tools/{name}", admin(handleGetTool(d)))
	mux.Handle("DELETE /admin/v1/tools/{name}", admin(handleDeleteTool(d)))

	// The console (console.go): the operator's pages answer a tenant
	// session with a 404; a tenant's pages show its own tenant only.
	console := func(h http.Handler) http.Handler { return requestIDs(consoleHeaders(h)) }
	page := func(h http.Handler) http.Handler { return console(requireConsole(d)(h)) }
	operatorPage := func(h http.Handler) http.Handler { return page(operatorOnly(d, h)) }
	mux.Handle("GET /console", console(http.RedirectHandler("/console/", http.StatusSeeOther)))
	mux.Handle("GET /console/{$}", page(handleConsoleHome(d)))
	mux.Handle("GET /console/assets/{name}", console(handleConsoleAssets()))
	mux.Handle("GET /console/signin", console(handleConsoleSignInPage(d)))
	mux.Handle("POST /console/signin", console(handleConsoleSignIn(d)))
	mux.Handle("POST /console/signout", page(handleConsoleSignOut(d)))
	mux.Handle("GET /console/tenants", operatorPage(handleConsoleTenants(d)))
	mux.Handle("POST /console/tenants", operatorPage(handleConsoleCreateTenant(d)))
	mux.Handle("GET /console/usage", operatorPage(handleConsoleUsage(d)))
	mux.Handle("GET /console/tenants/{tenant}", page(handleConsoleTenant(d)))
	mux.Handle("POST /console/tenants/{tenant}/status", operatorPage(handleConsoleTenantStatus(d)))
	mux.Handle("POST /console/tenants/{tenant}/delete", operatorPage(handleConsoleDeleteTenant(d)))
	mux.Handle("POST /console/tenants/{tenant}/policy", operatorPage(handleConsolePolicy(d)))
	mux.Handle("GET /console/tenants/{tenant}/keys", page(handleConsoleKeys(d)))
	mux.Handle("POST /console/tenants/{tenant}/keys", operatorPage(handleConsoleCreateKey(d)))
	mux.Handle("POST /console/tenants/{tenant}/keys/{id}/revoke", operatorPage(handleConsoleRevokeKey(d)))
	mux.Handle("GET /console/tenants/{tenant}/usage", page(handleConsoleTenantUsage(d)))
	mux.Handle("GET /console/tenants/{tenant}/audit", page(handleConsoleAudit(d)))
	mux.Handle("GET /console/tenants/{tenant}/guard", page(handleConsoleGuard(d)))

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
