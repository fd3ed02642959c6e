package server

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	jsonv2 "github.com/go-json-experiment/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/agent"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// chatRequest is OpenAI's chat request as this server takes it. A field it
// does not know is refused by name (decodeChat), never ignored; a "tenant"
// in the body is one of them and can never select a tenant.
type chatRequest struct {
	Model         string          `json:"model"`
	Messages      []chatMessage   `json:"messages"`
	Stream        bool            `json:"stream"`
	StreamOptions *streamOptions  `json:"stream_options"`
	User          string          `json:"user"`
	MaxTokens     *int            `json:"max_tokens"`
	Temperature   *float64        `json:"temperature"`
	Tools         json.RawMessage `json:"tools"`
	// Functions and FunctionCall are the legacy functions API's tools and
	// tool choice (clienttools.go).
	Functions    json.RawMessage `json:"functions"`
	FunctionCall json.RawMessage `json:"function_call"`
	chatOptions
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// chatMessage accepts content as a string, null or an array of text parts.
// An assistant message may carry the tool calls it was answered with, and
// a tool message the result of a client tool (clienttools.go); in the
// legacy functions API, a function_call and a "function" message.
type chatMessage struct {
	Role         string            `json:"role"`
	Content      chatContent       `json:"content"`
	Name         string            `json:"name"`
	ToolCalls    []chatToolCall    `json:"tool_calls"`
	ToolCallID   string            `json:"tool_call_id"`
	FunctionCall *llm.FunctionCall `json:"function_call"`
}

type chatContent string

func (c *chatContent) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*c = ""
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*c = chatContent(s)
		return nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := jsonv2.Unmarshal(b, &parts); err != nil {
		return fmt.Errorf("content must be a string or an array of text parts")
	}
	var sb strings.Builder
	for _, p := range parts {
		if p.Type != "text" {
			return fmt.Errorf("content part type %q is not supported (only text)", p.Type)
		}
		sb.WriteString(p.Text)
	}
	*c = chatContent(sb.String())
	return nil
}

const maxMessages = 1000

// turnMessages validates the client's messages. Tool messages and the
// assistant's tool calls come back from a client that ran client tools
// (clienttools.go); their content is untrusted input, like user text.
func (req chatRequest) turnMessages() ([]llm.Message, error) {
	if len(req.Messages) == 0 {
		return nil, fmt.Errorf("%w: messages must not be empty", kind.Invalid)
	}
	if len(req.Messages) > maxMessages {
		return nil, fmt.Errorf("%w: more than %d messages", kind.Invalid, maxMessages)
	}
	out := make([]llm.Message, 0, len(req.Messages))
	for i, m := range req.Messages {
		role := m.Role
		switch role {
		case "developer":
			role = "system"
		case "system", "user", "assistant", "tool", "function":
		default:
			return nil, fmt.Errorf("%w: messages[%d]: role %q is not accepted (use system, developer, user, assistant, tool or function)", kind.Invalid, i, m.Role)
		}
		msg := llm.Message{Role: role, Content: string(m.Content), Name: m.Name}
		if err := m.toolParts(&msg); err != nil {
			return nil, fmt.Errorf("%w: messages[%d]: %w", kind.Invalid, i, err)
		}
		out = append(out, msg)
	}
	return out, nil
}

