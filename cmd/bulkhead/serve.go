package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

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
	"github.com/bulkhead-ai/bulkhead/internal/memory"
	"github.com/bulkhead-ai/bulkhead/internal/policy"
	"github.com/bulkhead-ai/bulkhead/internal/quota"
	"github.com/bulkhead-ai/bulkhead/internal/server"
	"github.com/bulkhead-ai/bulkhead/internal/store/sqlite"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/tools"
	"github.com/bulkhead-ai/bulkhead/internal/vector"
)

func newServeCmd(getenv func(string) string, stdout, stderr io.Writer) *cobra.Command {
	var addr, dataDir, configPath string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the HTTP server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(configPath)
			if err != nil {
				return err
			}
			logger := slog.New(slog.NewTextHandler(stderr, nil))
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", addr, err)
			}
			return serve(cmd.Context(), ln, dataDir, cfg, getenv, stderr, logger)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "address to listen on")
	cmd.Flags().StringVar(&dataDir, "data", "./bulkhead-data", "data directory")
	cmd.Flags().StringVar(&configPath, "config", "", "YAML configuration file")
	return cmd
}

// app is one wired server instance.
type app struct {
	handler http.Handler
	close   func() error
}

// newApp wires the concrete implementations together.
func newApp(ctx context.Context, dataDir string, cfg config.Config, adminToken string, masterKey []byte, getenv func(string) string, logger *slog.Logger) (*app, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	models, err := cfg.Models(getenv)
	if err != nil {
		return nil, err
	}
	kek, err := keyring.NewLocalKEK(masterKey)
	if err != nil {
		return nil, err
	}
	plane, err := control.Open(ctx, filepath.Join(dataDir, "control.db"), kek, logger)
	if err != nil {
		return nil, err
	}
	ring := keyring.NewRing(kek, plane, 0)
	stores, err := sqlite.Open(sqlite.Options{
		Dir: filepath.Join(dataDir, "tenants"), MaxOpen: cfg.MaxOpenTenants, Locator: plane, Ciphers: ring, Logger: logger})
	if err != nil {
		plane.Close()
		return nil, err
	}
	// Finish deletes a crash cut short: their control records (keys, data
	// keys) are gone, their files may not be (see package lifecycle).
	live := plane.StorageIDs()
	orphans, err := stores.DropOrphans(ctx, func(id string) bool { return live[id] })
	if err != nil {
		stores.Close()
		plane.Close()
		return nil, fmt.Errorf("remove the stores of deleted tenants: %w", err)
	}
	if len(orphans) > 0 {
		logger.Info("removed the stores of deleted tenants", "count", len(orphans))
	}
	authn, err := auth.New(plane, adminToken)
	if err != nil {
		stores.Close()
		plane.Close()
		return nil, err
	}
	policies, err := policy.NewEngine()
	if err != nil {
		stores.Close()
		plane.Close()
		return nil, err
	}
	embedders, err := cfg.NewEmbedders(getenv)
	if err != nil {
		stores.Close()
		plane.Close()
		return nil, err
	}
	for _, def := range memory.BuiltinDefinitions() {
		if _, ok := plane.Tool(def.Name); ok {
			continue
		}
		if _, err := plane.CreateTool(ctx, def); err != nil {
			stores.Close()
			plane.Close()
			return nil, fmt.Errorf("register builtin tool %s: %w", def.Name, err)
		}
	}
	outputGuard := guard.New()
	for _, t := range plane.Tenants() {
		server.RegisterTenant(outputGuard, t)
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
	knowledge := memory.New(memory.Deps{Fingerprints: outputGuard, Canary: tenantCanary,
		Store: stores, Ciphers: ring, Embedder: embedders[config.DefaultEmbedder], EmbedderFor: embedderFor,
		Cache:   embedCache,
		Vectors: vectors,
		Logger:  logger,
	})
	builtins := map[string]agent.Executor{}
	for name, f := range knowledge.Builtins() {
		builtins[name] = f
	}
	var limiter quota.Limiter = quota.NewMemory()
	var cacheBackend cache.Backend = cache.NewMemory(cfg.ResponseCacheEntries, 0)
	if cfg.Redis != nil {
		rdb := cfg.Redis.NewClient(getenv)
		if err := rdb.Ping(ctx).Err(); err != nil {
			stores.Close()
			plane.Close()
			return nil, fmt.Errorf("connect to redis at %s: %w", cfg.Redis.Addr, err)
		}
		prefix := cmp.Or(cfg.Redis.Prefix, "bulkhead")
		// Both fail safe: local limits and no cache while Redis is sick.
		limiter = quota.NewRedisWith(rdb, quota.RedisOptions{Prefix: prefix, Timeout: cfg.Redis.LimitTimeout, Logger: logger})
		cacheBackend = cache.NewRedisWith(rdb, cache.RedisOptions{Prefix: prefix + ":response-cache:", Timeout: cfg.Redis.CacheTimeout, Logger: logger})
	}
	mcp := tools.NewMCP(tools.MCPOptions{Logger: logger})
	// The process acts as the operator only for these chores: indexing
	// stored text, auditing refused requests and telling a tenant its data
	// was caught leaving. It holds
	// the admin token, and nothing else gets the operator context.
	asOperator := func(id tenant.ID) (scope auth.Scope, opCtx context.Context, err error) {
		if opCtx, err = authn.OperatorContext(context.WithoutCancel(ctx), adminToken); err != nil {
			return scope, nil, err
		}
		t, err := plane.Tenant(id)
		if err != nil {
			return scope, nil, err
		}
		scope, err = auth.AdminScope(opCtx, t.Incarnation())
		return scope, opCtx, err
	}
	auditLog := audit.NewLog(stores, audit.Options{Logger: logger, OperatorScope: func(id tenant.ID) (auth.Scope, error) {
		scope, _, err := asOperator(id)
		return scope, err
	}})
	agnt, err := agent.New(agent.Deps{
		Models: models, History: stores, Secrets: stores, Tools: plane,
		HTTP: tools.NewHTTP(tools.HTTPOptions{}), MCP: mcp, Builtins: builtins, Quota: limiter,
		Cache: cache.New(cacheBackend, cfg.ResponseCacheTTL), Ciphers: ring, Audit: auditLog, Guard: outputGuard,
		Logger: logger, HistoryMessages: cfg.HistoryMessages,
	})
	if err != nil {
		stores.Close()
		plane.Close()
		return nil, errors.Join(err, mcp.Close())
	}
	// The log's writer outlives requests; close stops it after the server.
	logCtx, stopLog := context.WithCancel(context.WithoutCancel(ctx))
	logDone := make(chan error, 1)
	go func() { logDone <- auditLog.Run(logCtx) }()
	// Refused keys are counted per key id and minute, not recorded one by
	// one: anyone can name a key id. Its writer stops before the log's.
	auditRefused := audit.NewRefusals(auditLog, audit.RefusalOptions{Logger: logger,
		ScopeFor: func(id tenant.ID) (auth.Scope, error) {
			scope, _, err := asOperator(id)
			return scope, err
		}})
	refusalsCtx, stopRefusals := context.WithCancel(context.WithoutCancel(ctx))
	refusalsDone := make(chan error, 1)
	go func() { refusalsDone <- auditRefused.Run(refusalsCtx) }()
	// Rebuild the guard's fingerprints of what tenants store, in the
	// background: until it finishes, stored text is not yet recognized.
	indexDone := make(chan struct{})
	go func() {
		defer close(indexDone)
		indexStoredText(logCtx, plane.Tenants(), stores, outputGuard, asOperator, logger)
	}()
	// The guard's silent cross-tenant text check, off the requests' path.
	guardDone := make(chan error, 1)
	go func() { guardDone <- outputGuard.Run(logCtx, server.ReportTextMatches(logger)) }()
	responses := cache.New(cacheBackend, cfg.ResponseCacheTTL)
	// Every holder of per-tenant state, for creating and deleting tenants.
	life, err := lifecycle.New(plane, lifecycle.Parts{
		DataKeys: ring, Store: stores, ResponseCache: responses, EmbeddingCache: embedCache, VectorIndexes: vectors,
		Quota: limiter, ToolSessions: mcp, Guard: outputGuard, Audit: auditLog,
		Extra: server.ProvisionRecords(knowledge, auditLog),
	}, logger)
	if err != nil {
		stopRefusals()
		<-refusalsDone
		stopLog()
		<-indexDone
		<-logDone
		return nil, errors.Join(err, mcp.Close(), stores.Close(), plane.Close())
	}
	h := server.New(server.Deps{
		AuditRefused: auditRefused,
		Embedders:    func(name string) bool { _, ok := embedders[name]; return ok },
		Logger:       logger,
		Auth:         authn,
		Tenants:      plane,
		Lifecycle:    life,
		Data:         stores,
		Catalog:      plane,
		Policies:     policies,
		Knowledge:    knowledge,
		Audit:        auditLog,
		Guard:        outputGuard,
		Agent:        agnt,
		Models:       models,
		DefaultModel: cfg.DefaultModel,
		MaxBodyBytes: cfg.MaxBodyBytes,
	})
	closeAll := func() error {
		stopRefusals()
		refusalsErr := <-refusalsDone
		stopLog()
		<-indexDone
		logErr := <-logDone
		return errors.Join(refusalsErr, logErr, <-guardDone, mcp.Close(), stores.Close(), plane.Close())
	}
	return &app{handler: h, close: closeAll}, nil
}

// serve runs the server on ln until ctx is cancelled, then drains requests.
func serve(ctx context.Context, ln net.Listener, dataDir string, cfg config.Config, getenv func(string) string, stderr io.Writer, logger *slog.Logger) error {
	token, err := adminToken(dataDir, getenv, stderr)
	if err != nil {
		return err
	}
	key, err := masterKey(dataDir, getenv, stderr)
	if err != nil {
		return err
	}
	a, err := newApp(ctx, dataDir, cfg, token, key, getenv, logger)
	if err != nil {
		return err
	}
	defer a.close()
	srv := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("listening", "addr", ln.Addr().String(), "data", dataDir)
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	return nil
}

// adminToken reads BULKHEAD_ADMIN_TOKEN or the token file in dataDir,
// generating the file and printing the token once if neither exists.
func adminToken(dataDir string, getenv func(string) string, stderr io.Writer) (string, error) {
	if t := getenv("BULKHEAD_ADMIN_TOKEN"); t != "" {
		return t, nil
	}
	return devSecret(filepath.Join(dataDir, "admin_token"), "an admin token", stderr, func() (string, error) {
		var raw [32]byte
		if _, err := rand.Read(raw[:]); err != nil {
			return "", err
		}
		return "bka_" + base64.RawURLEncoding.EncodeToString(raw[:]), nil
	})
}

// masterKey reads the key-encryption key from BULKHEAD_MASTER_KEY or the key
// file in dataDir. A new data directory gets a generated key file; an existing
// one without a key is refused, as a new key could not read its data.
func masterKey(dataDir string, getenv func(string) string, stderr io.Writer) ([]byte, error) {
	if v := getenv("BULKHEAD_MASTER_KEY"); v != "" {
		k, err := keyring.ParseMasterKey(v)
		if err != nil {
			return nil, fmt.Errorf("BULKHEAD_MASTER_KEY: %w", err)
		}
		return k, nil
	}
	path := filepath.Join(dataDir, "master_key")
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(filepath.Join(dataDir, "control.db")); err == nil {
			return nil, fmt.Errorf("%s holds data but no master key: set BULKHEAD_MASTER_KEY to the key it was created with", dataDir)
		}
	}
	v, err := devSecret(path, "a master key (back it up: without it the data cannot be read)", stderr, func() (string, error) {
		k, err := keyring.NewKey()
		return base64.StdEncoding.EncodeToString(k), err
	})
	if err != nil {
		return nil, err
	}
	k, err := keyring.ParseMasterKey(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// devSecret reads the secret stored at path or, if there is none, generates
// one, stores it with mode 0600 and prints it once. It is for development;
// production passes secrets in the environment.
func devSecret(path, what string, stderr io.Writer, generate func() (string, error)) (string, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("create data directory: %w", err)
	}
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	v, err := generate()
	if err != nil {
		return "", fmt.Errorf("generate %s: %w", what, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("store %s: %w", what, err)
	}
	if _, err := f.WriteString(v + "\n"); err != nil {
		f.Close()
		return "", fmt.Errorf("store %s: %w", what, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("store %s: %w", what, err)
	}
	fmt.Fprintf(stderr, "Generated %s (shown once; stored in %s):\n  %s\n", what, path, v)
	return v, nil
}

// indexStoredText teaches the guard every document and memory tenants
// stored before this start, and the keyed hashes of their secrets. It stops
// when ctx is cancelled.
func indexStoredText(ctx context.Context, tenants []control.Tenant, stores *sqlite.DB, g *guard.Guard,
	asOperator func(tenant.ID) (auth.Scope, context.Context, error), logger *slog.Logger) {
	start := time.Now()
	var texts int
	for _, t := range tenants {
		if ctx.Err() != nil {
			return
		}
		scope, opCtx, err := asOperator(t.ID)
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
