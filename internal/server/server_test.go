package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/bulkhead-ai/bulkhead/internal/agent"
	"github.com/bulkhead-ai/bulkhead/internal/audit"
	"github.com/bulkhead-ai/bulkhead/internal/cache"
	"github.com/bulkhead-ai/bulkhead/internal/config"
	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/guard"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/lifecycle"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/store/sqlite"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/testenv"
	"github.com/bulkhead-ai/bulkhead/internal/tools"
)

// testAdminToken is the operator's token in every test server.
const testAdminToken = "test-admin-token-0123456789abcdef"

// envOptions tunes newTestEnv; the zero value is what serve runs.
type envOptions struct {
	maxBodyBytes int64                   // 0: the default, 1 MiB
	maxOpen      int                     // open tenant databases; 0: the default, 128
	providers    map[string]llm.Provider // registered besides "offline"
	// wrap, if set, wraps the server's handler, to observe requests.
	wrap func(http.Handler) http.Handler
	// byok registers providers that use each tenant's own key, from the
	// named tenant secret.
	byok   map[string]byokProvider
	logger *slog.Logger // nil: discard
	// quota, if set, replaces the in-memory limiter (e.g. Redis).
	quota envQuota
	// cache, if set, replaces the in-memory response cache backend.
	cache cache.Backend
	// auditStore, if set, wraps the store the audit log writes to.
	auditStore func(audit.Store) audit.Store
	// database, if set, keeps everything in PostgreSQL (see
	// postgresDatabase), and masterKey, if set, is the KEK: replicas of one
	// deployment share both.
	database  *config.Database
	masterKey []byte
	// env is the server's environment (config's *_env settings read it).
	env map[string]string
	// redis, if set, holds limits and the response cache (serve's wiring).
	redis *config.Redis
	// embedders are configured besides "default" and "offline".
	embedders map[string]config.Embedder
	// metrics and telemetry are the config's sections; spans, if set,
	// receives every span (Options.SpanExporter).
	metrics   config.Metrics
	telemetry config.Telemetry
	spans     sdktrace.SpanExporter
	// prices is the config's price table.
	prices map[string]config.Price
}

// envQuota is a limiter the test environment can use.
type envQuota interface {
	agent.Quota
	lifecycle.Quota
}

type byokProvider struct {
	provider llm.Provider
	secret   tenant.SecretName
}

// testEnv is a real server, built by Open as serve builds it (control plane,
// per-tenant SQLite stores, the scripted "offline" model, the agent and the
// background work), behind an httptest.Server.
type testEnv struct {
	srv     *httptest.Server
	client  *http.Client
	plane   *control.Plane
	stores  TenantStore
	life    *lifecycle.Lifecycle
	mcp     *tools.MCPExecutor
	dataDir string
	guard   *guard.Guard
}

func newTestEnv(t testing.TB, opts envOptions) *testEnv {
	t.Helper()
	dir := t.TempDir()
	masterKey := opts.masterKey
	if masterKey == nil {
		var err error
		if masterKey, err = keyring.NewKey(); err != nil {
			t.Fatal(err)
		}
	}
	var providers []Provider
	for name, p := range opts.providers {
		providers = append(providers, Provider{Name: name, Provider: p})
	}
	for name, p := range opts.byok {
		providers = append(providers, Provider{Name: name, Provider: p.provider, KeySecret: p.secret})
	}
	o := Options{
		DataDir: dir,
		Config: config.Config{MaxBodyBytes: opts.maxBodyBytes, MaxOpenTenants: opts.maxOpen,
			Database: opts.database, Redis: opts.redis, Embedders: opts.embedders,
			Metrics: opts.metrics, Telemetry: opts.telemetry, Prices: opts.prices},
		AdminToken:     testAdminToken,
		MasterKey:      masterKey,
		Getenv:         func(k string) string { return opts.env[k] },
		Logger:         opts.logger,
		Providers:      providers,
		Quota:          opts.quota,
		ResponseCache:  opts.cache,
		WrapAuditStore: opts.auditStore,
		SpanExporter:   opts.spans,
	}
	inst, err := Open(t.Context(), o)
	if err != nil {
		t.Fatalf("open server: %v", err)
	}
	h := inst.Handler()
	if opts.wrap != nil {
		h = opts.wrap(h)
	}
	srv := httptest.NewServer(h)
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 512
	t.Cleanup(func() {
		srv.Close()
		tr.CloseIdleConnections()
		if err := inst.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
	})
	return &testEnv{srv: srv, client: &http.Client{Transport: tr}, plane: inst.Plane(), stores: inst.Stores(),
		life: inst.Lifecycle(), mcp: inst.MCP(), dataDir: dir, guard: inst.Guard()}
}