func handleChat(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, ok := auth.FromContext(r.Context())
		if !ok {
			writeError(d.Logger, w, r, fmt.Errorf("%w: no tenant", kind.Unauthenticated))
			return
		}
		req, err := decodeChat(w, r, d.MaxBodyBytes)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		msgs, err := req.turnMessages()
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		clientTools, err := req.clientTools()
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		turn, profile, scope, err := prepareTurn(d, r, req, msgs, clientTools, scope)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		c := completion{id: newCompletionID(), created: time.Now().Unix(), model: profile.ID, legacy: turn.LegacyFunctions}
		if !req.Stream {
			res, err := d.Agent.Run(r.Context(), scope, profile, turn)
			if err != nil {
				writeError(d.Logger, w, r, err)
				return
			}
			setResultHeaders(w.Header(), res.Cached, res.Model)
			encode(w, http.StatusOK, c.full(res))
			return
		}
		s := &sseWriter{w: w, c: c, keepAlive: keepAliveInterval()}
		defer s.stop()
		turn.OnDelta = s.delta
		turn.OnStart = s.start
		res, err := d.Agent.Run(r.Context(), scope, profile, turn)
		if err != nil {
			if !s.begun() {
				writeError(d.Logger, w, r, err)
				return
			}
			status, typ, code, message := errorStatus(streamCause(r, err))
			logFailure(d.Logger, r, "stream failed", status, code, err, slog.String("tenant", string(scope.Tenant())))
			s.event(apiError{Error: apiErrorBody{Message: message, Type: typ, Code: code}})
			return
		}
		s.finish(res, req.StreamOptions != nil && req.StreamOptions.IncludeUsage)
	})
}

// prepareTurn translates a request, with its messages and client tools,
// into the agent's inputs: the HTTP parts (end user, X-Session-Id,
// Cache-Control, the fields sent upstream) here, and the profile, with its
// policy, limits and canary, by the agent (agent.Prepare). The tenant comes
// only from scope; the body may name the end user and the profile inside it.
func prepareTurn(d Deps, r *http.Request, req chatRequest, msgs []llm.Message, clientTools []llm.Tool, scope auth.Scope) (agent.Turn, agent.Profile, auth.Scope, error) {
	user, err := tenant.ParseUserID(req.User)
	if err != nil {
		return agent.Turn{}, agent.Profile{}, scope, fmt.Errorf("%w: user: %w", kind.Invalid, err)
	}
	if scope, err = scope.ForUser(user); err != nil {
		return agent.Turn{}, agent.Profile{}, scope, err
	}
	var session tenant.SessionID
	if h := r.Header.Get("X-Session-Id"); h != "" {
		if session, err = tenant.ParseSessionID(h); err != nil {
			return agent.Turn{}, agent.Profile{}, scope, fmt.Errorf("%w: X-Session-Id: %w", kind.Invalid, err)
		}
		if strings.HasPrefix(h, responseSessionPrefix) {
			return agent.Turn{}, agent.Profile{}, scope, fmt.Errorf("%w: X-Session-Id: the prefix %q is reserved", kind.Invalid, responseSessionPrefix)
		}
	}
	// The model first, as before the agent prepared it: an unknown one is
	// a 404 whatever else the request holds.
	profile, err := d.Agent.Prepare(scope, req.Model, len(clientTools) > 0)
	if err != nil {
		return agent.Turn{}, agent.Profile{}, scope, err
	}
	opts, err := req.llmOptions()
	if err != nil {
		return agent.Turn{}, agent.Profile{}, scope, err
	}
	turn := agent.Turn{Messages: msgs, Session: session, Temperature: req.Temperature, Options: opts, ClientTools: clientTools}
	if req.legacy() {
		turn.LegacyFunctions = true
		if turn.Options.ToolChoice, err = req.functionChoice(); err != nil {
			return agent.Turn{}, agent.Profile{}, scope, err
		}
		one := false
		turn.Options.ParallelToolCalls = &one
	}
	turn.NoCacheRead, turn.NoCacheWrite = cacheControl(r.Header)
	// max_completion_tokens goes upstream as itself (in Options), never
	// rewritten to max_tokens, which newer models refuse.
	if req.MaxTokens != nil {
		turn.MaxTokens = *req.MaxTokens
	}
	if turn.MaxTokens < 0 {
		return agent.Turn{}, agent.Profile{}, scope, fmt.Errorf("%w: max_tokens must not be negative", kind.Invalid)
	}
	return turn, profile, scope, nil
}

func newCompletionID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return "chatcmpl-" + hex.EncodeToString(b[:])
}

// completion renders agent results in OpenAI's response shapes.
type completion struct {
	id      string
	created int64
	model   string
	legacy  bool // the request used the legacy functions API
}

