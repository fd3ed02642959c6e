// Package mcpserver serves a tenant's agent tools and documents to MCP
// clients (Claude Desktop, Cursor, agent frameworks) over streamable HTTP,
// with the official Go SDK's server side. A client sees what the tenant's
// model would be offered in chat, and its calls take the chat tool call's
// path (agent.CallTool): nothing here decides what a tenant may do.
//
// Every MCP session is bound to the Scope that opened it (tenant,
// incarnation, end user, key): a request naming a session with any other
// credential is answered 404, as for a session that does not exist. A
// session ends when its client deletes it, after SessionTimeout idle, and
// at once when its tenant is deleted or suspended or its key revoked.
package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/bulkhead-ai/bulkhead/internal/agent"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/requestid"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Agent lists and runs a profile's tools (*agent.Agent).
type Agent interface {
	OfferedTools(ctx context.Context, scope auth.Scope, profile agent.Profile) []llm.Tool
	CallTool(ctx context.Context, scope auth.Scope, profile agent.Profile, name string, args json.RawMessage) (agent.ToolResult, error)
}

// Profiles returns the tenant's profile name as the agent runs it, with its
// compiled policy; kind.NotFound when there is none.
type Profiles func(scope auth.Scope, name string) (agent.Profile, error)

// Documents is the tenant's knowledge base.
type Documents interface {
	Document(ctx context.Context, scope auth.Scope, id string) (store.Document, error)
	Documents(ctx context.Context, scope auth.Scope, after string, limit int) ([]store.Document, bool, error)
}

// Lifecycle tracks work of a Scope: the context it returns is cancelled
// when the tenant is deleted or suspended or the key revoked
// (*lifecycle.Lifecycle).
type Lifecycle interface {
	Track(ctx context.Context, scope auth.Scope) (context.Context, func())
}

// Headers and the query parameter a client selects with. The end user is
// named by a tenant key's holder, as the chat body's "user" names it; an
// end-user token's subject cannot be changed by it.
const (
	ProfileHeader = "X-Bulkhead-Profile"
	ProfileQuery  = "profile"
	UserHeader    = "X-Bulkhead-User"
)

// DocumentURI prefixes a document's id to make its resource URI.
const DocumentURI = "bulkhead://documents/"

const sessionHeader = "Mcp-Session-Id"

// Options configures a Handler. Agent, Profiles, Documents, Lifecycle and
// Fail are required.
type Options struct {
	Agent     Agent
	Profiles  Profiles
	Documents Documents
	Lifecycle Lifecycle
	// Fail writes an error response in the API's shape (kind to status).
	Fail   func(w http.ResponseWriter, r *http.Request, err error)
	Logger *slog.Logger
	// MaxBodyBytes bounds a request body; 0 means the SDK's 4 MiB.
	MaxBodyBytes int64
	// SessionTimeout closes a session idle that long; 0 means 30 minutes.
	SessionTimeout time.Duration
	// CallTimeout bounds one tools/call; 0 means 2 minutes.
	CallTimeout time.Duration
	// MaxSessions bounds the open sessions, and MaxTenantSessions those of
	// one tenant, so that no tenant can use up the others' (0: 10000, 100).
	MaxSessions, MaxTenantSessions int
}

// Handler is the /mcp endpoint. It expects RequireTenant to have put the
// request's Scope in its context.
type Handler struct {
	o      Options
	server *mcp.Server
	sdk    *mcp.StreamableHTTPHandler

	mu       sync.Mutex
	sessions map[string]*session // by MCP session id
	opening  map[tenant.ID]int   // sessions being opened or open, by tenant
	total    int
}

// session is what a session id is bound to.
type session struct {
	owner   owner
	scope   auth.Scope
	profile string
	// ctx lives as long as the session and is cancelled when its Scope
	// stops being valid; done ends its tracking.
	ctx  context.Context
	done func()
}

// owner is everything of a Scope that must match for a request to use a
// session.
type owner struct {
	inc  tenant.Incarnation
	user tenant.UserID
	key  tenant.KeyID
}

func ownerOf(s auth.Scope) owner {
	return owner{inc: s.Incarnation(), user: s.User(), key: s.Key()}
}

