package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/bulkhead-ai/bulkhead/internal/agent"
	"github.com/bulkhead-ai/bulkhead/internal/audit"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/cache"
	"github.com/bulkhead-ai/bulkhead/internal/config"
	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/embed"
	"github.com/bulkhead-ai/bulkhead/internal/guard"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/lifecycle"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/memory"
	"github.com/bulkhead-ai/bulkhead/internal/policy"
	"github.com/bulkhead-ai/bulkhead/internal/quota"
	"github.com/bulkhead-ai/bulkhead/internal/store/postgres"
	"github.com/bulkhead-ai/bulkhead/internal/store/sqlite"
	"github.com/bulkhead-ai/bulkhead/internal/telemetry"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/tools"
	"github.com/bulkhead-ai/bulkhead/internal/vector"
)

// Options configure Open. DataDir, AdminToken and MasterKey are required.
// Every other field's zero value is what `bulkhead serve` runs; the fields
// under "Test hooks" exist for tests and are never set by the binary.
type Options struct {
	// DataDir holds control.db and the tenants' databases; it is created
	// (mode 0700) if missing.
	DataDir string
	// Config is the server configuration. Unset fields take their
	// defaults (config.Config.WithDefaults).
	Config config.Config
	// AdminToken is the operator's bearer token, at least 16 characters.
	AdminToken string
	// MasterKey is the key-encryption key, 32 bytes.
	MasterKey []byte
	// Getenv supplies the secrets Config names by environment variable
	// (provider API keys, the Redis password); nil is an empty environment.
	Getenv func(string) string
	// Logger is the operator's log; nil discards.
	Logger *slog.Logger

	// Test hooks.

	// Providers are model providers made in code, registered beside the
	// configured ones (e.g. a fake upstream).
	Providers []Provider
	// Quota, if set, replaces the limiter Config selects.
	Quota Quota
	// ResponseCache replaces the response cache's store (a Redis of the
	// test's own, say).
	ResponseCache cache.Backend
	// WrapAuditStore, if set, wraps the store the audit log writes to, so a
	// test can watch or fail its writes.
	WrapAuditStore func(audit.Store) audit.Store
	// SpanExporter, if set, receives every span as it ends, in place of the
	// OTLP exporter Config and the environment select.
	SpanExporter sdktrace.SpanExporter
}

// Provider is a model provider registered under Name. A KeySecret makes
// every call use the calling tenant's own API key, from that tenant secret.
type Provider struct {
	Name      string
	Provider  llm.Provider
	KeySecret tenant.SecretName
}

// Quota admits requests and forgets deleted tenants' counters
// (quota.Limiter).
type Quota interface {
	agent.Quota
	lifecycle.Quota
}

// Instance is one wired server: the HTTP handler over the control plane, the
// tenants' stores and every layer between, and the background work that
// serves them. Close releases it all.
type Instance struct {
	handler   http.Handler
	telemetry *telemetry.Telemetry
	plane     *control.Plane
	stores    TenantStore
	lifecycle *lifecycle.Lifecycle
	guard     *guard.Guard
	mcp       *tools.MCPExecutor
	closers   *closers
}

// Handler returns the HTTP handler for the whole API.
func (in *Instance) Handler() http.Handler { return in.handler }

// Metrics serves the Prometheus metrics without a token, for a separate
// listener (--metrics-addr).
func (in *Instance) Metrics() http.Handler { return in.telemetry.Handler() }

// Plane returns the control plane.
func (in *Instance) Plane() *control.Plane { return in.plane }

// Stores returns the tenants' data stores.
func (in *Instance) Stores() TenantStore { return in.stores }

// Lifecycle returns the one place tenants are created and deleted.
func (in *Instance) Lifecycle() *lifecycle.Lifecycle { return in.lifecycle }

// Guard returns the output guard.
func (in *Instance) Guard() *guard.Guard { return in.guard }

// MCP returns the MCP tool executor, which holds tenants' tool sessions.
func (in *Instance) MCP() *tools.MCPExecutor { return in.mcp }

// Close stops the background work and closes everything Open opened, in
// the reverse order. The handler must no longer be serving requests. A
// second Close does nothing.
func (in *Instance) Close() error { return in.closers.closeAll() }