// chatResponse is OpenAI's response (or chunk) shape. Model is the profile
// the client asked for, so that clients that compare it with their request
// are not surprised; UpstreamModel is the model the provider says answered
// (also in the X-Bulkhead-Upstream-Model header of a non-streamed answer),
// an extra field that OpenAI's SDKs keep or ignore.
type chatResponse struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"`
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	UpstreamModel     string       `json:"upstream_model,omitempty"`
	SystemFingerprint string       `json:"system_fingerprint,omitempty"`
	Choices           []chatChoice `json:"choices"`
	Usage             *llm.Usage   `json:"usage,omitempty"`
}

type chatChoice struct {
	Index        int            `json:"index"`
	Message      *answerMessage `json:"message,omitempty"`
	Delta        *chatDelta     `json:"delta,omitempty"`
	FinishReason *string        `json:"finish_reason"`
}

type chatDelta struct {
	Role         string            `json:"role,omitempty"`
	Content      string            `json:"content,omitempty"`
	ToolCalls    []toolCallDelta   `json:"tool_calls,omitempty"`
	FunctionCall *llm.FunctionCall `json:"function_call,omitempty"`
}

// answerMessage is the assistant message of an answer; FunctionCall is set
// instead of ToolCalls in the legacy functions API's shape.
type answerMessage struct {
	llm.Message
	FunctionCall *llm.FunctionCall `json:"function_call,omitempty"`
}

func (c completion) full(res agent.Result) chatResponse {
	msg := answerMessage{Message: llm.Message{Role: "assistant", Content: res.Message.Content, ToolCalls: res.Message.ToolCalls}}
	finish := c.finishReason(res.FinishReason)
	if c.legacy {
		msg = legacyMessage(msg.Message)
	}
	usage := res.Usage
	return chatResponse{ID: c.id, Object: "chat.completion", Created: c.created, Model: c.model,
		UpstreamModel: res.Model, SystemFingerprint: res.SystemFingerprint,
		Choices: []chatChoice{{Message: &msg, FinishReason: &finish}}, Usage: &usage}
}

// setResultHeaders marks a cached answer and names the provider's model.
func setResultHeaders(h http.Header, cached bool, model string) {
	if cached {
		h.Set("X-Bulkhead-Cache", "hit")
	}
	if model != "" {
		h.Set("X-Bulkhead-Upstream-Model", model)
	}
}

// finishReason is the agent's finish reason as the client's API names it.
func (c completion) finishReason(reason string) string {
	switch {
	case reason == "":
		return "stop"
	case reason == "tool_calls" && c.legacy:
		return "function_call"
	}
	return reason
}

func (c completion) chunk(delta *chatDelta, finish *string) chatResponse {
	choices := []chatChoice{}
	if delta != nil {
		choices = []chatChoice{{Delta: delta, FinishReason: finish}}
	}
	return chatResponse{ID: c.id, Object: "chat.completion.chunk", Created: c.created, Model: c.model, Choices: choices}
}

// keepAliveEvery is how often (in nanoseconds; 0 means 10s) a started
// stream that has nothing to say sends an SSE comment, so that clients and
// proxies do not time it out during long server-side tool loops. Tests
// shorten it.
var keepAliveEvery atomic.Int64

func keepAliveInterval() time.Duration {
	if d := time.Duration(keepAliveEvery.Load()); d > 0 {
		return d
	}
	return 10 * time.Second
}

// sseWriter streams chunks as server-sent events in OpenAI's format. Its
// start sends the headers and the role chunk as soon as the answer is
// certain to begin (the provider accepted the request, or the cache
// answers), before the model has said anything; until then a failure can
// still be an HTTP status (a 429 with Retry-After). Once started, a
// goroutine writes ": keep-alive" comments while nothing else is written.
type sseWriter struct {
	w         http.ResponseWriter
	c         completion
	keepAlive time.Duration
	// open writes the first events, with mu held; nil: the role chunk.
	open func() error

	mu      sync.Mutex // serializes writes: the agent's and the keep-alive's
	started bool
	done    chan struct{}
	wg      sync.WaitGroup
}

