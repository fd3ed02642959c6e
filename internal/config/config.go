// Package config reads the server's YAML configuration.
package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"gopkg.in/yaml.v3"

	"github.com/bulkhead-ai/bulkhead/internal/embed"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/redteam/hostile"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Config is the server configuration. The zero value with WithDefaults is a
// working offline setup.
type Config struct {
	Providers []Provider `yaml:"providers"`
	// DefaultModel is used by a tenant profile that names no model.
	DefaultModel string `yaml:"default_model"`
	// MaxBodyBytes caps every request body.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxOpenTenants bounds open per-tenant database handles.
	MaxOpenTenants int `yaml:"max_open_tenants"`
	// HistoryMessages is how many stored messages of a session the model sees.
	HistoryMessages int `yaml:"history_messages"`
	// Embedder computes embeddings for documents and memories, unless a
	// tenant names one of Embedders.
	Embedder  Embedder            `yaml:"embedder"`
	Embedders map[string]Embedder `yaml:"embedders"`
	// VectorCacheBytes bounds the memory held by loaded vector indexes.
	VectorCacheBytes int `yaml:"vector_cache_bytes"`
	// EmbeddingCacheEntries bounds the per-tenant embedding cache.
	EmbeddingCacheEntries int `yaml:"embedding_cache_entries"`
	// ResponseCacheTTL and ResponseCacheEntries bound the response cache.
	ResponseCacheTTL     time.Duration `yaml:"response_cache_ttl"`
	ResponseCacheEntries int           `yaml:"response_cache_entries"`
	// Redis, when set, holds rate limits and the response cache, shared by
	// every replica; otherwise both live in this process. Embeddings are
	// cached in each process either way.
	Redis *Redis `yaml:"redis"`
	// Database, when set, keeps the control plane and the tenants' data in
	// PostgreSQL, shared by every replica, instead of in SQLite files under
	// the data directory.
	Database *Database `yaml:"database"`
	// Prices are what each model costs, by "<provider>/<model>", for the
	// usage records and the tenants' money budgets. A model not listed
	// costs nothing (its tokens are still counted).
	Prices map[string]Price `yaml:"prices"`
	// Metrics and Telemetry configure /metrics and tracing.
	Metrics   Metrics   `yaml:"metrics"`
	Telemetry Telemetry `yaml:"telemetry"`
}

// Metrics configures the Prometheus metrics. They are always served at
// /metrics on the main address, behind the admin token.
type Metrics struct {
	// Addr, if set, also serves /metrics there without a token (a
	// separate, private listener for the scraper); --metrics-addr sets it.
	Addr string `yaml:"addr"`
	// Tenants are the tenant ids whose requests get series of their own
	// (the "tenant" label); all others share tenant="". The list is what
	// bounds the series' number.
	Tenants []tenant.ID `yaml:"tenants"`
	// Disabled turns metrics (and tracing) off: no /metrics, nothing
	// counted.
	Disabled bool `yaml:"disabled"`
}

// Telemetry configures OpenTelemetry traces, off unless an OTLP endpoint
// is configured here or in OTEL_EXPORTER_OTLP_ENDPOINT.
type Telemetry struct {
	// OTLPEndpoint is the collector's OTLP/HTTP base URL (e.g.
	// http://127.0.0.1:4318; "/v1/traces" is added), or its full traces URL.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// ServiceName names the service in traces; default "bulkhead".
	ServiceName string `yaml:"service_name"`
}

// Database locates PostgreSQL. The server connects as an application role
// that owns nothing; the schema's owner runs the migrations at start.
type Database struct {
	// URL, or URLEnv naming the environment variable that holds it, is the
	// application role's postgres:// URL.
	URL    string `yaml:"url"`
	URLEnv string `yaml:"url_env"`
	// OwnerURLEnv names the environment variable holding the owner role's
	// URL (default BULKHEAD_DATABASE_OWNER_URL); unset, the application's
	// URL runs the migrations, which then needs the rights to.
	OwnerURLEnv string `yaml:"owner_url_env"`
}

// DefaultOwnerURLEnv is where the owner role's URL is read by default.
const DefaultOwnerURLEnv = "BULKHEAD_DATABASE_OWNER_URL"

