package tools

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/bulkhead-ai/bulkhead/internal/secret"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// DefaultIdleTimeout is how long an unused MCP session is kept.
const DefaultIdleTimeout = 5 * time.Minute

// childPath is the PATH of an MCP server process, unless its spec's env sets
// one. The server's own environment is never passed on.
const childPath = "/usr/local/bin:/usr/bin:/bin"

// MCPOptions configure an MCPExecutor. The zero value is ready to use.
type MCPOptions struct {
	// Timeout bounds each call, connecting included; 0 means DefaultTimeout.
	Timeout time.Duration
	// MaxOutput bounds the text of a tool result, in bytes; 0 means
	// DefaultMaxOutput.
	MaxOutput int
	// IdleTimeout is how long a session may go unused before it is closed;
	// 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Logger receives session lifecycle events (tenant and transport, never
	// content); nil discards them.
	Logger *slog.Logger
	// HTTPClient's Transport carries streamable HTTP sessions; nil means a
	// transport of the executor's own. Its other fields are not used.
	HTTPClient *http.Client
}

// UpstreamTool is a tool an MCP server offers.
type UpstreamTool struct {
	Name        string
	Description string
	InputSchema json.RawMessage
}

// MCPExecutor runs tools declared with an MCPSpec. It keeps one session per
// tenant, server and credentials — never shared between tenants — and, for
// stdio servers, one process per session, started with none of this
// process's environment. Sessions are created on first use, reused, closed
// after IdleTimeout unused (checked on each use) and re-created if they
// broke. It is safe for concurrent use; Close ends every session.
type MCPExecutor struct {
	timeout   time.Duration
	maxOutput int
	idle      time.Duration
	log       *slog.Logger
	transport http.RoundTripper
	now       func() time.Time

	mu       sync.Mutex
	sessions map[string]*mcpSession
	// live holds every session not yet handed to a closer, in use or not.
	live   map[*mcpSession]bool
	closed bool
	// running counts goroutines the executor owns: one watcher per live
	// session and the closing of retired sessions. Close waits for them.
	running sync.WaitGroup
}

// mcpSession is one upstream session. Fields below ready are set before
// ready is closed; users, lastUsed and retired are guarded by
// MCPExecutor.mu.
type mcpSession struct {
	tenant    tenant.ID
	inc       tenant.Incarnation
	transport string // "http" or "stdio", for logs

	ready chan struct{}
	cs    *mcp.ClientSession
	err   error
	home  string // stdio: the process's private HOME, removed on close
	pid   int    // stdio: the process

	users    int
	lastUsed time.Time
	retired  bool

	// broken is set when the connection ended or a call failed below the
	// protocol: the session is not used again.
	broken atomic.Bool
}

// errClosed is returned after Close.
var errClosed = errors.New("mcp executor closed")