// postgresDatabase is a PostgreSQL database of the test's own, with an owner
// role and an unprivileged application role, as a deployment has them.
func postgresDatabase(t testing.TB) (*config.Database, map[string]string) {
	t.Helper()
	ownerURL, appURL := testenv.PostgresRoles(t)
	return &config.Database{URL: appURL}, map[string]string{config.DefaultOwnerURLEnv: ownerURL}
}

// incarnation returns tenant id's current incarnation.
func (e *testEnv) incarnation(t testing.TB, id tenant.ID) tenant.Incarnation {
	t.Helper()
	tn, err := e.plane.Tenant(id)
	if err != nil {
		t.Fatal(err)
	}
	return tn.Incarnation()
}

// response is a read HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

// send makes one request. body is sent as is when it is a string, as JSON
// otherwise, and not at all when nil. An empty token sends no Authorization.
func (e *testEnv) send(ctx context.Context, method, path, token string, body any, header map[string]string) (response, error) {
	req, err := e.newRequest(ctx, method, path, token, body, header)
	if err != nil {
		return response{}, err
	}
	return e.roundTrip(req)
}

// newRequest builds a request as send describes.
func (e *testEnv) newRequest(ctx context.Context, method, path, token string, body any, header map[string]string) (*http.Request, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, e.srv.URL+path, rd)
	if err != nil {
		return nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return req, nil
}