// URLs returns the application and owner URLs.
func (d Database) URLs(getenv func(string) string) (app, owner string, err error) {
	app = d.URL
	if d.URLEnv != "" {
		app = getenv(d.URLEnv)
	}
	if app == "" {
		return "", "", errors.New("database: no URL (set database.url, database.url_env or --database)")
	}
	owner = getenv(cmp.Or(d.OwnerURLEnv, DefaultOwnerURLEnv))
	return app, cmp.Or(owner, app), nil
}

// Redis locates the shared Redis server and bounds how long a request may
// wait for it. Every call has a deadline and goes through a circuit breaker:
// while Redis is slow or down the response cache is bypassed and rate limits
// are enforced by each replica alone (see quota.Redis).
type Redis struct {
	Addr        string `yaml:"addr"`
	PasswordEnv string `yaml:"password_env"`
	DB          int    `yaml:"db"`
	Prefix      string `yaml:"prefix"` // key prefix, default "bulkhead"
	// CacheTimeout bounds each response-cache call (default 50ms), and
	// LimitTimeout each rate-limit call (default 100ms).
	CacheTimeout time.Duration `yaml:"cache_timeout"`
	LimitTimeout time.Duration `yaml:"limit_timeout"`
}

// Defaults of the Redis deadlines. A healthy Redis answers in well under a
// millisecond, so both leave room for load. A cache lookup only saves a model
// call, and a timed-out one costs a miss: 50ms. A timed-out limit check
// costs more (the replica falls back to its local limiter, less exact), so it
// gets more headroom: 100ms. Either is far below the 5-15s a paused Redis
// used to cost every request.
const (
	DefaultRedisCacheTimeout = 50 * time.Millisecond
	DefaultRedisLimitTimeout = 100 * time.Millisecond
)

// NewClient returns a client for r, with getenv supplying the password, set
// up for a hot path: small dial, read, write and pool timeouts, the
// caller's deadlines respected, and no retries (the circuit breakers decide
// what a failure means; a retry would only double a stall).
func (r Redis) NewClient(getenv func(string) string) *redis.Client {
	var password string
	if r.PasswordEnv != "" {
		password = getenv(r.PasswordEnv)
	}
	return redis.NewClient(&redis.Options{
		Addr: r.Addr, Password: password, DB: r.DB,
		DialTimeout:           500 * time.Millisecond,
		ReadTimeout:           500 * time.Millisecond,
		WriteTimeout:          500 * time.Millisecond,
		PoolTimeout:           200 * time.Millisecond,
		DialerRetries:         1,
		ContextTimeoutEnabled: true, // otherwise go-redis ignores the per-call deadlines
		MaxRetries:            -1,   // -1, not 0, disables retries
	})
}

// Embedder declares the embedding model: the built-in offline one (default)
// or any OpenAI-compatible /v1/embeddings endpoint (OpenAI, Ollama, vLLM, TEI).
type Embedder struct {
	Type      string `yaml:"type"` // "offline" (default) or "openai"
	BaseURL   string `yaml:"base_url"`
	APIKeyEnv string `yaml:"api_key_env"`
	// APIKeySecret names a tenant secret: each tenant calls this embedder
	// with its own key (bring your own key).
	APIKeySecret string        `yaml:"api_key_secret"`
	Model        string        `yaml:"model"`
	Dim          int           `yaml:"dim"`
	Timeout      time.Duration `yaml:"timeout"`
}

// Price is what one model charges, in US dollars per million tokens.
type Price struct {
	Input       float64 `yaml:"input"`
	CachedInput float64 `yaml:"cached_input"`
	Output      float64 `yaml:"output"`
}

// maxPriceUSD bounds a price per million tokens, so that micro-dollar
// arithmetic cannot overflow.
const maxPriceUSD = 1_000_000

