package server

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/tools"
)

func handleCreateTool(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		def, err := decode[tools.Definition](w, r, d.MaxBodyBytes, true)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		t, err := d.Catalog.CreateTool(r.Context(), def)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		d.Logger.InfoContext(r.Context(), "tool created", "tool", t.Name, "scope", t.Scope, "owner", t.Owner)
		encode(w, http.StatusCreated, t.Definition)
	})
}

func handleListTools(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		all := d.Catalog.Tools()
		defs := make([]tools.Definition, len(all))
		for i, t := range all {
			defs[i] = t.Definition
		}
		encode(w, http.StatusOK, map[string]any{"object": "list", "data": defs})
	})
}

func handleGetTool(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t, ok := d.Catalog.Tool(r.PathValue("name"))
		if !ok {
			writeError(d.Logger, w, r, fmt.Errorf("%w: tool %q", kind.NotFound, r.PathValue("name")))
			return
		}
		encode(w, http.StatusOK, t.Definition)
	})
}

func handleDeleteTool(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := d.Catalog.DeleteTool(r.Context(), r.PathValue("name")); err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		d.Logger.InfoContext(r.Context(), "tool deleted", "tool", r.PathValue("name"))
		w.WriteHeader(http.StatusNoContent)
	})
}

// handlePutPolicy stores a tenant's Cedar policy, sent as the raw body. It is
// checked before it is stored; a bad policy is refused with its line.
func handlePutPolicy(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, err := adminTenantScope(d, r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, d.MaxBodyBytes))
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		if err := setPolicy(d, r, scope, string(b)); err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// setPolicy checks and stores scope's tenant's Cedar policy, audited; the
// admin API and the console both change a policy through it. A bad policy
// is refused with its line.
func setPolicy(d Deps, r *http.Request, scope auth.Scope, source string) error {
	id := scope.Tenant()
	if err := d.Policies.Validate(id, source); err != nil {
		return err
	}
	if err := recordChange(d, r, scope, "policy.set", map[string]any{"bytes": len(source)}); err != nil {
		return err
	}
	if _, err := d.Tenants.UpdateTenant(r.Context(), id, func(t *control.Tenant) error {
		t.Policy = source
		return nil
	}); err != nil {
		changeFailed(d, r, scope, "policy.set", err)
		return err
	}
	d.Logger.InfoContext(r.Context(), "policy set", "tenant", id, "bytes", len(source))
	return nil
}

func handleGetPolicy(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t, err := pathTenantRecord(d, r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, t.Policy)
		if t.Policy != "" && !strings.HasSuffix(t.Policy, "\n") {
			io.WriteString(w, "\n")
		}
	})
}