// NewMCP returns an MCPExecutor.
func NewMCP(opts MCPOptions) *MCPExecutor {
	e := &MCPExecutor{
		timeout:   opts.Timeout,
		maxOutput: opts.MaxOutput,
		idle:      opts.IdleTimeout,
		log:       opts.Logger,
		now:       time.Now,
		sessions:  map[string]*mcpSession{},
		live:      map[*mcpSession]bool{},
	}
	if e.timeout <= 0 {
		e.timeout = DefaultTimeout
	}
	if e.maxOutput <= 0 {
		e.maxOutput = DefaultMaxOutput
	}
	if e.idle <= 0 {
		e.idle = DefaultIdleTimeout
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if opts.HTTPClient != nil && opts.HTTPClient.Transport != nil {
		e.transport = opts.HTTPClient.Transport
	} else {
		e.transport = newTransport(e.timeout)
	}
	return e
}

// Execute calls the upstream tool (spec.Tool, or the definition's name) with
// the call's arguments in the tenant's own session. A tool-reported failure
// is a Result with IsError set; a connection or protocol failure is an
// error. Errors never hold the call's secret values.
func (e *MCPExecutor) Execute(ctx context.Context, call Call) (Result, error) {
	if call.Tool == nil || call.Tool.MCP == nil {
		return Result{}, errors.New("mcp executor: tool has no mcp spec")
	}
	name := call.Tool.MCP.Tool
	if name == "" {
		name = call.Tool.Name
	}
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	var res *mcp.CallToolResult
	inc := tenant.Incarnation(call.Tenant)
	if call.Scope.Valid() {
		if call.Scope.Tenant() != call.Tenant {
			return Result{}, errors.New("mcp executor: call's scope is of another tenant")
		}
		inc = call.Scope.Incarnation()
	}
	err := e.use(ctx, inc, *call.Tool.MCP, call.Secrets, func(cs *mcp.ClientSession) error {
		var err error
		var args any = call.Args
		if call.Body != nil {
			// The canonical encoding policy and the guard passed.
			args = json.RawMessage(call.Body)
		}
		res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
		return err
	})
	if err != nil {
		return Result{}, redactError(fmt.Errorf("mcp tool %q: %w", name, err), call.Secrets)
	}
	content, cut := capOutput(resultText(res), e.maxOutput)
	return Result{Content: content, IsError: res.IsError, Truncated: cut}, nil
}

// List returns the tools the server offers, as seen in the own session of
// incarnation id of a tenant.
func (e *MCPExecutor) List(ctx context.Context, id tenant.Incarnation, spec MCPSpec, secrets map[tenant.SecretName]secret.Value) ([]UpstreamTool, error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	var out []UpstreamTool
	err := e.use(ctx, id, spec, secrets, func(cs *mcp.ClientSession) error {
		for t, err := range cs.Tools(ctx, nil) {
			if err != nil {
				return err
			}
			schema, err := json.Marshal(t.InputSchema)
			if err != nil {
				return fmt.Errorf("tool %q: input schema: %w", t.Name, err)
			}
			out = append(out, UpstreamTool{Name: t.Name, Description: t.Description, InputSchema: schema})
		}
		return nil
	})
	if err != nil {
		return nil, redactError(fmt.Errorf("mcp list tools: %w", err), secrets)
	}
	return out, nil
}

// Close closes every session and ends every child process. Calls after
// Close fail.
func (e *MCPExecutor) Close() error {
	e.mu.Lock()
	for key, s := range e.sessions {
		e.retireLocked(key, s, "executor closed")
	}
	// Sessions still in use are closed too: their calls fail.
	for s := range e.live {
		e.closeLaterLocked(s, "executor closed")
	}
	e.closed = true
	e.mu.Unlock()
	e.running.Wait()
	return nil
}

// CloseTenant closes every session of incarnation inc, in use or not (their
// calls fail), and ends their processes, when the tenant is deleted. A
// re-created tenant is another incarnation and never shares them anyway.
func (e *MCPExecutor) CloseTenant(inc tenant.Incarnation) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for key, s := range e.sessions {
		if s.inc == inc {
			e.retireLocked(key, s, "tenant deleted")
		}
	}
	for s := range e.live {
		if s.inc == inc {
			e.closeLaterLocked(s, "tenant deleted")
		}
	}
}

// use runs fn with the session for (incarnation, spec, credentials),
// creating it if needed, and retires the session if fn failed below the MCP
// protocol.
func (e *MCPExecutor) use(ctx context.Context, id tenant.Incarnation, spec MCPSpec, secrets map[tenant.SecretName]secret.Value, fn func(*mcp.ClientSession) error) error {
	if err := tenant.CheckIncarnation(id); err != nil {
		return fmt.Errorf("mcp: %w", err)
	}
	up, err := prepareUpstream(id, spec, secrets)
	if err != nil {
		return err
	}
	s, err := e.acquire(ctx, up)
	if err != nil {
		return err
	}
	defer e.release(up.key, s)
	err = fn(s.cs)
	var rpcErr *jsonrpc.Error
	if err != nil && (!errors.As(err, &rpcErr) || errors.Is(err, mcp.ErrConnectionClosed) || errors.Is(err, mcp.ErrSessionMissing)) {
		// A timeout, a closed connection, a lost session: start afresh
		// next time (for stdio this also ends a runaway process).
		s.broken.Store(true)
	}
	return err
}