// PriceTable returns the prices in micro-dollars per million tokens. A
// negative, non-finite or absurd price, or a name not of the form
// "<provider>/<model>", is an error naming the model.
func (c Config) PriceTable() (map[string]llm.Price, error) {
	out := make(map[string]llm.Price, len(c.Prices))
	for model, p := range c.Prices {
		if prov, name, ok := strings.Cut(model, "/"); !ok || prov == "" || name == "" {
			return nil, fmt.Errorf("prices: %q is not \"<provider>/<model>\"", model)
		}
		var micro [3]int64
		for i, f := range []struct {
			name string
			usd  float64
		}{{"input", p.Input}, {"cached_input", p.CachedInput}, {"output", p.Output}} {
			if math.IsNaN(f.usd) || f.usd < 0 || f.usd > maxPriceUSD {
				return nil, fmt.Errorf("prices: model %q: %s must be between 0 and %d US dollars per million tokens, not %v", model, f.name, maxPriceUSD, f.usd)
			}
			micro[i] = int64(math.Round(f.usd * 1e6))
		}
		out[model] = llm.Price{InputMicroUSD: micro[0], CachedInputMicroUSD: micro[1], OutputMicroUSD: micro[2]}
	}
	return out, nil
}

// Provider declares one model provider.
type Provider struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"` // "openai", "anthropic", "scripted" or "redteam" (the hostile model of `bulkhead redteam`)
	// BaseURL is the API root; for type anthropic it defaults to
	// https://api.anthropic.com.
	BaseURL   string `yaml:"base_url"`
	APIKeyEnv string `yaml:"api_key_env"`
	// APIKeySecret names a tenant secret: each tenant calls this provider
	// with its own key (bring your own key).
	APIKeySecret string        `yaml:"api_key_secret"`
	Timeout      time.Duration `yaml:"timeout"`
	MaxRetries   int           `yaml:"max_retries"`
	// MaxTokens is the max_tokens sent when a request sets none (type
	// anthropic, whose API requires one); 0 means 4096.
	MaxTokens int `yaml:"max_tokens"`
}

// Defaults for unset fields.
const (
	DefaultMaxBodyBytes    = 1 << 20
	DefaultMaxOpenTenants  = 0 // the store sizes its pool from the file-descriptor limit
	DefaultHistoryMessages = 50
	OfflineProvider        = "offline"
)

// Load reads the file at path; an empty path gives the defaults.
func Load(path string) (Config, error) {
	if path == "" {
		return Parse(nil)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes YAML strictly (unknown fields are errors) and fills defaults
// (WithDefaults). With no providers declared, the built-in offline model is
// the only one.
func Parse(b []byte) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("parse config: %w", err)
	}
	if _, err := c.PriceTable(); err != nil {
		return Config{}, fmt.Errorf("parse config: %w", err)
	}
	return c.WithDefaults(), nil
}