// New returns the handler. It fails if a required option is missing.
func New(o Options) (*Handler, error) {
	if o.Agent == nil || o.Profiles == nil || o.Documents == nil || o.Lifecycle == nil || o.Fail == nil {
		return nil, errors.New("new mcp server: Agent, Profiles, Documents, Lifecycle and Fail are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SessionTimeout <= 0 {
		o.SessionTimeout = 30 * time.Minute
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 2 * time.Minute
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = 10000
	}
	if o.MaxTenantSessions <= 0 {
		o.MaxTenantSessions = 100
	}
	h := &Handler{o: o, sessions: map[string]*session{}, opening: map[tenant.ID]int{}}
	// One server for every tenant: it holds no tool or resource of its
	// own. The middleware answers the tool and resource methods from the
	// session's Scope, as chat builds each turn's tools afresh, so that a
	// policy change applies to the next list and call.
	h.server = mcp.NewServer(&mcp.Implementation{Name: "bulkhead", Version: "1"}, &mcp.ServerOptions{
		Capabilities: &mcp.ServerCapabilities{Tools: &mcp.ToolCapabilities{}, Resources: &mcp.ResourceCapabilities{}},
	})
	h.server.AddReceivingMiddleware(h.middleware)
	h.sdk = mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return h.server }, &mcp.StreamableHTTPOptions{
		JSONResponse:   true,
		SessionTimeout: o.SessionTimeout,
		// Every request carries a bearer credential a rebinding page does
		// not have; the check would refuse a reverse proxy on the same
		// host.
		DisableLocalhostProtection: true,
		MaxRequestBodyBytes:        o.MaxBodyBytes,
	})
	return h, nil
}

// errNoSession answers a session id that is not the credential's, the same
// whether it exists for another Scope or not at all.
var errNoSession = fmt.Errorf("%w: MCP session not found", kind.NotFound)

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	scope, ok := auth.FromContext(r.Context())
	if !ok {
		h.o.Fail(w, r, fmt.Errorf("%w: no tenant", kind.Unauthenticated))
		return
	}
	scope, profile, named, err := selection(r, scope)
	if err != nil {
		h.o.Fail(w, r, err)
		return
	}
	// The SDK hands its handlers the request's headers, not its context:
	// the request id goes there for the audit records of the call.
	if id, ok := requestid.FromContext(r.Context()); ok {
		r.Header.Set(requestid.Header, id)
	}
	if id := r.Header.Get(sessionHeader); id != "" {
		s := h.lookup(id)
		if s == nil || s.owner != ownerOf(scope) || s.ctx.Err() != nil {
			h.o.Fail(w, r, errNoSession)
			return
		}
		if named && profile != s.profile {
			h.o.Fail(w, r, fmt.Errorf("%w: the session was opened for profile %q; open another for %q", kind.Invalid, s.profile, profile))
			return
		}
		h.sdk.ServeHTTP(w, r)
		return
	}
	if r.Method != http.MethodPost {
		h.sdk.ServeHTTP(w, r) // the SDK refuses it
		return
	}
	if _, err := h.o.Profiles(scope, profile); err != nil {
		h.o.Fail(w, r, err)
		return
	}
	s, err := h.open(r.Context(), scope, profile)
	if err != nil {
		h.o.Fail(w, r, err)
		return
	}
	bw := &binder{ResponseWriter: w, bind: func(id string) { h.bind(id, s) }}
	h.sdk.ServeHTTP(bw, r)
	h.opened(bw.id, s)
}

// selection returns scope acting for the request's end user, and the
// profile it selects (named: by the request, rather than the default).
func selection(r *http.Request, scope auth.Scope) (auth.Scope, string, bool, error) {
	if vs := r.Header.Values(UserHeader); len(vs) > 0 {
		u, err := tenant.ParseUserID(vs[0])
		if err != nil || len(vs) > 1 {
			return scope, "", false, fmt.Errorf("%w: %s must be one valid end-user id", kind.Invalid, UserHeader)
		}
		// An end-user token names its user; nothing else may.
		if scope.User() != "" && u != scope.User() {
			return scope, "", false, fmt.Errorf("%w: %s cannot change the end user of the credential", kind.Invalid, UserHeader)
		}
		scope = scope.WithUser(u)
	}
	q, hdr := r.URL.Query()[ProfileQuery], r.Header.Values(ProfileHeader)
	switch {
	case len(q) > 1 || len(hdr) > 1 || len(q) == 1 && len(hdr) == 1 && q[0] != hdr[0]:
		return scope, "", false, fmt.Errorf("%w: name one profile, by ?%s= or %s", kind.Invalid, ProfileQuery, ProfileHeader)
	case len(q) == 1 && q[0] != "":
		return scope, q[0], true, nil
	case len(hdr) == 1 && hdr[0] != "":
		return scope, hdr[0], true, nil
	}
	return scope, "default", false, nil
}