// Open wires a server from o: the one constructor `bulkhead serve`, the demo
// and the tests share. If it fails, whatever it had opened is closed again.
func Open(ctx context.Context, o Options) (*Instance, error) {
	c := &closers{}
	in, err := open(ctx, o, c)
	if err != nil {
		return nil, errors.Join(err, c.closeAll())
	}
	return in, nil
}

// open is Open with the cleanup stack passed in: every resource pushes its
// release onto c as soon as it is open, and open never releases anything
// itself.
func open(ctx context.Context, o Options, c *closers) (*Instance, error) {
	if o.DataDir == "" {
		return nil, errors.New("open server: no data directory")
	}
	cfg := o.Config.WithDefaults()
	getenv := o.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	logger := cmp.Or(o.Logger, slog.New(slog.DiscardHandler))

	// What the configuration declares, before anything is opened.
	models, err := cfg.Models(getenv)
	if err != nil {
		return nil, err
	}
	for _, p := range o.Providers {
		if err := models.AddBYOK(p.Name, p.Provider, p.KeySecret); err != nil {
			return nil, fmt.Errorf("register model provider %q: %w", p.Name, err)
		}
	}
	embedders, err := cfg.NewEmbedders(getenv)
	if err != nil {
		return nil, err
	}
	prices, err := cfg.PriceTable()
	if err != nil {
		return nil, err
	}
	kek, err := keyring.NewLocalKEK(o.MasterKey)
	if err != nil {
		return nil, err
	}

	b, err := openBackends(ctx, o.DataDir, cfg, kek, logger, getenv, c)
	if err != nil {
		return nil, err
	}
	plane, stores, ring := b.plane, b.stores, b.ring
	authn, err := auth.New(plane, o.AdminToken, auth.WithIssuers(plane, auth.TokenOptions{}))
	if err != nil {
		return nil, err
	}
	policies, err := policy.NewEngine()
	if err != nil {
		return nil, err
	}
	for _, def := range memory.BuiltinDefinitions() {
		if _, ok := plane.Tool(def.Name); ok {
			continue
		}
		if _, err := plane.CreateTool(ctx, def); err != nil {
			return nil, fmt.Errorf("register builtin tool %s: %w", def.Name, err)
		}
	}

	outputGuard := guard.New()
	for _, t := range plane.Tenants() {
		RegisterTenant(outputGuard, t)
	}
	embedderFor := func(id tenant.ID) (embed.Embedder, error) {
		t, err := plane.Tenant(id)
		if err != nil {
			return nil, err
		}
		e, ok := embedders[cmp.Or(t.Embedder, config.DefaultEmbedder)]
		if !ok {
			return nil, fmt.Errorf("no embedder %q is configured", t.Embedder)
		}
		return e, nil
	}
	embedCache, vectors := embed.NewCache(cfg.EmbeddingCacheEntries), vector.NewCache(cfg.VectorCacheBytes)
	tenantCanary := func(id tenant.ID) string {
		if t, err := plane.Tenant(id); err == nil && len(t.Canaries) > 0 {
			return t.Canaries[0]
		}
		return ""
	}
	knowledge := memory.New(memory.Deps{Fingerprints: outputGuard, Screen: outputGuard, Canary: tenantCanary,
		Store: stores, Ciphers: ring, Embedder: embedders[config.DefaultEmbedder], EmbedderFor: embedderFor,
		Cache: embedCache, Vectors: vectors, Secrets: stores, Logger: logger})
	builtins := map[string]agent.Executor{}
	for name, f := range knowledge.Builtins() {
		builtins[name] = f
	}

	limiter, responseStore, err := openShared(ctx, cfg, getenv, logger, c)
	if err != nil {
		return nil, err
	}
	if o.Quota != nil {
		limiter = o.Quota
	}
	if o.ResponseCache != nil {
		responseStore = o.ResponseCache
	}
	responses := cache.New(responseStore, cfg.ResponseCacheTTL)

	mcp := tools.NewMCP(tools.MCPOptions{Logger: logger})
	c.push("mcp tool sessions", mcp.Close)

	// The process acts as the operator only for these chores: indexing
	// stored text, auditing refused requests and telling a tenant its data
	// was caught leaving. It holds the admin token, and nothing else gets
	// the operator context.
	asOperator := func(ctx context.Context, id tenant.ID) (scope auth.Scope, opCtx context.Context, err error) {
		if opCtx, err = authn.OperatorContext(ctx, o.AdminToken); err != nil {
			return scope, nil, err
		}
		t, err := plane.Tenant(id)
		if err != nil {
			return scope, nil, err
		}
		scope, err = auth.AdminScope(opCtx, t.Incarnation())
		return scope, opCtx, err
	}
	operatorScope := func(id tenant.ID) (auth.Scope, error) {
		scope, _, err := asOperator(context.WithoutCancel(ctx), id)
		return scope, err
	}
	var auditStore audit.Store = stores
	if o.WrapAuditStore != nil {
		auditStore = o.WrapAuditStore(stores)
	}
	auditLog := audit.NewLog(auditStore, audit.Options{Logger: logger, OperatorScope: operatorScope})
	// Refused keys are counted per key id and minute, not recorded one by
	// one: anyone can name a key id.
	refusals := audit.NewRefusals(auditLog, audit.RefusalOptions{Logger: logger, ScopeFor: operatorScope})

	tel, err := openTelemetry(ctx, cfg, getenv, stores, o.SpanExporter, c)
	if err != nil {
		return nil, err
	}
	var observer agent.Observer // nil: agent.NoObserver
	if tel != nil {
		observer = tel
	}
	agnt, err := agent.New(agent.Deps{
		Observer: observer,
		Models:   models, History: stores, Secrets: stores, Tools: plane,
		HTTP: tools.NewHTTP(tools.HTTPOptions{}), MCP: mcp, Builtins: builtins, Quota: limiter, Meter: NewMeter(plane, prices),
		Cache: responses, Ciphers: ring, Audit: auditLog, Guard: outputGuard,
		Logger: logger, HistoryMessages: cfg.HistoryMessages,
		Definitions: plane, Policies: policies,
	})
	if err != nil {
		return nil, err
	}
	// Every holder of per-tenant state, for creating and deleting tenants.
	life, err := lifecycle.New(plane, lifecycle.Parts{
		DataKeys: ring, Store: stores, ResponseCache: responses, EmbeddingCache: embedCache, VectorIndexes: vectors,
		Quota: limiter, ToolSessions: mcp, Guard: outputGuard, Audit: auditWriters{auditLog, refusals},
		Extra: ProvisionRecords(knowledge, auditLog),
	}, logger)
	if err != nil {
		return nil, err
	}

	// What another replica changes (a shared PostgreSQL control plane)
	// takes effect here too: requests in flight of what it ended are
	// cancelled, and the guard learns the tenants' new canaries and prompts.
	plane.OnChange(func(ch control.Change) {
		life.Follow(context.WithoutCancel(ctx), ch)
		for _, id := range ch.Tenants {
			if t, err := plane.Tenant(id); err == nil {
				RegisterTenant(outputGuard, t)
			}
		}
	})

	// Background work, last, so nothing after it can fail. The stack stops
	// it newest first: the refusals' writer before the log it writes to,
	// and all of it before the stores close.
	c.goRun(ctx, "audit log", auditLog.Run)
	c.goRun(ctx, "key last-used times", plane.RunKeyUse)
	c.goRun(ctx, "usage records", plane.RunUsage)
	c.goRun(ctx, "refused-key records", refusals.Run)
	// The guard's silent cross-tenant text check, off the requests' path.
	c.goRun(ctx, "guard text check", func(ctx context.Context) error {
		return outputGuard.Run(ctx, ReportTextMatches(logger))
	})
	// Until this finishes, text stored before the start is not recognized.
	c.goRun(ctx, "guard index of stored text", func(ctx context.Context) error {
		indexStoredText(ctx, plane.Tenants(), stores, outputGuard, asOperator, logger)
		return nil
	})

	h := New(Deps{
		AuditRefused: refusals,
		Embedders:    func(name string) bool { _, ok := embedders[name]; return ok },
		Logger:       logger,
		Auth:         authn,
		Tenants:      plane,
		Issuers:      plane,
		Lifecycle:    life,
		Data:         stores,
		Catalog:      plane,
		Policies:     policies,
		Knowledge:    knowledge,
		Sessions:     stores,
		Embeddings:   knowledge,
		Quota:        limiter,
		Audit:        auditLog,
		Guard:        outputGuard,
		Agent:        agnt,
		Models:       models,
		DefaultModel: cfg.DefaultModel,
		MaxBodyBytes: cfg.MaxBodyBytes,
		Telemetry:    tel,
		Usage:        plane,
	})
	return &Instance{handler: h, telemetry: tel, plane: plane, stores: stores, lifecycle: life, guard: outputGuard, mcp: mcp, closers: c}, nil
}