// roundTrip sends req and reads the whole response.
func (e *testEnv) roundTrip(req *http.Request) (response, error) {
	resp, err := e.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// do is send for the test goroutine: a transport failure ends the test.
func (e *testEnv) do(t testing.TB, method, path, token string, body any, header map[string]string) response {
	t.Helper()
	r, err := e.send(t.Context(), method, path, token, body, header)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// admin sends an admin API request and checks its status.
func (e *testEnv) admin(t testing.TB, method, path string, body any, wantStatus int) response {
	t.Helper()
	r := e.do(t, method, path, testAdminToken, body, nil)
	if r.status != wantStatus {
		t.Fatalf("%s %s: got %v, want status %d", method, path, r, wantStatus)
	}
	return r
}

// createTenant creates a tenant from an admin API body.
func (e *testEnv) createTenant(t testing.TB, body map[string]any) {
	t.Helper()
	e.admin(t, "POST", "/admin/v1/tenants", body, http.StatusCreated)
}

// newKey makes an API key for tenant id and returns its id and secret.
func (e *testEnv) newKey(t testing.TB, id string) (keyID, key string) {
	t.Helper()
	r := e.admin(t, "POST", "/admin/v1/tenants/"+id+"/keys", nil, http.StatusCreated)
	var k struct{ ID, Key, Tenant string }
	if err := json.Unmarshal(r.body, &k); err != nil {
		t.Fatalf("decode key: %v (%s)", err, r.body)
	}
	if k.ID == "" || !strings.HasPrefix(k.Key, "bk_") || k.Tenant != id {
		t.Fatalf("new key for %s: got %s, want id, bk_ key and tenant %q", id, r.body, id)
	}
	return k.ID, k.Key
}

// chatCall is one chat completion request.
type chatCall struct {
	key     string
	session string // X-Session-Id; empty: none
	user    string
	model   string
	content string // one user message
	stream  bool
	usage   bool              // stream_options.include_usage
	extra   map[string]any    // more body fields
	header  map[string]string // more headers
	query   string            // appended to the path, with "?"
}

func (c chatCall) body() map[string]any {
	b := map[string]any{"messages": []map[string]any{{"role": "user", "content": c.content}}}
	if c.user != "" {
		b["user"] = c.user
	}
	if c.model != "" {
		b["model"] = c.model
	}
	if c.stream {
		b["stream"] = true
		if c.usage {
			b["stream_options"] = map[string]any{"include_usage": true}
		}
	}
	for k, v := range c.extra {
		b[k] = v
	}
	return b
}

func (e *testEnv) sendChat(ctx context.Context, c chatCall) (response, error) {
	req, err := e.chatRequest(ctx, c)
	if err != nil {
		return response{}, err
	}
	return e.roundTrip(req)
}

func (e *testEnv) chatRequest(ctx context.Context, c chatCall) (*http.Request, error) {
	header := map[string]string{}
	for k, v := range c.header {
		header[k] = v
	}
	if c.session != "" {
		header["X-Session-Id"] = c.session
	}
	path := "/v1/chat/completions"
	if c.query != "" {
		path += "?" + c.query
	}
	return e.newRequest(ctx, "POST", path, c.key, c.body(), header)
}

func (e *testEnv) chat(t testing.TB, c chatCall) response {
	t.Helper()
	r, err := e.sendChat(t.Context(), c)
	if err != nil {
		t.Fatalf("chat: %v", err)
	}
	return r
}

// say sends a chat request that must succeed and returns the answer, joined
// from its deltas when streamed.
func (e *testEnv) say(t testing.TB, c chatCall) string {
	t.Helper()
	r := e.chat(t, c)
	if r.status != http.StatusOK {
		t.Fatalf("chat %q: got %v, want 200", c.content, r)
	}
	if c.stream {
		s, err := parseSSE(r)
		if err != nil {
			t.Fatal(err)
		}
		return s.content
	}
	content, err := answer(r)
	if err != nil {
		t.Fatal(err)
	}
	return content
}

// wireCompletion decodes both chat.completion and chat.completion.chunk.
type wireCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []wireChoice `json:"choices"`
	Usage   *llm.Usage   `json:"usage"`
}

type wireChoice struct {
	Index   int `json:"index"`
	Message *struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"message"`
	Delta *struct {
		Role    *string `json:"role"`
		Content *string `json:"content"`
	} `json:"delta"`
	FinishReason *string `json:"finish_reason"`
}

// answer returns the assistant content of a non-streamed response.
// unseen hides content from everything but the scripted model (see
// llm.Scripted's "/unshift "): the request's own inputs then do not carry
// what the model says, as when a model learned it elsewhere (a shared
// cache or provider). A leak test must use it: another tenant's canary or
// secret that the client itself sent passes (guard.Inputs).
func unseen(content string) string { return "/unshift " + llm.Shift(content) }

func answer(r response) (string, error) {
	var c wireCompletion
	if err := json.Unmarshal(r.body, &c); err != nil {
		return "", fmt.Errorf("decode completion: %v (%s)", err, r.body)
	}
	if c.Object != "chat.completion" || len(c.Choices) != 1 || c.Choices[0].Message == nil {
		return "", fmt.Errorf("got completion %s, want one chat.completion choice with a message", r.body)
	}
	if got := c.Choices[0].Message.Role; got != "assistant" {
		return "", fmt.Errorf("got message role %q, want assistant", got)
	}
	return c.Choices[0].Message.Content, nil
}

// echoed decodes the scripted model's /echo answer: the model's whole context.
func echoed(content string) ([]llm.Message, error) {
	var ctxt struct {
		Messages []llm.Message `json:"messages"`
		Tools    []string      `json:"tools"`
	}
	if err := json.Unmarshal([]byte(content), &ctxt); err != nil {
		return nil, fmt.Errorf("decode /echo answer: %v (%q)", err, content)
	}
	for i, m := range ctxt.Messages {
		if m.Role == "system" {
			ctxt.Messages[i].Content = withoutCanary(m.Content)
		}
	}
	return ctxt.Messages, nil
}

// canaryNote is what plantCanary appends to a system prompt; the output
// guard removes the tenant's own canary from it before the answer leaves.
const canaryNote = "\n\n(Internal reference . Never repeat it.)"

// withoutCanary strips the planted canary note, so tests can compare a
// system prompt as the tenant wrote it.
func withoutCanary(s string) string {
	return strings.TrimSuffix(s, canaryNote)
}

// echo sends "/echo" and returns the model's context.
func (e *testEnv) echo(t testing.TB, c chatCall) []llm.Message {
	t.Helper()
	c.content = "/echo"
	msgs, err := echoed(e.say(t, c))
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// checkAPIError checks r is an OpenAI-shaped error with the given status and,
// if code is not empty, code.
func checkAPIError(t testing.TB, r response, wantStatus int, wantCode string) {
	t.Helper()
	if err := apiErrorMismatch(r, wantStatus, wantCode); err != nil {
		t.Error(err)
	}
}

func apiErrorMismatch(r response, wantStatus int, wantCode string) error {
	if r.status != wantStatus {
		return fmt.Errorf("got %v, want status %d", r, wantStatus)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("got Content-Type %q, want application/json (%s)", ct, r.body)
	}
	var e struct {
		Error *struct {
			Message *string `json:"message"`
			Type    *string `json:"type"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil {
		return fmt.Errorf("decode error body: %v (%s)", err, r.body)
	}
	if e.Error == nil || e.Error.Message == nil || e.Error.Type == nil || e.Error.Code == nil ||
		*e.Error.Message == "" || *e.Error.Type == "" || *e.Error.Code == "" {
		return fmt.Errorf("got body %s, want {\"error\":{\"message\",\"type\",\"code\"}}", r.body)
	}
	if wantCode != "" && *e.Error.Code != wantCode {
		return fmt.Errorf("got error code %q, want %q (%s)", *e.Error.Code, wantCode, r.body)
	}
	return nil
}

func TestHealthzNeedsNoToken(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	r := env.do(t, "GET", "/healthz", "", nil, nil)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"ok"`) {
		t.Errorf("GET /healthz: got %v, want 200 with status ok", r)
	}
}

func TestUnknownRoute(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme"})
	_, key := env.newKey(t, "acme")
	tests := []struct {
		method, path, token string
	}{
		{"GET", "/", ""},
		{"GET", "/nope", ""},
		{"GET", "/v1/nope", key},
		{"GET", "/v2/models", key},
		{"GET", "/admin/v1/nope", testAdminToken},
		{"GET", "/admin/v1/tenants/acme/nope", testAdminToken},
		// A tenant API path never names a tenant.
		{"GET", "/v1/tenants/globex/models", key},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			checkAPIError(t, env.do(t, tt.method, tt.path, tt.token, nil, nil), http.StatusNotFound, "not_found")
		})
	}
}

func TestWrongMethod(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme"})
	_, key := env.newKey(t, "acme")
	tests := []struct {
		method, path, token string
	}{
		{"GET", "/v1/chat/completions", key},
		{"PUT", "/v1/chat/completions", key},
		{"POST", "/v1/models", key},
		{"DELETE", "/healthz", ""},
		{"PUT", "/admin/v1/tenants", testAdminToken},
		{"POST", "/admin/v1/tenants/acme", testAdminToken},
		{"PUT", "/admin/v1/tenants/acme/keys", testAdminToken},
		{"PUT", "/v1/documents", key},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			checkAPIError(t, env.do(t, tt.method, tt.path, tt.token, nil, nil), http.StatusMethodNotAllowed, "method_not_allowed")
		})
	}
}

func TestAuthentication(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme"})
	env.createTenant(t, map[string]any{"id": "globex"})
	keyID, key := env.newKey(t, "acme")
	_, globexKey := env.newKey(t, "globex")
	// Same key id, wrong secret; and acme's id with globex's secret.
	wrongSecret := "bk_" + keyID + "_" + strings.Repeat("A", 43)
	spliced := key[:len("bk_")+16] + globexKey[len("bk_")+16:]

	chatBody := chatCall{content: "hi"}.body()
	tenantRoutes := []struct {
		method, path string
		body         any
	}{
		{"POST", "/v1/chat/completions", chatBody},
		{"GET", "/v1/models", nil},
	}
	adminRoutes := []struct {
		method, path string
		body         any
	}{
		{"GET", "/admin/v1/tenants", nil},
		{"POST", "/admin/v1/tenants", map[string]any{"id": "evil"}},
		{"GET", "/admin/v1/tenants/acme", nil},
		{"PATCH", "/admin/v1/tenants/globex", map[string]any{"status": "suspended"}},
		{"DELETE", "/admin/v1/tenants/globex", nil},
		{"POST", "/admin/v1/tenants/globex/keys", nil},
		{"DELETE", "/admin/v1/tenants/acme/keys/" + keyID, nil},
	}
	creds := []struct {
		name   string
		header string // Authorization; empty: none
		tenant bool   // valid on the tenant API
		admin  bool   // valid on the admin API
	}{
		{"none", "", false, false},
		{"empty bearer", "Bearer ", false, false},
		{"basic", "Basic " + key, false, false},
		{"no scheme", key, false, false},
		{"token scheme", "Token " + key, false, false},
		{"truncated key", "Bearer " + key[:len(key)-1], false, false},
		{"key plus junk", "Bearer " + key + "x", false, false},
		{"wrong secret", "Bearer " + wrongSecret, false, false},
		{"spliced key", "Bearer " + spliced, false, false},
		{"garbage", "Bearer not-a-key", false, false},
		{"admin token as tenant key", "Bearer " + testAdminToken, false, true},
		{"tenant key", "Bearer " + key, true, false},
	}
	for _, c := range creds {
		check := func(t *testing.T, method, path string, body any, ok bool) {
			header := map[string]string{}
			if c.header != "" {
				header["Authorization"] = c.header
			}
			r := env.do(t, method, path, "", body, header)
			if ok {
				if r.status == http.StatusUnauthorized || r.status == http.StatusForbidden {
					t.Errorf("got %v, want success", r)
				}
				return
			}
			checkAPIError(t, r, http.StatusUnauthorized, "invalid_api_key")
		}
		t.Run(c.name, func(t *testing.T) {
			for _, rt := range tenantRoutes {
				t.Run(rt.method+" "+rt.path, func(t *testing.T) { check(t, rt.method, rt.path, rt.body, c.tenant) })
			}
			if c.admin {
				return // do not run destructive admin calls
			}
			for _, rt := range adminRoutes {
				t.Run(rt.method+" "+rt.path, func(t *testing.T) { check(t, rt.method, rt.path, rt.body, false) })
			}
		})
	}
	// Nothing above changed globex.
	if got := env.say(t, chatCall{key: globexKey, content: "/say still here"}); got != "still here" {
		t.Errorf("globex after attacks: got %q, want %q", got, "still here")
	}
	if _, err := env.plane.Tenant("evil"); err == nil {
		t.Errorf("tenant evil exists, want no tenant created without the admin token")
	}
}

// markers finds the isolation markers of TestConcurrentTenantsAndSessions:
// "MK-tNN-KM" (a tenant's prompt) and "MK-tNN-sNN-KM" (one session's fact).
var markers = regexp.MustCompile(`MK-t\d\d(?:-s\d\d)?-KM`)

// foreignMarker returns the first marker in text that is neither tenant's
// nor its session's, or "".
func foreignMarker(text, tenantMark, sessionMark string) string {
	for _, m := range markers.FindAllString(text, -1) {
		if m != tenantMark && m != sessionMark {
			return m
		}
	}
	return ""
}

// TestConcurrentTenantsAndSessions runs many tenants and sessions at once,
// with fewer tenant databases open than tenants and some requests cancelled,
// and checks every answer and every stored history holds only its own
// tenant's and session's data.
func TestConcurrentTenantsAndSessions(t *testing.T) {
	const (
		tenants  = 50
		sessions = 20
	)
	// A request with header X-Test-Cancel is cancelled by its client once
	// the server has begun handling it, so the cancellation lands mid-flight.
	var cancels sync.Map // X-Test-Cancel → context.CancelFunc
	var nextID atomic.Int64
	wrap := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if cancel, ok := cancels.LoadAndDelete(r.Header.Get("X-Test-Cancel")); ok {
				time.AfterFunc(time.Duration(rand.N(2000))*time.Microsecond, cancel.(context.CancelFunc))
			}
			h.ServeHTTP(w, r)
		})
	}
	env := newTestEnv(t, envOptions{maxOpen: 16, wrap: wrap})
	keys := make([]string, tenants)
	for i := range tenants {
		id := fmt.Sprintf("t%02d", i)
		env.createTenant(t, map[string]any{"id": id, "system_prompt": "PROMPT MK-" + id + "-KM"})
		_, keys[i] = env.newKey(t, id)
	}

	type outcome struct {
		cancelled   bool // the first turn was to be cancelled by the client
		interrupted bool // and the cancellation cut it short
		err         error
	}
	results := make([][]outcome, tenants)
	for i := range results {
		results[i] = make([]outcome, sessions)
	}

	// turn sends one request; a streamed answer is joined from its deltas.
	turn := func(ctx context.Context, c chatCall) (string, error) {
		r, err := env.sendChat(ctx, c)
		if err != nil {
			return "", err
		}
		if r.status != http.StatusOK {
			return "", fmt.Errorf("got %v, want 200", r)
		}
		if c.stream {
			s, err := parseSSE(r)
			if err != nil {
				return "", err
			}
			return s.content, nil
		}
		return answer(r)
	}

	// cancelledTurn sends one request and cancels it mid-flight: a stream
	// after its first event, another request once the server has it.
	cancelledTurn := func(c chatCall) (string, error) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if !c.stream {
			id := strconv.FormatInt(nextID.Add(1), 10)
			cancels.Store(id, cancel)
			defer cancels.Delete(id)
			c.header = map[string]string{"X-Test-Cancel": id}
			return turn(ctx, c)
		}
		req, err := env.chatRequest(ctx, c)
		if err != nil {
			return "", err
		}
		resp, err := env.client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		first, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		cancel()
		rest, err := io.ReadAll(br)
		if err != nil {
			return "", err
		}
		// The whole stream arrived before the cancellation.
		s, err := parseSSE(response{status: resp.StatusCode, header: resp.Header, body: []byte(first + string(rest))})
		if err != nil {
			return "", err
		}
		return s.content, nil
	}

	run := func(ti, si int) outcome {
		tid, sid := fmt.Sprintf("t%02d", ti), fmt.Sprintf("s%02d", si)
		tenantMark, sessionMark := "MK-"+tid+"-KM", "MK-"+tid+"-"+sid+"-KM"
		c := chatCall{key: keys[ti], session: sid, user: "alice", stream: si%2 == 1,
			content: "remember " + sessionMark}

		// Turn 1, cancelled mid-flight for every fifth session, half of
		// them streamed.
		cancelled := si%5 == 0
		var got string
		var err error
		if cancelled {
			got, err = cancelledTurn(c)
		} else {
			got, err = turn(context.Background(), c)
		}
		interrupted := err != nil
		switch {
		case err != nil && !cancelled:
			return outcome{cancelled, interrupted, fmt.Errorf("turn 1: %w", err)}
		case err == nil && !strings.Contains(got, sessionMark):
			return outcome{cancelled, interrupted, fmt.Errorf("turn 1: got %q, want it to repeat %s", got, sessionMark)}
		case err == nil && foreignMarker(got, tenantMark, sessionMark) != "":
			return outcome{cancelled, interrupted, fmt.Errorf("turn 1: answer %q holds foreign %s", got, foreignMarker(got, tenantMark, sessionMark))}
		}

		// Turn 2 shows the model's context: the prompt and at most turn 1.
		c.content = "/echo"
		c.stream = si%3 == 0
		got, err = turn(context.Background(), c)
		if err != nil {
			return outcome{cancelled, interrupted, fmt.Errorf("turn 2: %w", err)}
		}
		if m := foreignMarker(got, tenantMark, sessionMark); m != "" {
			return outcome{cancelled, interrupted, fmt.Errorf("turn 2: context holds foreign %s: %s", m, got)}
		}
		msgs, err := echoed(got)
		if err != nil {
			return outcome{cancelled, interrupted, fmt.Errorf("turn 2: %w", err)}
		}
		if len(msgs) == 0 || msgs[0].Role != "system" || msgs[0].Content != "PROMPT "+tenantMark {
			return outcome{cancelled, interrupted, fmt.Errorf("turn 2: context %s, want it to start with system prompt %q", got, "PROMPT "+tenantMark)}
		}
		if !cancelled && (len(msgs) != 4 || msgs[1].Content != "remember "+sessionMark) {
			return outcome{cancelled, interrupted, fmt.Errorf("turn 2: context %s, want system, turn 1 (2 messages) and /echo", got)}
		}
		return outcome{cancelled: cancelled, interrupted: interrupted}
	}

	var wg sync.WaitGroup
	for ti := range tenants {
		for si := range sessions {
			wg.Go(func() { results[ti][si] = run(ti, si) })
		}
	}
	wg.Wait()
	failures, interrupted := 0, 0
	for ti := range tenants {
		for si := range sessions {
			if results[ti][si].interrupted {
				interrupted++
			}
			if err := results[ti][si].err; err != nil && failures < 10 {
				failures++
				t.Errorf("tenant t%02d session s%02d: %v", ti, si, err)
			}
		}
	}
	t.Logf("%d of %d cancelled first turns were cut short", interrupted, tenants*sessions/5)
	if t.Failed() {
		return
	}

	// Read every stored history back, again all at once.
	readBack := func(ti, si int) error {
		tid, sid := fmt.Sprintf("t%02d", ti), fmt.Sprintf("s%02d", si)
		tenantMark, sessionMark := "MK-"+tid+"-KM", "MK-"+tid+"-"+sid+"-KM"
		got, err := turn(context.Background(), chatCall{key: keys[ti], session: sid, user: "alice", content: "/echo"})
		if err != nil {
			return err
		}
		if m := foreignMarker(got, tenantMark, sessionMark); m != "" {
			return fmt.Errorf("history holds foreign %s: %s", m, got)
		}
		msgs, err := echoed(got)
		if err != nil {
			return err
		}
		// system + stored history + this /echo.
		stored := len(msgs) - 2
		want := []int{4}
		if results[ti][si].cancelled {
			want = []int{2, 4}
		}
		ok := false
		for _, w := range want {
			ok = ok || stored == w
		}
		if !ok {
			return fmt.Errorf("got %d stored messages, want one of %v: %s", stored, want, got)
		}
		for _, m := range msgs[1 : len(msgs)-1] {
			if !strings.Contains(m.Content, sessionMark) && !strings.Contains(m.Content, tenantMark) && m.Content != "/echo" {
				return fmt.Errorf("stored message %q is not from this session (%s)", m.Content, sessionMark)
			}
		}
		return nil
	}
	errs := make(chan error, tenants*sessions)
	for ti := range tenants {
		for si := range sessions {
			wg.Go(func() {
				if err := readBack(ti, si); err != nil {
					errs <- fmt.Errorf("read back t%02d/s%02d: %w", ti, si, err)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	failures = 0
	for err := range errs {
		if failures++; failures <= 10 {
			t.Error(err)
		}
	}
	if n := env.stores.(*sqlite.DB).OpenHandles(); n > 16 {
		t.Errorf("got %d open tenant databases, want at most MaxOpen 16", n)
	}
}