// acquire returns the live session for up, connecting a new one if there is
// none. The caller must release it.
func (e *MCPExecutor) acquire(ctx context.Context, up upstream) (*mcpSession, error) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, errClosed
	}
	e.reapLocked()
	s := e.sessions[up.key]
	if s != nil && s.broken.Load() {
		e.retireLocked(up.key, s, "broken")
		s = nil
	}
	if s != nil {
		s.users++
		e.mu.Unlock()
		select {
		case <-s.ready:
		case <-ctx.Done():
			e.release(up.key, s)
			return nil, ctx.Err()
		}
		if s.err != nil {
			e.release(up.key, s)
			return nil, s.err
		}
		return s, nil
	}
	s = &mcpSession{tenant: up.inc.Tenant(), inc: up.inc, transport: up.kind(), ready: make(chan struct{}), users: 1, lastUsed: e.now()}
	e.sessions[up.key] = s
	e.live[s] = true
	// The session's watcher, started once connected.
	e.running.Add(1)
	e.mu.Unlock()

	s.err = e.connect(ctx, up, s)
	close(s.ready)
	if s.err != nil {
		e.running.Done()
		s.broken.Store(true)
		e.release(up.key, s)
		return nil, s.err
	}
	go func() {
		defer e.running.Done()
		_ = s.cs.Wait()
		s.broken.Store(true)
	}()
	e.log.Info("mcp session opened", "tenant", s.tenant, "transport", s.transport, "pid", s.pid)
	return s, nil
}

// release ends one use of s. A retired session is closed by its last user.
func (e *MCPExecutor) release(key string, s *mcpSession) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s.users--
	s.lastUsed = e.now()
	if s.broken.Load() {
		e.retireLocked(key, s, "broken")
	}
	if s.retired && s.users == 0 {
		e.closeLaterLocked(s, "retired")
	}
}

// reapLocked retires the unused sessions that broke or have been idle for
// longer than the idle timeout.
func (e *MCPExecutor) reapLocked() {
	now := e.now()
	for key, s := range e.sessions {
		switch {
		case s.users > 0:
		case s.broken.Load():
			e.retireLocked(key, s, "broken")
		case now.Sub(s.lastUsed) > e.idle:
			e.retireLocked(key, s, "idle")
		}
	}
}

// retireLocked takes s out of use; it is closed now if unused, else by its
// last user.
func (e *MCPExecutor) retireLocked(key string, s *mcpSession, reason string) {
	if e.sessions[key] == s {
		delete(e.sessions, key)
	}
	s.retired = true
	if s.users == 0 {
		e.closeLaterLocked(s, reason)
	}
}

// closeLaterLocked hands s, once, to a goroutine that closes it and that
// Close waits for, so that no caller waits on another session's shutdown.
func (e *MCPExecutor) closeLaterLocked(s *mcpSession, reason string) {
	if !e.live[s] {
		return
	}
	delete(e.live, s)
	e.running.Add(1)
	go func() {
		defer e.running.Done()
		e.closeSession(s, reason)
	}()
}

// closeSession closes s's connection, ends its process and removes its
// HOME.
func (e *MCPExecutor) closeSession(s *mcpSession, reason string) {
	<-s.ready
	if s.cs != nil {
		if err := s.cs.Close(); err != nil {
			e.log.Debug("mcp session close", "tenant", s.tenant, "transport", s.transport, "err", err)
		}
		e.log.Info("mcp session closed", "tenant", s.tenant, "transport", s.transport, "reason", reason)
	}
	if s.home != "" {
		if err := os.RemoveAll(s.home); err != nil {
			e.log.Warn("mcp session home not removed", "tenant", s.tenant, "err", err)
		}
	}
}

// upstream is a server spec with the tenant's credentials filled in.
type upstream struct {
	inc     tenant.Incarnation
	spec    MCPSpec
	headers map[string]string
	env     map[string]string
	// key identifies the session: incarnation, server and credentials, hashed
	// so that no secret is kept as a map key.
	key string
}

func (u upstream) kind() string {
	if u.spec.URL != "" {
		return "http"
	}
	return "stdio"
}

func prepareUpstream(id tenant.Incarnation, spec MCPSpec, secrets map[tenant.SecretName]secret.Value) (upstream, error) {
	if (spec.URL == "") == (len(spec.Command) == 0) {
		return upstream{}, errors.New("mcp: spec needs exactly one of url or command")
	}
	v := values{secrets: secrets}
	up := upstream{inc: id, spec: spec, headers: map[string]string{}, env: map[string]string{}}
	for name, tmpl := range spec.Headers {
		val, err := v.expandHeader(tmpl)
		if err != nil {
			return upstream{}, fmt.Errorf("mcp header %q: %w", name, err)
		}
		up.headers[name] = val
	}
	for name, tmpl := range spec.Env {
		if name == "" || strings.ContainsAny(name, "=\x00") {
			return upstream{}, fmt.Errorf("mcp env: invalid variable name %q", name)
		}
		val, err := v.expandEnv(tmpl)
		if err != nil {
			return upstream{}, fmt.Errorf("mcp env %q: %w", name, err)
		}
		up.env[name] = val
	}
	b, err := json.Marshal(struct {
		Tenant  tenant.Incarnation
		URL     string
		Command []string
		Headers map[string]string
		Env     map[string]string
	}{id, spec.URL, spec.Command, up.headers, up.env})
	if err != nil {
		return upstream{}, fmt.Errorf("mcp: session key: %w", err)
	}
	sum := sha256.Sum256(b)
	up.key = hex.EncodeToString(sum[:])
	return up, nil
}

