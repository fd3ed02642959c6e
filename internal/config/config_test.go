package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

func TestParseDefaults(t *testing.T) {
	c, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Providers) != 1 || c.Providers[0].Name != OfflineProvider || c.DefaultModel != "offline/default" ||
		c.MaxBodyBytes != DefaultMaxBodyBytes || c.MaxOpenTenants != DefaultMaxOpenTenants {
		t.Fatalf("defaults = %+v", c)
	}
	reg, err := c.Models(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if route, err := reg.Resolve(c.DefaultModel); err != nil || route.Model != "default" {
		t.Fatalf("Resolve(default) = %q, %v", route.Model, err)
	}
}

func TestParseProviders(t *testing.T) {
	yaml := `
providers:
  - name: upstream
    type: openai
    base_url: http://127.0.0.1:9000/v1
    api_key_env: UPSTREAM_KEY
    timeout: 30s
  - name: offline
    type: scripted
default_model: upstream/gpt-4o-mini
max_body_bytes: 2048
`
	c, err := Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxBodyBytes != 2048 || c.DefaultModel != "upstream/gpt-4o-mini" || c.Providers[0].Timeout.Seconds() != 30 {
		t.Fatalf("parsed = %+v", c)
	}
	env := map[string]string{"UPSTREAM_KEY": "sk-test"}
	reg, err := c.Models(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(reg.Names(), ","); got != "offline,upstream" {
		t.Fatalf("providers = %s", got)
	}
	if _, err := reg.Resolve("nosuch/x"); !errors.Is(err, llm.ErrUnknownModel) {
		t.Fatalf("Resolve(nosuch/x): err = %v", err)
	}
	if _, err := c.Models(func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "UPSTREAM_KEY") {
		t.Fatalf("missing api key env: err = %v, want one naming UPSTREAM_KEY", err)
	}
}

func TestBYOKProvider(t *testing.T) {
	c, err := Parse([]byte("providers:\n  - {name: byok, type: openai, base_url: 'http://127.0.0.1:1/v1', api_key_secret: openai_key}\n"))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := c.Models(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if route, err := reg.Resolve("byok/gpt"); err != nil || route.KeySecret != "openai_key" {
		t.Fatalf("Resolve = %+v, %v; want key secret openai_key", route, err)
	}
}

func TestParseErrors(t *testing.T) {
	for name, yaml := range map[string]string{
		"unknown field": "providers:\n  - name: x\n    type: scripted\n    colour: red\n",
		"not yaml":      "providers: [",
	} {
		if _, err := Parse([]byte(yaml)); err == nil {
			t.Errorf("%s: Parse succeeded", name)
		}
	}
	for name, yaml := range map[string]string{
		"unknown type":    "providers:\n  - name: x\n    type: magic\n",
		"duplicate name":  "providers:\n  - {name: x, type: scripted}\n  - {name: x, type: scripted}\n",
		"bad base url":    "providers:\n  - {name: x, type: openai, base_url: 'ftp://h'}\n",
		"env and secret":  "providers:\n  - {name: x, type: openai, base_url: 'http://h', api_key_env: K, api_key_secret: k}\n",
		"bad secret name": "providers:\n  - {name: x, type: openai, base_url: 'http://h', api_key_secret: 'Bad Name'}\n",
	} {
		c, err := Parse([]byte(yaml))
		if err != nil {
			t.Fatalf("%s: Parse: %v", name, err)
		}
		if _, err := c.Models(func(string) string { return "" }); err == nil {
			t.Errorf("%s: Models succeeded", name)
		}
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("max_open_tenants: 7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil || c.MaxOpenTenants != 7 {
		t.Fatalf("Load = %+v, %v", c, err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("Load of a missing file succeeded")
	}
}

func TestEmbedders(t *testing.T) {
	c, err := Parse([]byte("embedders:\n  semantic:\n    type: openai\n    base_url: http://127.0.0.1:11434/v1\n    model: nomic-embed-text\n"))
	if err != nil {
		t.Fatal(err)
	}
	es, err := c.NewEmbedders(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"default", "offline", "semantic"} {
		if es[name] == nil {
			t.Errorf("embedder %q missing", name)
		}
	}
	if _, err := (Config{Embedder: Embedder{Type: "magic"}}).NewEmbedders(func(string) string { return "" }); err == nil {
		t.Error("unknown embedder type accepted")
	}
}

func TestEmbedderKeySecret(t *testing.T) {
	byok := Embedder{Type: "openai", BaseURL: "http://127.0.0.1:11434/v1", Model: "m", APIKeySecret: "embed_key"}
	es, err := Config{Embedders: map[string]Embedder{"byok": byok}}.WithDefaults().NewEmbedders(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	k, ok := es["byok"].(interface{ KeySecret() tenant.SecretName })
	if !ok || k.KeySecret() != "embed_key" {
		t.Fatalf("embedder byok = %v, want one taking the tenant secret embed_key", es["byok"])
	}
	for name, e := range map[string]Embedder{
		"both":     {Type: "openai", BaseURL: byok.BaseURL, Model: "m", APIKeySecret: "embed_key", APIKeyEnv: "K"},
		"bad name": {Type: "openai", BaseURL: byok.BaseURL, Model: "m", APIKeySecret: "bad name!"},
	} {
		if _, err := (Config{Embedders: map[string]Embedder{"x": e}}).WithDefaults().NewEmbedders(func(string) string { return "v" }); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestWithDefaults(t *testing.T) {
	parsed, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   Config
		want Config
	}{
		{"zero is what Parse gives", Config{}, parsed},
		{"twice is once", parsed, parsed},
		{"set fields are kept", Config{MaxBodyBytes: 8 << 10, MaxOpenTenants: 3}, func() Config {
			c := parsed
			c.MaxBodyBytes, c.MaxOpenTenants = 8<<10, 3
			return c
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.WithDefaults(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("WithDefaults:\ngot  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestRedisTimeouts(t *testing.T) {
	tests := []struct {
		yaml         string
		cache, limit time.Duration
	}{
		{"redis: {addr: 127.0.0.1:6379}", DefaultRedisCacheTimeout, DefaultRedisLimitTimeout},
		{"redis: {addr: 127.0.0.1:6379, cache_timeout: 20ms, limit_timeout: 250ms}", 20 * time.Millisecond, 250 * time.Millisecond},
	}
	for _, tt := range tests {
		c, err := Parse([]byte(tt.yaml))
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.yaml, err)
		}
		if c.Redis.CacheTimeout != tt.cache || c.Redis.LimitTimeout != tt.limit {
			t.Errorf("Parse(%q): cache %v, limit %v; want %v, %v", tt.yaml, c.Redis.CacheTimeout, c.Redis.LimitTimeout, tt.cache, tt.limit)
		}
	}
}

// TestRedisClientOptions: the shared client respects per-call deadlines and
// never retries or waits long on its own.
func TestRedisClientOptions(t *testing.T) {
	client := Redis{Addr: "127.0.0.1:1", PasswordEnv: "PW", DB: 2}.NewClient(func(k string) string { return "secret-" + k })
	defer client.Close()
	o := client.Options()
	if !o.ContextTimeoutEnabled {
		t.Error("ContextTimeoutEnabled = false: go-redis would ignore the callers' deadlines")
	}
	if o.MaxRetries != -1 && o.MaxRetries != 0 {
		t.Errorf("MaxRetries = %d; want none", o.MaxRetries)
	}
	for name, d := range map[string]time.Duration{"DialTimeout": o.DialTimeout, "ReadTimeout": o.ReadTimeout,
		"WriteTimeout": o.WriteTimeout, "PoolTimeout": o.PoolTimeout} {
		if d <= 0 || d > time.Second {
			t.Errorf("%s = %v; want at most 1s", name, d)
		}
	}
	if o.Addr != "127.0.0.1:1" || o.Password != "secret-PW" || o.DB != 2 {
		t.Errorf("Addr, Password, DB = %q, %q, %d", o.Addr, o.Password, o.DB)
	}
}

func TestAnthropicProvider(t *testing.T) {
	c, err := Parse([]byte("providers:\n  - {name: claude, type: anthropic, api_key_env: ANT_KEY, max_tokens: 1000}\n  - {name: mine, type: anthropic, base_url: 'http://127.0.0.1:1', api_key_secret: anthropic_key}\n"))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := c.Models(func(k string) string { return map[string]string{"ANT_KEY": "sk-ant"}[k] })
	if err != nil {
		t.Fatal(err)
	}
	for model, wantSecret := range map[string]string{"claude/claude-x": "", "mine/claude-y": "anthropic_key"} {
		route, err := reg.Resolve(model)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := route.Provider.(*llm.Anthropic); !ok || string(route.KeySecret) != wantSecret {
			t.Errorf("%s: provider %T, key secret %q", model, route.Provider, route.KeySecret)
		}
	}
	if _, err := c.Models(func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "ANT_KEY") {
		t.Errorf("missing key: err = %v", err)
	}
	bad, err := Parse([]byte("providers:\n  - {name: x, type: anthropic, base_url: 'ftp://h'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Models(func(string) string { return "" }); err == nil {
		t.Error("anthropic with an ftp base_url: no error")
	}
}

func TestParsePrices(t *testing.T) {
	for _, tt := range []struct {
		name    string
		yaml    string
		want    map[string]llm.Price
		wantErr string // a substring of the error; "" for none
	}{
		{name: "none", yaml: ``, want: map[string]llm.Price{}},
		{name: "one model", yaml: `
prices:
  upstream/gpt-4o-mini: {input: 0.15, cached_input: 0.075, output: 0.6}
`, want: map[string]llm.Price{"upstream/gpt-4o-mini": {InputMicroUSD: 150_000, CachedInputMicroUSD: 75_000, OutputMicroUSD: 600_000}}},
		{name: "free model", yaml: `
prices:
  offline/default: {}
`, want: map[string]llm.Price{"offline/default": {}}},
		{name: "negative output", yaml: `
prices:
  upstream/gpt-4o: {input: 2.5, output: -10}
`, wantErr: `model "upstream/gpt-4o": output`},
		{name: "negative cached input", yaml: `
prices:
  upstream/gpt-4o: {cached_input: -1}
`, wantErr: `model "upstream/gpt-4o": cached_input`},
		{name: "no provider", yaml: `
prices:
  gpt-4o: {input: 1}
`, wantErr: `"gpt-4o" is not`},
		{name: "unknown field", yaml: `
prices:
  upstream/gpt-4o: {inputs: 1}
`, wantErr: "inputs"},
		{name: "absurd", yaml: `
prices:
  upstream/gpt-4o: {input: 1e30}
`, wantErr: `model "upstream/gpt-4o": input`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse: err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.PriceTable()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("PriceTable() = %+v, want %+v", got, tt.want)
			}
		})
	}
}