// start sends the headers and the role chunk, once.
func (s *sseWriter) start(cached bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	setResultHeaders(h, cached, "")
	s.w.WriteHeader(http.StatusOK)
	if s.open != nil {
		_ = s.open()
	} else {
		_ = s.write(s.c.chunk(&chatDelta{Role: "assistant"}, nil))
	}
	if s.keepAlive > 0 {
		done := make(chan struct{})
		s.done = done
		s.wg.Go(func() { s.keepAlives(done) })
	}
}

func (s *sseWriter) begun() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

func (s *sseWriter) keepAlives(done <-chan struct{}) {
	t := time.NewTicker(s.keepAlive)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		s.mu.Lock()
		_, err := fmt.Fprint(s.w, ": keep-alive\n\n")
		if err == nil {
			err = http.NewResponseController(s.w).Flush()
		}
		s.mu.Unlock()
		if err != nil {
			return // the client left
		}
	}
}

// stop ends the keep-alives; the handler calls it before it returns.
func (s *sseWriter) stop() {
	s.mu.Lock()
	if s.done != nil {
		close(s.done)
		s.done = nil
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *sseWriter) delta(content string) error {
	s.start(false)
	return s.event(s.c.chunk(&chatDelta{Content: content}, nil))
}

func (s *sseWriter) event(v any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.write(v)
}

// namedEvent is an event sent with its name on an "event:" line, as the
// Responses API streams them.
type namedEvent struct {
	name string
	data any
}

// write sends one event; s.mu is held.
func (s *sseWriter) write(v any) error {
	name := ""
	if n, ok := v.(namedEvent); ok {
		name, v = n.name, n.data
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode stream event: %w", err)
	}
	if name != "" {
		if _, err := fmt.Fprintf(s.w, "event: %s\n", name); err != nil {
			return fmt.Errorf("write stream event: %w", err)
		}
	}
	if _, err := fmt.Fprintf(s.w, "data: %s\n\n", b); err != nil {
		return fmt.Errorf("write stream event: %w", err)
	}
	return http.NewResponseController(s.w).Flush()
}

func (s *sseWriter) finish(res agent.Result, includeUsage bool) {
	s.start(res.Cached)
	s.stop()
	finish := s.c.finishReason(res.FinishReason)
	// Write errors here mean the client left; nothing is lost server-side.
	// Client tool calls go out whole, once checked (clienttools.go).
	for _, d := range toolCallDeltas(res.Message.ToolCalls, s.c.legacy) {
		_ = s.event(s.c.chunk(d, nil))
	}
	last := s.c.chunk(&chatDelta{}, &finish)
	last.UpstreamModel, last.SystemFingerprint = res.Model, res.SystemFingerprint
	_ = s.event(last)
	if includeUsage {
		final := s.c.chunk(nil, nil)
		usage := res.Usage
		final.Usage = &usage
		final.UpstreamModel, final.SystemFingerprint = res.Model, res.SystemFingerprint
		_ = s.event(final)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = fmt.Fprint(s.w, "data: [DONE]\n\n")
	_ = http.NewResponseController(s.w).Flush()
}

type modelView struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func handleModels(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, ok := auth.FromContext(r.Context())
		if !ok {
			writeError(d.Logger, w, r, fmt.Errorf("%w: no tenant", kind.Unauthenticated))
			return
		}
		t, err := d.Tenants.Tenant(scope.Tenant())
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		ids := modelIDs(t)
		models := make([]modelView, 0, len(ids))
		for _, id := range ids {
			models = append(models, modelView{ID: id, Object: "model", Created: t.CreatedAt.Unix(), OwnedBy: string(t.ID)})
		}
		sortModels(models)
		encode(w, http.StatusOK, map[string]any{"object": "list", "data": models})
	})
}

// modelIDs are the models a request of tenant t may name: its profiles,
// and "<profile>/<provider>/<model>" for each model a profile lists
// (agent.Prepare).
func modelIDs(t control.Tenant) []string {
	var ids []string
	for name, p := range t.Profiles {
		ids = append(ids, name)
		for _, m := range p.Models {
			ids = append(ids, name+"/"+m)
		}
	}
	return ids
}

func sortModels(m []modelView) {
	slices.SortFunc(m, func(a, b modelView) int { return strings.Compare(a.ID, b.ID) })
}
