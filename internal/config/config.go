// Package config reads the server's YAML configuration.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/bulkhead-ai/bulkhead/internal/embed"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Config is the server configuration. The zero value plus Defaults is a
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
	// every replica; otherwise both live in this process.
	Redis *Redis `yaml:"redis"`
}

// Redis locates the shared Redis server.
type Redis struct {
	Addr        string `yaml:"addr"`
	PasswordEnv string `yaml:"password_env"`
	DB          int    `yaml:"db"`
	Prefix      string `yaml:"prefix"` // key prefix, default "bulkhead"
}

// Embedder declares the embedding model: the built-in offline one (default)
// or any OpenAI-compatible /v1/embeddings endpoint (OpenAI, Ollama, vLLM, TEI).
type Embedder struct {
	Type      string        `yaml:"type"` // "offline" (default) or "openai"
	BaseURL   string        `yaml:"base_url"`
	APIKeyEnv string        `yaml:"api_key_env"`
	Model     string        `yaml:"model"`
	Dim       int           `yaml:"dim"`
	Timeout   time.Duration `yaml:"timeout"`
}

// Provider declares one model provider.
type Provider struct {
	Name      string `yaml:"name"`
	Type      string `yaml:"type"` // "openai" or "scripted"
	BaseURL   string `yaml:"base_url"`
	APIKeyEnv string `yaml:"api_key_env"`
	// APIKeySecret names a tenant secret: each tenant calls this provider
	// with its own key (bring your own key).
	APIKeySecret string        `yaml:"api_key_secret"`
	Timeout      time.Duration `yaml:"timeout"`
	MaxRetries   int           `yaml:"max_retries"`
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

// Parse decodes YAML strictly (unknown fields are errors) and fills defaults.
// With no providers declared, the built-in offline model is the only one.
func Parse(b []byte) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("parse config: %w", err)
	}
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
	if c.EmbeddingCacheEntries <= 0 {
		c.EmbeddingCacheEntries = 100_000
	}
	return c, nil
}

// Models builds the provider registry. getenv supplies provider API keys.
func (c Config) Models(getenv func(string) string) (*llm.Registry, error) {
	reg := llm.NewRegistry()
	for _, p := range c.Providers {
		var prov llm.Provider
		switch p.Type {
		case "scripted":
			prov = llm.NewScripted()
		case "openai":
			key := ""
			if p.APIKeyEnv != "" {
				if key = getenv(p.APIKeyEnv); key == "" {
					return nil, fmt.Errorf("provider %q: environment variable %s is empty", p.Name, p.APIKeyEnv)
				}
			}
			o, err := llm.NewOpenAI(llm.OpenAIOptions{BaseURL: p.BaseURL, APIKey: key, Timeout: p.Timeout, MaxRetries: p.MaxRetries})
			if err != nil {
				return nil, fmt.Errorf("provider %q: %w", p.Name, err)
			}
			prov = o
		default:
			return nil, fmt.Errorf("provider %q: unknown type %q (want openai or scripted)", p.Name, p.Type)
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
		o, err := embed.NewOpenAI(embed.OpenAIOptions{BaseURL: e.BaseURL, APIKey: key, Model: e.Model, Dim: e.Dim, Timeout: e.Timeout})
		if err != nil {
			return nil, fmt.Errorf("embedder: %w", err)
		}
		return o, nil
	}
	return nil, fmt.Errorf("embedder: unknown type %q (want offline or openai)", e.Type)
}