// connect opens s, a session to up: it sets s.cs and, for stdio, s.home
// and s.pid.
func (e *MCPExecutor) connect(ctx context.Context, up upstream, s *mcpSession) error {
	client := mcp.NewClient(&mcp.Implementation{Name: "bulkhead", Version: "1"}, nil)
	if up.spec.URL != "" {
		target, err := url.Parse(up.spec.URL)
		if err != nil {
			return fmt.Errorf("mcp: url: %w", err)
		}
		t := &mcp.StreamableClientTransport{
			Endpoint: up.spec.URL,
			HTTPClient: &http.Client{
				Transport:     &headerTransport{base: e.transport, scheme: target.Scheme, host: target.Host, headers: up.headers},
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			},
			// Request and response only: no long-lived stream per tenant.
			DisableStandaloneSSE: true,
		}
		cs, err := client.Connect(ctx, t, nil)
		if err != nil {
			return fmt.Errorf("mcp: connect: %w", err)
		}
		s.cs = cs
		return nil
	}

	home, err := os.MkdirTemp("", "bulkhead-mcp-")
	if err != nil {
		return fmt.Errorf("mcp: process home: %w", err)
	}
	cmd := exec.Command(up.spec.Command[0], up.spec.Command[1:]...)
	cmd.Dir = home
	cmd.Env = childEnv(up.env, home)
	cs, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		// The SDK closes (and reaps) the process when the handshake fails;
		// make sure it is gone all the same.
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
		_ = os.RemoveAll(home)
		return fmt.Errorf("mcp: start %q: %w", up.spec.Command[0], err)
	}
	s.cs, s.home, s.pid = cs, home, cmd.Process.Pid
	return nil
}

// childEnv is the whole environment of an MCP server process: PATH, HOME
// and the spec's variables, which may override the first two. Nothing of
// this process's environment (which holds the master key and the admin
// token) is inherited.
func childEnv(env map[string]string, home string) []string {
	all := map[string]string{"PATH": childPath, "HOME": home}
	for k, v := range env {
		all[k] = v
	}
	out := make([]string, 0, len(all))
	for _, k := range slices.Sorted(maps.Keys(all)) {
		out = append(out, k+"="+all[k])
	}
	return out
}

// headerTransport adds a session's headers to its requests, and refuses any
// request to a host other than the session's server.
type headerTransport struct {
	base         http.RoundTripper
	scheme, host string
	headers      map[string]string
}

func (t *headerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != t.scheme || req.URL.Host != t.host {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, fmt.Errorf("mcp: refusing a request to %s://%s, not the server's host", req.URL.Scheme, req.URL.Host)
	}
	r := req.Clone(req.Context())
	for name, val := range t.headers {
		r.Header.Set(name, val)
	}
	return t.base.RoundTrip(r)
}

// resultText renders a tool result as text: text contents joined by
// newlines, other contents summarized; with no content, the structured
// content as JSON.
func resultText(res *mcp.CallToolResult) string {
	parts := make([]string, 0, len(res.Content))
	for _, c := range res.Content {
		switch c := c.(type) {
		case *mcp.TextContent:
			parts = append(parts, c.Text)
		case *mcp.ImageContent:
			parts = append(parts, "[image]")
		case *mcp.AudioContent:
			parts = append(parts, "[audio]")
		case *mcp.ResourceLink:
			parts = append(parts, "[resource link]")
		case *mcp.EmbeddedResource:
			parts = append(parts, "[resource]")
		default:
			parts = append(parts, "[unsupported content]")
		}
	}
	if len(parts) == 0 && res.StructuredContent != nil {
		if b, err := json.Marshal(res.StructuredContent); err == nil {
			parts = append(parts, string(b))
		}
	}
	return strings.Join(parts, "\n")
}