// openTelemetry sets up the metrics and, when an OTLP endpoint is
// configured (or exporter given), tracing; the tracer's shutdown, which
// sends the spans not yet sent, goes onto c.
func openTelemetry(ctx context.Context, cfg config.Config, getenv func(string) string, stores TenantStore,
	exporter sdktrace.SpanExporter, c *closers) (*telemetry.Telemetry, error) {
	if cfg.Metrics.Disabled {
		return nil, nil
	}
	o := telemetry.Options{Tenants: cfg.Metrics.Tenants, Exporter: exporter, Sync: exporter != nil,
		ServiceName: cfg.Telemetry.ServiceName}
	if open, ok := stores.(interface{ OpenTenants() int }); ok {
		o.OpenTenants = open.OpenTenants
	}
	if o.Exporter == nil {
		if url := telemetry.Endpoint(cfg.Telemetry.OTLPEndpoint, getenv); url != "" {
			e, err := telemetry.Exporter(ctx, url)
			if err != nil {
				return nil, err
			}
			o.Exporter = e
		}
	}
	t, err := telemetry.New(o)
	if err != nil {
		return nil, err
	}
	c.push("tracing", func() error {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return t.Shutdown(sctx)
	})
	return t, nil
}

// backends are where the server keeps its state: the control plane (tenants,
// keys, tools, policies, wrapped data keys) and the tenants' data, with the
// keyring that unwraps each tenant's data key from the control plane.
type backends struct {
	plane  *control.Plane
	stores TenantStore
	ring   *keyring.Ring
}

