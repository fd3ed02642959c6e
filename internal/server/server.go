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
	"github.com/bulkhead-ai/bulkhead/internal/guard"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/memory"
	"github.com/bulkhead-ai/bulkhead/internal/policy"
	"github.com/bulkhead-ai/bulkhead/internal/requestid"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/telemetry"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/tools"
)

// Tenants is the control plane as the handlers use it. Creating and
// deleting tenants, changing their status and revoking keys go through
// Lifecycle instead, which knows every piece of a tenant's state.
type Tenants interface {
	Tenant(id tenant.ID) (control.Tenant, error)
	Tenants() []control.Tenant
	UpdateTenant(ctx context.Context, id tenant.ID, change func(*control.Tenant) error) (control.Tenant, error)
	AddKey(ctx context.Context, id tenant.ID, keyID tenant.KeyID, hash auth.KeyHash) error
	AddKeyWith(ctx context.Context, id tenant.ID, keyID tenant.KeyID, hash auth.KeyHash, opts control.KeyOptions) error
	Keys(ctx context.Context, id tenant.ID) ([]control.Key, error)
	// KeyUsed notes that a key authenticated a request; it is written in
	// batches, never once per request.
	KeyUsed(id tenant.KeyID)
}

// Lifecycle creates, changes and deletes tenants with every piece of their
// state, and tracks the tenant API's requests in flight so that deleting or
// suspending a tenant, or revoking a key, cancels them (*lifecycle.Lifecycle).
type Lifecycle interface {
	Provision(ctx context.Context, t control.Tenant) (control.Tenant, error)
	Offboard(ctx context.Context, id tenant.ID) (control.Tenant, error)
	Update(ctx context.Context, id tenant.ID, change func(*control.Tenant) error) (control.Tenant, error)
	RevokeKey(ctx context.Context, id tenant.ID, keyID tenant.KeyID) error
	Track(ctx context.Context, scope auth.Scope) (context.Context, func())
}

// TenantData is the tenant data plane as the admin API uses it.
type TenantData interface {
	PutSecret(ctx context.Context, scope auth.Scope, name tenant.SecretName, value []byte) error
	DeleteSecret(ctx context.Context, scope auth.Scope, name tenant.SecretName) error
	Export(ctx context.Context, scope auth.Scope) (store.Export, error)
	AuditRecords(ctx context.Context, scope auth.Scope, afterSeq int64, limit int) ([]store.AuditRecord, error)
	// Secrets is read by the console for the names only; it never shows a
	// value.
	Secrets(ctx context.Context, scope auth.Scope) ([]store.Secret, error)
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
	Documents(ctx context.Context, scope auth.Scope, after string, limit int) ([]store.Document, bool, error)
	Search(ctx context.Context, scope auth.Scope, query string, k int, mode memory.Mode) ([]memory.Result, error)
	Remember(ctx context.Context, scope auth.Scope, text string) (store.Memory, error)
	Memories(ctx context.Context, scope auth.Scope, limit int) ([]store.Memory, error)
}

// AuditLog is the per-tenant, hash-chained audit log.
type AuditLog interface {
	Record(scope auth.Scope, e audit.Event) error
	// RecordNow stores e before it returns, for changes that must not go
	// unrecorded.
	RecordNow(ctx context.Context, scope auth.Scope, e audit.Event) error
	Flush(ctx context.Context) error
	// FlushLeaks writes the foreign leaks counted for the tenant, before
	// its own log is read.
	FlushLeaks(owner tenant.ID)
}

// RefusedKeys counts requests refused with a tenant's key id into bounded
// audit records (*audit.Refusals).
type RefusedKeys interface {
	Add(id tenant.ID, key tenant.KeyID, reason string)
	// FlushTenant writes the tenant's counts, before its log is read.
	FlushTenant(id tenant.ID)
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

// ReportTextMatches returns the observer of the guard's silent text check
// (guard.Guard.Run): a warning in the operator's log naming the tenant that
// received another tenant's stored text and the tenants that stored it. It
// goes to no tenant's audit log: in the receiver's it would confirm guesses
// about the others' text, in an owner's guesses about the receiver's answers.
func ReportTextMatches(logger *slog.Logger) func(guard.TextMatch) {
	return func(m guard.TextMatch) {
		logger.Warn("another tenant's stored text in an output", "tenant", m.Receiver,
			"owners", m.Owners, "windows", m.Windows, "total", m.Total)
	}
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
	Lifecycle Lifecycle
	Data      TenantData
	Catalog   Catalog
	Policies  Policies
	Knowledge Knowledge
	// Sessions keeps the Responses API's responses (responses.go).
	Sessions Sessions
	Audit    AuditLog
	Guard    Guard
	// Issuers registers end-user token issuers and answers CORS preflights.
	Issuers Issuers
	// AuditRefused counts, for a tenant's audit log, requests refused with
	// one of its key ids (wrong secret, suspended tenant); nil records none.
	AuditRefused RefusedKeys
	// Embedders reports whether an embedder name is configured.
	Embedders func(name string) bool
	Agent     *agent.Agent
	// Embeddings answers POST /v1/embeddings, and Quota admits those
	// requests against the tenant's limits, as the agent admits turns.
	Embeddings   Embeddings
	Quota        agent.Quota
	Models       Models
	DefaultModel string // for profiles that name none
	MaxBodyBytes int64
	// MaxDocumentBytes caps a POST /v1/documents body.
	MaxDocumentBytes int64
	// Telemetry counts and traces requests and serves GET /metrics; nil
	// records nothing.
	Telemetry *telemetry.Telemetry
	// Usage serves the usage and spend records (usage.go); nil serves
	// none.
	Usage UsageLog
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
	return instrument(d.Telemetry, mux, jsonFallbacks(d.Logger, mux))
}

// instrument counts and traces every request under its mux pattern, the
// route, never its raw path.
func instrument(t *telemetry.Telemetry, mux *http.ServeMux, next http.Handler) http.Handler {
	if t == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pattern := mux.Handler(r)
		t.Serve(w, r, pattern, next, func() string { return w.Header().Get(requestid.Header) })
	})
}

// handleMetrics serves the Prometheus metrics.
func handleMetrics(d Deps) http.Handler {
	if d.Telemetry == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeError(d.Logger, w, r, fmt.Errorf("%w: metrics are not enabled", kind.NotFound))
		})
	}
	return d.Telemetry.Handler()
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