// open reserves a session for scope, tracked for its whole life.
func (h *Handler) open(ctx context.Context, scope auth.Scope, profile string) (*session, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.total >= h.o.MaxSessions || h.opening[scope.Tenant()] >= h.o.MaxTenantSessions {
		return nil, fmt.Errorf("%w: too many open MCP sessions; end one (DELETE) or let idle ones expire", kind.Limited)
	}
	h.total++
	h.opening[scope.Tenant()]++
	// The session outlives this request: its values stay, its end does not.
	sctx, done := h.o.Lifecycle.Track(context.WithoutCancel(ctx), scope)
	return &session{owner: ownerOf(scope), scope: scope, profile: profile, ctx: sctx, done: done}, nil
}

// bind records the id the SDK gave s, before the client can learn it.
func (h *Handler) bind(id string, s *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sessions[id] = s
}

// opened follows the session s that the request created as id, until it
// closes; a request that created none releases s.
func (h *Handler) opened(id string, s *session) {
	var ss *mcp.ServerSession
	if id != "" {
		for c := range h.server.Sessions() {
			if c.ID() == id {
				ss = c
				break
			}
		}
	}
	if ss == nil {
		h.release(id, s)
		return
	}
	go func() {
		// A deleted or suspended tenant, or a revoked key, ends the session.
		stop := context.AfterFunc(s.ctx, func() { _ = ss.Close() })
		_ = ss.Wait()
		stop()
		h.release(id, s)
	}()
}

// release forgets s, bound to id (or to nothing).
func (h *Handler) release(id string, s *session) {
	h.mu.Lock()
	if id != "" && h.sessions[id] == s {
		delete(h.sessions, id)
	}
	h.total--
	if h.opening[s.scope.Tenant()]--; h.opening[s.scope.Tenant()] <= 0 {
		delete(h.opening, s.scope.Tenant())
	}
	h.mu.Unlock()
	s.done()
}

func (h *Handler) lookup(id string) *session {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sessions[id]
}

// Sessions reports how many sessions are open or being opened.
func (h *Handler) Sessions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.total
}

// binder binds the session id the SDK sets on the response, when the
// headers are written: before the client can read it.
type binder struct {
	http.ResponseWriter
	bind    func(id string)
	id      string
	written bool
}

func (b *binder) WriteHeader(status int) {
	if !b.written {
		b.written = true
		if id := b.Header().Get(sessionHeader); id != "" && status < 300 {
			b.id = id
			b.bind(id)
		}
	}
	b.ResponseWriter.WriteHeader(status)
}

func (b *binder) Write(p []byte) (int, error) {
	if !b.written {
		b.WriteHeader(http.StatusOK)
	}
	return b.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection (flushes).
func (b *binder) Unwrap() http.ResponseWriter { return b.ResponseWriter }

// middleware answers the tool and resource methods for the session's
// Scope; the SDK answers the rest (initialize, ping, …).
func (h *Handler) middleware(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		switch method {
		case "tools/list", "tools/call", "resources/list", "resources/read":
		default:
			return next(ctx, method, req)
		}
		s := h.lookup(req.GetSession().ID())
		if s == nil {
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "MCP session not found"}
		}
		ctx, cancel := h.callContext(ctx, s, req)
		defer cancel()
		var res mcp.Result
		var err error
		switch r := req.(type) {
		case *mcp.ListToolsRequest:
			res, err = h.listTools(ctx, s)
		case *mcp.CallToolRequest:
			res, err = h.callTool(ctx, s, r.Params)
		case *mcp.ListResourcesRequest:
			res, err = h.listResources(ctx, s, r.Params)
		case *mcp.ReadResourceRequest:
			res, err = h.readResource(ctx, s, r.Params)
		default:
			return next(ctx, method, req)
		}
		if err != nil {
			return nil, h.rpcError(ctx, s, method, err)
		}
		return res, nil
	}
}

