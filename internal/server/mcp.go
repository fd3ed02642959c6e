package server

import (
	"fmt"
	"net/http"

	"github.com/bulkhead-ai/bulkhead/internal/agent"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/mcpserver"
)

// newMCP returns the /mcp endpoint over the agent's tools and the tenant's
// documents, with the chat's profiles.
func newMCP(d Deps) (*mcpserver.Handler, error) {
	if d.Agent == nil || d.Knowledge == nil || d.Lifecycle == nil {
		return nil, fmt.Errorf("new mcp endpoint: no agent, knowledge or lifecycle")
	}
	return mcpserver.New(mcpserver.Options{
		Agent:     d.Agent,
		Documents: d.Knowledge,
		Lifecycle: d.Lifecycle,
		Profiles: func(scope auth.Scope, name string) (agent.Profile, error) {
			return d.Agent.Prepare(scope, name, false)
		},
		Fail:         func(w http.ResponseWriter, r *http.Request, err error) { writeError(d.Logger, w, r, err) },
		Logger:       d.Logger,
		MaxBodyBytes: d.MaxBodyBytes,
	})
}

// mcpForTenant serves /mcp/{tenant}: the path must name the credential's
// own tenant, and any other is a path that does not exist.
func mcpForTenant(d Deps, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, ok := auth.FromContext(r.Context())
		if !ok || r.PathValue("tenant") != string(scope.Tenant()) {
			writeError(d.Logger, w, r, fmt.Errorf("%w: no route for %s %s", kind.NotFound, r.Method, r.URL.Path))
			return
		}
		h.ServeHTTP(w, r)
	})
}