// TenantStore is the tenants' data as the server's layers use it: SQLite
// files under the data directory (*sqlite.DB) or PostgreSQL
// (*postgres.DB).
type TenantStore interface {
	memory.Store
	Sessions
	audit.Store
	agent.History
	agent.Secrets
	lifecycle.Store
	TenantData
	Close() error
}

// openBackends opens the control plane and the tenants' stores in dataDir
// and finishes the deletes a crash cut short. Each pushes its release onto c.
func openBackends(ctx context.Context, dataDir string, cfg config.Config, kek keyring.KEK, logger *slog.Logger, getenv func(string) string, c *closers) (backends, error) {
	if cfg.Database != nil {
		return openPostgres(ctx, *cfg.Database, kek, logger, getenv, c)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return backends{}, fmt.Errorf("create data directory: %w", err)
	}
	plane, err := control.Open(ctx, filepath.Join(dataDir, "control.db"), kek, logger)
	if err != nil {
		return backends{}, err
	}
	c.push("control plane", plane.Close)
	ring := keyring.NewRing(kek, plane, 0)
	stores, err := sqlite.Open(sqlite.Options{Dir: filepath.Join(dataDir, "tenants"),
		MaxOpen: cfg.MaxOpenTenants, Locator: plane, Ciphers: ring, Logger: logger})
	if err != nil {
		return backends{}, err
	}
	c.push("tenant stores", stores.Close)
	// Their control records (keys, data keys) are gone, their files may not
	// be (see package lifecycle).
	live := plane.StorageIDs()
	orphans, err := stores.DropOrphans(ctx, func(id string) bool { return live[id] })
	if err != nil {
		return backends{}, fmt.Errorf("remove the stores of deleted tenants: %w", err)
	}
	if len(orphans) > 0 {
		logger.Info("removed the stores of deleted tenants", "count", len(orphans))
	}
	return backends{plane: plane, stores: stores, ring: ring}, nil
}