// callContext is the context of one request of s: cancelled with the
// session, bounded by CallTimeout, with the HTTP request's id.
func (h *Handler) callContext(ctx context.Context, s *session, req mcp.Request) (context.Context, func()) {
	if extra := req.GetExtra(); extra != nil {
		if id := extra.Header.Get(requestid.Header); requestid.Valid(id) {
			ctx = requestid.NewContext(ctx, id)
		}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(s.ctx, func() { cancel(context.Cause(s.ctx)) })
	ctx, cancelTimeout := context.WithTimeout(ctx, h.o.CallTimeout)
	return ctx, func() {
		cancelTimeout()
		stop()
		cancel(context.Canceled)
	}
}

func (h *Handler) listTools(ctx context.Context, s *session) (*mcp.ListToolsResult, error) {
	p, err := h.o.Profiles(s.scope, s.profile)
	if err != nil {
		return nil, err
	}
	offered := h.o.Agent.OfferedTools(ctx, s.scope, p)
	res := &mcp.ListToolsResult{Tools: make([]*mcp.Tool, 0, len(offered))}
	for _, t := range offered {
		schema := t.Function.Parameters
		if len(schema) == 0 {
			schema = json.RawMessage(`{"type":"object"}`)
		}
		res.Tools = append(res.Tools, &mcp.Tool{Name: t.Function.Name, Description: t.Function.Description, InputSchema: schema})
	}
	return res, nil
}

func (h *Handler) callTool(ctx context.Context, s *session, params *mcp.CallToolParamsRaw) (*mcp.CallToolResult, error) {
	if params == nil {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "tools/call needs params"}
	}
	p, err := h.o.Profiles(s.scope, s.profile)
	if err != nil {
		return nil, err
	}
	out, err := h.o.Agent.CallTool(ctx, s.scope, p, params.Name, params.Arguments)
	if err != nil {
		return nil, err
	}
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: out.Text}}, IsError: out.IsError}, nil
}

// pageSize is how many documents one resources/list page holds.
const pageSize = 100

func (h *Handler) listResources(ctx context.Context, s *session, params *mcp.ListResourcesParams) (*mcp.ListResourcesResult, error) {
	after := ""
	if params != nil {
		after = params.Cursor
	}
	docs, more, err := h.o.Documents.Documents(ctx, s.scope, after, pageSize)
	if err != nil {
		return nil, err
	}
	res := &mcp.ListResourcesResult{Resources: make([]*mcp.Resource, 0, len(docs))}
	for _, d := range docs {
		res.Resources = append(res.Resources, &mcp.Resource{URI: DocumentURI + d.ID, Name: d.ID, MIMEType: "text/plain", Size: int64(d.Size)})
	}
	if more && len(docs) > 0 {
		res.NextCursor = docs[len(docs)-1].ID
	}
	return res, nil
}

func (h *Handler) readResource(ctx context.Context, s *session, params *mcp.ReadResourceParams) (*mcp.ReadResourceResult, error) {
	if params == nil {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "resources/read needs params"}
	}
	id, ok := strings.CutPrefix(params.URI, DocumentURI)
	if !ok || id == "" {
		return nil, mcp.ResourceNotFoundError(params.URI)
	}
	doc, err := h.o.Documents.Document(ctx, s.scope, id)
	if errors.Is(err, kind.NotFound) {
		// Another tenant's document is one that does not exist.
		return nil, mcp.ResourceNotFoundError(params.URI)
	}
	if err != nil {
		return nil, err
	}
	return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: params.URI, MIMEType: "text/plain", Text: doc.Text}}}, nil
}

// codeLimited is the JSON-RPC error code of a call refused by the tenant's
// limits (the server-defined range).
const codeLimited = -32029

// rpcError turns an error into the client's JSON-RPC error: the kinds the
// API tells its clients keep their message, anything else is logged and
// is "internal error".
func (h *Handler) rpcError(ctx context.Context, s *session, method string, err error) error {
	var je *jsonrpc.Error
	switch {
	case errors.As(err, &je):
		return je
	case errors.Is(err, kind.Limited):
		return &jsonrpc.Error{Code: codeLimited, Message: err.Error()}
	case errors.Is(err, kind.Invalid), errors.Is(err, kind.NotFound):
		return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: err.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		return &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "request timed out"}
	}
	h.o.Logger.ErrorContext(ctx, "mcp request failed", "tenant", s.scope.Tenant(), "method", method, "error", err.Error())
	return &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "internal error"}
}

// Challenge wraps fail so that a 401 names where the protected resource's
// metadata is (RFC 9728, as the MCP authorization spec asks): at
// /.well-known/oauth-protected-resource followed by the request's path.
func Challenge(fail func(http.ResponseWriter, *http.Request, error)) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		if errors.Is(err, kind.Unauthenticated) {
			scheme := "http"
			if r.TLS != nil {
				scheme = "https"
			}
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer resource_metadata="%s://%s/.well-known/oauth-protected-resource%s"`, scheme, r.Host, r.URL.EscapedPath()))
		}
		fail(w, r, err)
	}
}