// WithDefaults returns c with every unset field at its default, so that a
// Config built in code, even the zero value, is the one Parse would give.
// Applying it twice changes nothing.
func (c Config) WithDefaults() Config {
	if len(c.Providers) == 0 {
		c.Providers = []Provider{{Name: OfflineProvider, Type: "scripted"}}
	}
	if c.DefaultModel == "" {
		c.DefaultModel = c.Providers[0].Name + "/default"
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxOpenTenants <= 0 {
		c.MaxOpenTenants = DefaultMaxOpenTenants
	}
	if c.HistoryMessages <= 0 {
		c.HistoryMessages = DefaultHistoryMessages
	}
	if c.Embedder.Type == "" {
		c.Embedder.Type = "offline"
	}
	if c.VectorCacheBytes <= 0 {
		c.VectorCacheBytes = 512 << 20
	}
	if c.ResponseCacheTTL <= 0 {
		c.ResponseCacheTTL = 10 * time.Minute
	}
	if c.ResponseCacheEntries <= 0 {
		c.ResponseCacheEntries = 10_000
	}
	if c.Redis != nil {
		if c.Redis.CacheTimeout <= 0 {
			c.Redis.CacheTimeout = DefaultRedisCacheTimeout
		}
		if c.Redis.LimitTimeout <= 0 {
			c.Redis.LimitTimeout = DefaultRedisLimitTimeout
		}
	}
	if c.EmbeddingCacheEntries <= 0 {
		c.EmbeddingCacheEntries = 100_000
	}
	return c
}

// Models builds the provider registry. getenv supplies provider API keys.
func (c Config) Models(getenv func(string) string) (*llm.Registry, error) {
	reg := llm.NewRegistry()
	for _, p := range c.Providers {
		var prov llm.Provider
		switch p.Type {
		case "scripted":
			prov = llm.NewScripted()
		case "redteam":
			prov = hostile.New()
		case "openai", "anthropic":
			key := ""
			if p.APIKeyEnv != "" {
				if key = getenv(p.APIKeyEnv); key == "" {
					return nil, fmt.Errorf("provider %q: environment variable %s is empty", p.Name, p.APIKeyEnv)
				}
			}
			var err error
			if p.Type == "openai" {
				prov, err = llm.NewOpenAI(llm.OpenAIOptions{BaseURL: p.BaseURL, APIKey: key, Timeout: p.Timeout, MaxRetries: p.MaxRetries})
			} else {
				prov, err = llm.NewAnthropic(llm.AnthropicOptions{BaseURL: p.BaseURL, APIKey: key, Timeout: p.Timeout,
					MaxRetries: p.MaxRetries, MaxTokens: p.MaxTokens})
			}
			if err != nil {
				return nil, fmt.Errorf("provider %q: %w", p.Name, err)
			}
		default:
			return nil, fmt.Errorf("provider %q: unknown type %q (want openai, anthropic, scripted or redteam)", p.Name, p.Type)
		}
		var keySecret tenant.SecretName
		if p.APIKeySecret != "" {
			if p.APIKeyEnv != "" {
				return nil, fmt.Errorf("provider %q: set api_key_env or api_key_secret, not both", p.Name)
			}
			var err error
			if keySecret, err = tenant.ParseSecretName(p.APIKeySecret); err != nil {
				return nil, fmt.Errorf("provider %q: api_key_secret: %w", p.Name, err)
			}
		}
		if err := reg.AddBYOK(p.Name, prov, keySecret); err != nil {
			return nil, fmt.Errorf("provider %q: %w", p.Name, err)
		}
	}
	return reg, nil
}

// DefaultEmbedder names the server's default embedder; OfflineEmbedder the
// built-in one, always available.
const (
	DefaultEmbedder = "default"
	OfflineEmbedder = "offline"
)

// NewEmbedders builds every configured embedder by name: "default" (the
// embedder section), "offline", and each of embedders. getenv supplies keys.
func (c Config) NewEmbedders(getenv func(string) string) (map[string]embed.Embedder, error) {
	out := map[string]embed.Embedder{OfflineEmbedder: embed.NewOffline(0)}
	def, err := newEmbedder(c.Embedder, getenv)
	if err != nil {
		return nil, err
	}
	out[DefaultEmbedder] = def
	for name, spec := range c.Embedders {
		if name == DefaultEmbedder || name == OfflineEmbedder {
			return nil, fmt.Errorf("embedders: %q is reserved", name)
		}
		if spec.Type == "" {
			spec.Type = "offline"
		}
		e, err := newEmbedder(spec, getenv)
		if err != nil {
			return nil, fmt.Errorf("embedders.%s: %w", name, err)
		}
		out[name] = e
	}
	return out, nil
}

func newEmbedder(e Embedder, getenv func(string) string) (embed.Embedder, error) {
	switch e.Type {
	case "offline":
		return embed.NewOffline(e.Dim), nil
	case "openai":
		key := ""
		if e.APIKeyEnv != "" {
			if key = getenv(e.APIKeyEnv); key == "" {
				return nil, fmt.Errorf("embedder: environment variable %s is empty", e.APIKeyEnv)
			}
		}
		if e.Model == "" {
			return nil, fmt.Errorf("embedder: model is required for type openai")
		}
		var keySecret tenant.SecretName
		if e.APIKeySecret != "" {
			if e.APIKeyEnv != "" {
				return nil, fmt.Errorf("embedder: set api_key_env or api_key_secret, not both")
			}
			var err error
			if keySecret, err = tenant.ParseSecretName(e.APIKeySecret); err != nil {
				return nil, fmt.Errorf("embedder: api_key_secret: %w", err)
			}
		}
		o, err := embed.NewOpenAI(embed.OpenAIOptions{BaseURL: e.BaseURL, APIKey: key, KeySecret: keySecret,
			Model: e.Model, Dim: e.Dim, Timeout: e.Timeout})
		if err != nil {
			return nil, fmt.Errorf("embedder: %w", err)
		}
		return o, nil
	}
	return nil, fmt.Errorf("embedder: unknown type %q (want offline or openai)", e.Type)
}