// openPostgres opens the control plane and the tenants' data in one
// PostgreSQL database, shared by every replica, and finishes the deletes a
// crash cut short.
func openPostgres(ctx context.Context, d config.Database, kek keyring.KEK, logger *slog.Logger, getenv func(string) string, c *closers) (backends, error) {
	app, owner, err := d.URLs(getenv)
	if err != nil {
		return backends{}, err
	}
	plane, err := control.OpenPostgres(ctx, control.PostgresOptions{URL: app, OwnerURL: owner}, kek, logger)
	if err != nil {
		return backends{}, err
	}
	c.push("control plane", plane.Close)
	ring := keyring.NewRing(kek, plane, 0)
	stores, err := postgres.Open(ctx, postgres.Options{URL: app, OwnerURL: owner, Locator: plane, Ciphers: ring, Logger: logger})
	if err != nil {
		return backends{}, err
	}
	c.push("tenant stores", stores.Close)
	// Tenants whose delete a crash (of any replica) cut short: their
	// control records are gone, their rows may not be (see package
	// lifecycle).
	deleted, err := plane.DeletedIncarnations(ctx)
	if err != nil {
		return backends{}, err
	}
	for _, inc := range deleted {
		if err := stores.Drop(ctx, inc); err != nil {
			return backends{}, fmt.Errorf("remove the store of deleted tenant %s: %w", inc.Tenant(), err)
		}
		if err := plane.ForgetDeleted(ctx, inc); err != nil {
			return backends{}, err
		}
	}
	if len(deleted) > 0 {
		logger.Info("removed the stores of deleted tenants", "count", len(deleted))
	}
	return backends{plane: plane, stores: stores, ring: ring}, nil
}

// openShared returns the rate limiter and the response cache's store: in
// Redis, shared by every replica, when cfg names one, else in this process.
func openShared(ctx context.Context, cfg config.Config, getenv func(string) string, logger *slog.Logger, c *closers) (Quota, cache.Backend, error) {
	if cfg.Redis == nil {
		return quota.NewMemory(), cache.NewMemory(cfg.ResponseCacheEntries, 0), nil
	}
	rdb := cfg.Redis.NewClient(getenv)
	c.push("redis client", rdb.Close)
	if err := rdb.Ping(ctx).Err(); err != nil {
		return nil, nil, fmt.Errorf("connect to redis at %s: %w", cfg.Redis.Addr, err)
	}
	prefix := cmp.Or(cfg.Redis.Prefix, "bulkhead")
	// Both fail safe: local limits and no cache while Redis is sick.
	return quota.NewRedisWith(rdb, quota.RedisOptions{Prefix: prefix, Timeout: cfg.Redis.LimitTimeout, Logger: logger}),
		cache.NewRedisWith(rdb, cache.RedisOptions{Prefix: prefix + ":response-cache:", Timeout: cfg.Redis.CacheTimeout, Logger: logger}), nil
}

// indexStoredText teaches the guard every document and memory tenants
// stored before this start, and the keyed hashes of their secrets. It stops
// when ctx is cancelled.
func indexStoredText(ctx context.Context, tenants []control.Tenant, stores TenantStore, g *guard.Guard,
	asOperator func(context.Context, tenant.ID) (auth.Scope, context.Context, error), logger *slog.Logger) {
	start := time.Now()
	var texts int
	for _, t := range tenants {
		if ctx.Err() != nil {
			return
		}
		scope, opCtx, err := asOperator(ctx, t.ID)
		if err != nil {
			logger.Error("index stored text", "tenant", t.ID, "error", err.Error())
			continue
		}
		exp, err := stores.Export(opCtx, scope)
		if err != nil {
			logger.Error("index stored text", "tenant", t.ID, "error", err.Error())
			continue
		}
		for _, d := range exp.Documents {
			g.AddText(t.ID, d.Text)
		}
		for _, m := range exp.Memories {
			g.AddText(t.ID, m.Text)
		}
		secrets, err := stores.Secrets(opCtx, scope)
		if err != nil {
			logger.Error("load secrets for the guard", "tenant", t.ID, "error", err.Error())
		}
		for _, s := range secrets {
			g.SetSecret(t.ID, string(s.Name), []byte(s.Value.Reveal()))
		}
		texts += len(exp.Documents) + len(exp.Memories)
	}
	logger.Info("guard indexed stored text", "tenants", len(tenants), "texts", texts, "took", time.Since(start).Round(time.Millisecond))
}

// auditWriters are the holders of an incarnation's audit records not yet
// written: the queued events and foreign-leak counts (*audit.Log), and the
// refused-key counts (*audit.Refusals). Deleting a tenant drops them all.
type auditWriters []lifecycle.AuditWriter

func (w auditWriters) Forget(inc tenant.Incarnation) {
	for _, a := range w {
		a.Forget(inc)
	}
}
