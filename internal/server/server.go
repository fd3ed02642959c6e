// Package server is Bulkhead's HTTP interface: the OpenAI-compatible tenant
// API and the operator's admin API. Handlers only translate between HTTP and
// the packages that decide things (auth, control, agent).
package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/bulkhead-ai/bulkhead/internal/agent"
	"github.com/bulkhead-ai/bulkhead/internal/audit"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/memory"
	"github.com/bulkhead-ai/bulkhead/internal/policy"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/tools"
)

// Tenants is the control plane as the handlers use it.
type Tenants interface {
	CreateTenant(ctx context.Context, t control.Tenant) (control.Tenant, error)
	Tenant(id tenant.ID) (control.Tenant, error)
	Tenants() []control.Tenant
	UpdateTenant(ctx context.Context, id tenant.ID, change func(*control.Tenant) error) (control.Tenant, error)
	DeleteTenant(ctx context.Context, id tenant.ID) (control.Tenant, error)
	AddKey(ctx context.Context, id tenant.ID, keyID tenant.KeyID, hash auth.KeyHash) error
	RevokeKey(ctx context.Context, id tenant.ID, keyID tenant.KeyID) error
}

// TenantData is the tenant data plane as the admin API uses it.
type TenantData interface {
	PutSecret(ctx context.Context, scope auth.Scope, name tenant.SecretName, value []byte) error
	DeleteSecret(ctx context.Context, scope auth.Scope, name tenant.SecretName) error
	Export(ctx context.Context, scope auth.Scope) (store.Export, error)
	AuditRecords(ctx context.Context, scope auth.Scope, afterSeq int64, limit int) ([]store.AuditRecord, error)
	// Drop removes a deleted tenant's stored data.
	Drop(ctx context.Context, storageID string) error
}

// Catalog is the tool catalog.
type Catalog interface {
	CreateTool(ctx context.Context, d tools.Definition) (*tools.Tool, error)
	Tool(name string) (*tools.Tool, bool)
	Tools() []*tools.Tool
	DeleteTool(ctx context.Context, name string) error
}

// Policies compiles and checks tenants' Cedar policies.
type Policies interface {
	For(id tenant.ID, profiles map[string][]string, source string) (*policy.Set, error)
	Validate(id tenant.ID, source string) error
}

// Knowledge is the tenant's knowledge base and its users' memories.
type Knowledge interface {
	AddDocument(ctx context.Context, scope auth.Scope, text string, metadata json.RawMessage) (store.Document, bool, error)
	Document(ctx context.Context, scope auth.Scope, id string) (store.Document, error)
	DeleteDocument(ctx context.Context, scope auth.Scope, id string) error
	Search(ctx context.Context, scope auth.Scope, query string, k int, mode memory.Mode) ([]memory.Result, error)
	Remember(ctx context.Context, scope auth.Scope, text string) (store.Memory, error)
	Memories(ctx context.Context, scope auth.Scope, limit int) ([]store.Memory, error)
}

// AuditLog is the per-tenant, hash-chained audit log.
type AuditLog interface {
	Record(scope auth.Scope, e audit.Event) error
	Flush(ctx context.Context) error
}

// Guard learns what each tenant owns, to recognize it in other tenants'
// answers.
type Guard interface {
	SetCanaries(id tenant.ID, canaries []string)
	AddText(id tenant.ID, text string)
	RemoveTenant(id tenant.ID)
	// SetSecret and DeleteSecret keep the guard's keyed hashes of the
	// tenant's secrets, so that they are caught in other tenants' answers.
	SetSecret(id tenant.ID, name string, value []byte) bool
	DeleteSecret(id tenant.ID, name string)
}

// RegisterTenant tells g a tenant's canaries and system prompts.
func RegisterTenant(g Guard, t control.Tenant) {
	if g == nil {
		return
	}
	g.SetCanaries(t.ID, t.Canaries)
	for _, p := range t.Profiles {
		if p.SystemPrompt != "" {
			g.AddText(t.ID, p.SystemPrompt)
		}
	}
}

// DataKeys forgets a deleted tenant's cached data key.
type DataKeys interface {
	Forget(id tenant.ID)
}

// Models resolves "provider/model" names.
type Models interface {
	Resolve(model string) (llm.Route, error)
}

// Deps is what the server needs.
type Deps struct {
	Logger    *slog.Logger
	Auth      *auth.Authenticator
	Tenants   Tenants
	Data      TenantData
	Keys      DataKeys
	Catalog   Catalog
	Policies  Policies
	Knowledge Knowledge
	Audit     AuditLog
	Guard     Guard
	// AuditRefused records, in a tenant's audit log, a request refused with
	// one of its key ids (wrong secret, suspended tenant); nil records none.
	AuditRefused func(id tenant.ID, reason string)
	// Embedders reports whether an embedder name is configured.
	Embedders    func(name string) bool
	Agent        *agent.Agent
	Models       Models
	DefaultModel string // for profiles that name none
	MaxBodyBytes int64
	// MaxDocumentBytes caps a POST /v1/documents body.
	MaxDocumentBytes int64
}

// New returns the HTTP handler for the whole API.
func New(d Deps) http.Handler {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.MaxDocumentBytes <= 0 {
		// JSON escaping grows text; leave room over the document limit.
		d.MaxDocumentBytes = 2*memory.MaxDocumentBytes + 64<<10
	}
	mux := http.NewServeMux()
	addRoutes(mux, d)
	return jsonFallbacks(d.Logger, mux)
}

// jsonFallbacks answers requests no route takes (404, or 405 when the path
// exists under other methods) in OpenAI's error shape instead of the mux's
// plain text.
func jsonFallbacks(logger *slog.Logger, mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		probe := &statusProbe{header: http.Header{}}
		h.ServeHTTP(probe, r)
		if probe.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", probe.header.Get("Allow"))
			writeError(logger, w, r, fmt.Errorf("%w: method %s is not allowed on %s", errMethodNotAllowed, r.Method, r.URL.Path))
			return
		}
		writeError(logger, w, r, fmt.Errorf("%w: no route for %s %s", kind.NotFound, r.Method, r.URL.Path))
	})
}

// statusProbe records the status and headers a handler would send.
type statusProbe struct {
	header http.Header
	status int
}

func (p *statusProbe) Header() http.Header         { return p.header }
func (p *statusProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *statusProbe) WriteHeader(status int)      { p.status = status }
