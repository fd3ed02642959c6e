package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/bulkhead-ai/bulkhead/internal/agent"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// The Responses API is a translation of the chat turn: its input items
// become the turn's messages, and a response is kept in the tenant's store
// as two sessions of the end user who made it, sealed like any other: the
// conversation through it (what previous_response_id continues, copied so
// that two responses continuing one never see each other) and the
// response object (what GET returns). Both session ids start with
// responseSessionPrefix, which chat's X-Session-Id may not use.
const responseSessionPrefix = "bulkhead:"

func responseHistory(id string) tenant.SessionID {
	return tenant.SessionID(responseSessionPrefix + "resp:" + id)
}
func responseObject(id string) tenant.SessionID {
	return tenant.SessionID(responseSessionPrefix + "respobj:" + id)
}

// objectRole marks the stored response object; it is never a chat message.
const objectRole = "response"

// Sessions is the stored conversations of a tenant's end users.
type Sessions interface {
	AppendMessages(ctx context.Context, scope auth.Scope, session tenant.SessionID, msgs []store.Message) error
	Messages(ctx context.Context, scope auth.Scope, session tenant.SessionID, limit int) ([]store.Message, error)
	DeleteSession(ctx context.Context, scope auth.Scope, session tenant.SessionID) error
}

// responsesFields are the request fields accepted; any other is refused by
// name, as in chat.
var responsesFields = []string{
	"model", "input", "instructions", "previous_response_id", "stream", "tools", "tool_choice",
	"text", "temperature", "top_p", "max_output_tokens", "parallel_tool_calls", "metadata",
	"store", "user", "reasoning", "include",
}

type responsesRequest struct {
	Model              string          `json:"model"`
	Input              json.RawMessage `json:"input"`
	Instructions       string          `json:"instructions"`
	PreviousResponseID string          `json:"previous_response_id"`
	Stream             bool            `json:"stream"`
	Tools              []responsesTool `json:"tools"`
	ToolChoice         json.RawMessage `json:"tool_choice"`
	Text               *struct {
		Format *struct {
			Type        string          `json:"type"`
			Name        string          `json:"name"`
			Description string          `json:"description,omitempty"`
			Schema      json.RawMessage `json:"schema,omitempty"`
			Strict      *bool           `json:"strict,omitempty"`
		} `json:"format"`
	} `json:"text"`
	Temperature       *float64        `json:"temperature"`
	TopP              *float64        `json:"top_p"`
	MaxOutputTokens   *int            `json:"max_output_tokens"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls"`
	Metadata          json.RawMessage `json:"metadata"`
	Store             *bool           `json:"store"`
	User              string          `json:"user"`
	Reasoning         *struct {
		Effort string `json:"effort"`
	} `json:"reasoning"`
	// Include asks for extra output data (encrypted reasoning, logprobs,
	// search results); the Agents SDK sends it empty on every request.
	Include []string `json:"include"`
}

// responsesTool is a function tool in the Responses shape (flat, not under
// "function"). Built-in tool types (web search, file search) are refused.
type responsesTool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Parameters  json.RawMessage `json:"parameters"`
	Strict      *bool           `json:"strict"`
}

// responsesItem is one input item: a message, a function call the client
// replays, or a function call's output.
type responsesItem struct {
	Type      string          `json:"type"`
	ID        string          `json:"id"`
	Status    string          `json:"status"`
	Role      string          `json:"role"`
	Content   json.RawMessage `json:"content"`
	CallID    string          `json:"call_id"`
	Name      string          `json:"name"`
	Arguments string          `json:"arguments"`
	Output    json.RawMessage `json:"output"`
}

func decodeResponses(w http.ResponseWriter, r *http.Request, limit int64) (responsesRequest, error) {
	raw, err := decodeFields(w, r, limit, responsesFields)
	if err != nil {
		return responsesRequest{}, err
	}
	var req responsesRequest
	if err := jsonv2.Unmarshal(raw, &req, jsonv2.RejectUnknownMembers(true)); err != nil {
		var se *jsonv2.SemanticError
		if errors.As(err, &se) && se.JSONPointer != "" {
			return req, fmt.Errorf("%w: %s: not accepted: %v", kind.Invalid, se.JSONPointer, se.Err)
		}
		return req, fmt.Errorf("%w: malformed JSON body: %v", kind.Invalid, err)
	}
	return req, nil
}

// itemText reads a content or output value: a string, or an array of text
// parts (input_text, output_text).
func itemText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", nil
	}
	if raw[0] == '"' {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := jsonv2.Unmarshal(raw, &parts); err != nil {
		return "", errors.New("content must be a string or an array of text parts")
	}
	var sb strings.Builder
	for _, p := range parts {
		switch p.Type {
		case "input_text", "output_text", "text":
			sb.WriteString(p.Text)
		default:
			return "", fmt.Errorf("content part type %q is not supported (only text)", p.Type)
		}
	}
	return sb.String(), nil
}

// turnMessages turns instructions and input into the turn's messages.
func (req responsesRequest) turnMessages() ([]llm.Message, error) {
	var out []llm.Message
	if req.Instructions != "" {
		out = append(out, llm.Message{Role: "system", Content: req.Instructions})
	}
	in := bytes.TrimSpace(req.Input)
	if len(in) > 0 && in[0] == '"' {
		var s string
		if err := json.Unmarshal(in, &s); err != nil {
			return nil, fmt.Errorf("%w: input: %v", kind.Invalid, err)
		}
		return append(out, llm.Message{Role: "user", Content: s}), nil
	}
	var items []responsesItem
	if err := jsonv2.Unmarshal(in, &items, jsonv2.RejectUnknownMembers(true)); err != nil || len(items) == 0 {
		return nil, fmt.Errorf("%w: input must be a string or a non-empty array of items", kind.Invalid)
	}
	if len(items) > maxMessages {
		return nil, fmt.Errorf("%w: input: more than %d items", kind.Invalid, maxMessages)
	}
	for i, it := range items {
		switch it.Type {
		case "", "message":
			role := it.Role
			switch role {
			case "developer":
				role = "system"
			case "system", "user", "assistant":
			default:
				return nil, fmt.Errorf("%w: input[%d]: role %q is not accepted (use system, developer, user or assistant)", kind.Invalid, i, it.Role)
			}
			text, err := itemText(it.Content)
			if err != nil {
				return nil, fmt.Errorf("%w: input[%d]: %w", kind.Invalid, i, err)
			}
			out = append(out, llm.Message{Role: role, Content: text})
		case "function_call":
			if it.CallID == "" || it.Name == "" {
				return nil, fmt.Errorf("%w: input[%d]: a function_call needs its call_id and name", kind.Invalid, i)
			}
			tc := llm.ToolCall{ID: it.CallID, Type: "function", Function: llm.FunctionCall{Name: it.Name, Arguments: it.Arguments}}
			// Calls made in one step are one assistant message.
			if n := len(out); n > 0 && out[n-1].Role == "assistant" && len(out[n-1].ToolCalls) > 0 {
				out[n-1].ToolCalls = append(out[n-1].ToolCalls, tc)
				continue
			}
			out = append(out, llm.Message{Role: "assistant", ToolCalls: []llm.ToolCall{tc}})
		case "function_call_output":
			if it.CallID == "" {
				return nil, fmt.Errorf("%w: input[%d]: a function_call_output needs its call_id", kind.Invalid, i)
			}
			text, err := itemText(it.Output)
			if err != nil {
				return nil, fmt.Errorf("%w: input[%d]: output: %w", kind.Invalid, i, err)
			}
			out = append(out, llm.Message{Role: "tool", ToolCallID: it.CallID, Content: text})
		default:
			return nil, fmt.Errorf("%w: input[%d]: item type %q is not supported", kind.Invalid, i, it.Type)
		}
	}
	return out, nil
}

// chatRequest is req as the chat turn takes it: text.format becomes
// response_format, tool_choice the chat shape, max_output_tokens
// max_completion_tokens. store and metadata stay here: the response is
// stored by Bulkhead, never by the provider.
func (req responsesRequest) chatRequest() (chatRequest, []llm.Tool, error) {
	c := chatRequest{Model: req.Model, User: req.User, Temperature: req.Temperature, Stream: req.Stream}
	if len(req.Include) > 0 {
		// None of the extras exists here; an answer without what was asked
		// for would be a field dropped without a word.
		return c, nil, fmt.Errorf("%w: include: %q is not supported (nothing can be included; send an empty list)", kind.Invalid, req.Include[0])
	}
	c.TopP, c.ParallelToolCalls, c.MaxCompletionTokens = req.TopP, req.ParallelToolCalls, req.MaxOutputTokens
	if req.Reasoning != nil {
		c.ReasoningEffort = req.Reasoning.Effort
	}
	if req.Text != nil && req.Text.Format != nil {
		f := *req.Text.Format
		var rf any
		switch f.Type {
		case "text":
		case "json_object":
			rf = map[string]any{"type": "json_object"}
		case "json_schema":
			if f.Name == "" || len(f.Schema) == 0 {
				return c, nil, fmt.Errorf("%w: text.format: a json_schema format needs a name and a schema", kind.Invalid)
			}
			// Only what the client sent: an added "description": "" or
			// "strict": null is a field the provider was not asked for.
			js := map[string]any{"name": f.Name, "schema": f.Schema}
			if f.Description != "" {
				js["description"] = f.Description
			}
			if f.Strict != nil {
				js["strict"] = *f.Strict
			}
			rf = map[string]any{"type": "json_schema", "json_schema": js}
		default:
			return c, nil, fmt.Errorf("%w: text.format: type %q is not supported (text, json_object or json_schema)", kind.Invalid, f.Type)
		}
		if rf != nil {
			b, err := json.Marshal(rf)
			if err != nil {
				return c, nil, fmt.Errorf("encode response_format: %w", err)
			}
			c.ResponseFormat = b
		}
	}
	if tc := bytes.TrimSpace(req.ToolChoice); len(tc) > 0 && tc[0] == '{' {
		var named struct {
			Type string `json:"type"`
			Name string `json:"name"`
		}
		if err := jsonv2.Unmarshal(tc, &named, jsonv2.RejectUnknownMembers(true)); err != nil || named.Type != "function" || named.Name == "" {
			return c, nil, fmt.Errorf("%w: tool_choice: an object must be {\"type\":\"function\",\"name\":…}", kind.Invalid)
		}
		b, _ := json.Marshal(map[string]any{"type": "function", "function": map[string]string{"name": named.Name}})
		c.ToolChoice = b
	} else {
		c.ToolChoice = req.ToolChoice
	}
	if len(req.Tools) > maxClientTools {
		return c, nil, fmt.Errorf("%w: tools: more than %d", kind.Invalid, maxClientTools)
	}
	tools := make([]llm.Tool, 0, len(req.Tools))
	for i, t := range req.Tools {
		if t.Type != "function" {
			return c, nil, fmt.Errorf("%w: tools[%d]: type %q is not supported (only function tools)", kind.Invalid, i, t.Type)
		}
		tools = append(tools, llm.Tool{Type: "function", Function: llm.FunctionDef{Name: t.Name,
			Description: t.Description, Parameters: t.Parameters, Strict: t.Strict}})
	}
	return c, tools, nil
}

// responseObject is the Responses API's response, as returned and stored.
type responseObj struct {
	ID                 string            `json:"id"`
	Object             string            `json:"object"`
	CreatedAt          int64             `json:"created_at"`
	Status             string            `json:"status"`
	Model              string            `json:"model"`
	UpstreamModel      string            `json:"upstream_model,omitempty"`
	Output             []outputItem      `json:"output"`
	PreviousResponseID *string           `json:"previous_response_id"`
	Instructions       *string           `json:"instructions"`
	IncompleteDetails  map[string]string `json:"incomplete_details"`
	Error              any               `json:"error"`
	Metadata           json.RawMessage   `json:"metadata,omitempty"`
	Usage              *responseUsage    `json:"usage,omitempty"`
	User               string            `json:"user,omitempty"`
	Store              bool              `json:"store"`
}

type outputItem struct {
	Type      string       `json:"type"`
	ID        string       `json:"id"`
	Status    string       `json:"status"`
	Role      string       `json:"role,omitempty"`
	Content   []outputText `json:"content,omitempty"`
	CallID    string       `json:"call_id,omitempty"`
	Name      string       `json:"name,omitempty"`
	Arguments *string      `json:"arguments,omitempty"`
}

type outputText struct {
	Type        string `json:"type"`
	Text        string `json:"text"`
	Annotations []any  `json:"annotations"`
}

type responseUsage struct {
	InputTokens         int            `json:"input_tokens"`
	OutputTokens        int            `json:"output_tokens"`
	TotalTokens         int            `json:"total_tokens"`
	InputTokensDetails  map[string]int `json:"input_tokens_details"`
	OutputTokensDetails map[string]int `json:"output_tokens_details"`
}

func newResponseID(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return prefix + hex.EncodeToString(b[:])
}

// validResponseID accepts the ids newResponseID makes, so that a path
// segment can only name a session of the reserved shape.
func validResponseID(id string) bool {
	hexPart, ok := strings.CutPrefix(id, "resp_")
	if !ok || len(hexPart) != 24 {
		return false
	}
	_, err := hex.DecodeString(hexPart)
	return err == nil
}

// result fills o from the agent's answer.
func (o *responseObj) result(res agent.Result, msgID string) {
	o.Status, o.UpstreamModel = "completed", res.Model
	switch res.FinishReason {
	case "length":
		o.Status, o.IncompleteDetails = "incomplete", map[string]string{"reason": "max_output_tokens"}
	case "content_filter":
		o.Status, o.IncompleteDetails = "incomplete", map[string]string{"reason": "content_filter"}
	}
	if res.Message.Content != "" || len(res.Message.ToolCalls) == 0 {
		o.Output = append(o.Output, outputItem{Type: "message", ID: msgID, Status: "completed", Role: "assistant",
			Content: []outputText{{Type: "output_text", Text: res.Message.Content, Annotations: []any{}}}})
	}
	for _, tc := range res.Message.ToolCalls {
		args := tc.Function.Arguments
		o.Output = append(o.Output, outputItem{Type: "function_call", ID: "fc_" + strings.TrimPrefix(tc.ID, "call_"),
			Status: "completed", CallID: tc.ID, Name: tc.Function.Name, Arguments: &args})
	}
	u := res.Usage
	o.Usage = &responseUsage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens, TotalTokens: u.TotalTokens,
		InputTokensDetails: map[string]int{"cached_tokens": 0}, OutputTokensDetails: map[string]int{"reasoning_tokens": 0}}
}

func handleCreateResponse(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := createResponse(d, w, r); err != nil {
			writeError(d.Logger, w, r, err)
		}
	})
}

// createResponse answers POST /v1/responses. An error it returns is the
// whole answer: nothing was written yet.
func createResponse(d Deps, w http.ResponseWriter, r *http.Request) error {
	scope, err := tenantScope(r)
	if err != nil {
		return err
	}
	req, err := decodeResponses(w, r, d.MaxBodyBytes)
	if err != nil {
		return err
	}
	if r.Header.Get("X-Session-Id") != "" {
		return fmt.Errorf("%w: X-Session-Id is not used by /v1/responses: continue a conversation with previous_response_id", kind.Invalid)
	}
	msgs, err := req.turnMessages()
	if err != nil {
		return err
	}
	creq, clientTools, err := req.chatRequest()
	if err != nil {
		return err
	}
	turn, profile, scope, err := prepareTurn(d, r, creq, msgs, clientTools, scope)
	if err != nil {
		return err
	}
	stored := req.Store == nil || *req.Store
	o := &responseObj{ID: newResponseID("resp_"), Object: "response", CreatedAt: time.Now().Unix(),
		Status: "in_progress", Model: profile.ID, Metadata: req.Metadata, User: req.User, Store: stored, Output: []outputItem{}}
	if req.Instructions != "" {
		o.Instructions = &req.Instructions
	}
	if req.PreviousResponseID != "" {
		o.PreviousResponseID = &req.PreviousResponseID
	}
	if stored || req.PreviousResponseID != "" {
		turn.Session = responseHistory(o.ID)
		if err := continueFrom(r.Context(), d.Sessions, scope, req.PreviousResponseID, turn.Session); err != nil {
			return err
		}
	}
	// Whatever happens to the turn, a conversation kept only to answer it
	// goes: one not stored is never left behind.
	if !stored && turn.Session != "" {
		defer func() { _ = d.Sessions.DeleteSession(context.WithoutCancel(r.Context()), scope, turn.Session) }()
	}
	msgID := newResponseID("msg_")
	run := func() (agent.Result, error) {
		res, err := d.Agent.Run(r.Context(), scope, profile, turn)
		if err != nil {
			return res, err
		}
		o.result(res, msgID)
		if !stored {
			return res, nil
		}
		b, err := json.Marshal(o)
		if err != nil {
			return res, fmt.Errorf("encode response: %w", err)
		}
		return res, d.Sessions.AppendMessages(r.Context(), scope, responseObject(o.ID), []store.Message{{Role: objectRole, Content: string(b)}})
	}
	if !req.Stream {
		res, err := run()
		if err != nil {
			return err
		}
		setResultHeaders(w.Header(), res.Cached, res.Model)
		encode(w, http.StatusOK, o)
		return nil
	}
	s := newResponseStream(w, o, msgID)
	defer s.stop()
	turn.OnDelta, turn.OnStart = s.delta, s.start
	res, err := run()
	if err != nil {
		if !s.begun() {
			return err
		}
		status, typ, code, message := errorStatus(streamCause(r, err))
		logFailure(d.Logger, r, "stream failed", status, code, err, slog.String("tenant", string(scope.Tenant())))
		s.fail(typ, code, message)
		return nil
	}
	s.finish(res.Cached)
	return nil
}

// continueFrom starts conversation session with the messages of response
// prev (none if prev is empty). The copy leaves out system messages:
// instructions hold for their own response only, as OpenAI's do.
func continueFrom(ctx context.Context, sessions Sessions, scope auth.Scope, prev string, session tenant.SessionID) error {
	if prev == "" {
		return nil
	}
	if _, err := storedResponse(ctx, sessions, scope, prev); err != nil {
		return fmt.Errorf("previous_response_id: %w", err)
	}
	history, err := sessions.Messages(ctx, scope, responseHistory(prev), 0)
	if err != nil {
		return fmt.Errorf("read previous response: %w", err)
	}
	kept := history[:0]
	for _, m := range history {
		if m.Role != "system" {
			kept = append(kept, m)
		}
	}
	if err := sessions.AppendMessages(ctx, scope, session, kept); err != nil {
		return fmt.Errorf("continue previous response: %w", err)
	}
	return nil
}

// storedResponse reads response id of scope's end user. Another tenant's,
// another end user's and a deleted one are all not found.
func storedResponse(ctx context.Context, sessions Sessions, scope auth.Scope, id string) (json.RawMessage, error) {
	notFound := fmt.Errorf("%w: no response %q", kind.NotFound, id)
	if !validResponseID(id) {
		return nil, notFound
	}
	msgs, err := sessions.Messages(ctx, scope, responseObject(id), 1)
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	if len(msgs) != 1 || msgs[0].Role != objectRole {
		return nil, notFound
	}
	return json.RawMessage(msgs[0].Content), nil
}

// responseScope is the tenant's Scope acting for the ?user= of a GET or
// DELETE: responses are kept per end user.
func responseScope(r *http.Request) (auth.Scope, error) {
	scope, err := tenantScope(r)
	if err != nil {
		return scope, err
	}
	user, err := tenant.ParseUserID(r.URL.Query().Get("user"))
	if err != nil {
		return scope, fmt.Errorf("%w: user: %w", kind.Invalid, err)
	}
	return scope.ForUser(user)
}

func handleGetResponse(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, err := responseScope(r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		obj, err := storedResponse(r.Context(), d.Sessions, scope, r.PathValue("id"))
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(obj)
	})
}

func handleDeleteResponse(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, err := responseScope(r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		id := r.PathValue("id")
		if _, err := storedResponse(r.Context(), d.Sessions, scope, id); err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		for _, s := range []tenant.SessionID{responseObject(id), responseHistory(id)} {
			if err := d.Sessions.DeleteSession(r.Context(), scope, s); err != nil && !errors.Is(err, kind.NotFound) {
				writeError(d.Logger, w, r, err)
				return
			}
		}
		encode(w, http.StatusOK, map[string]any{"id": id, "object": "response.deleted", "deleted": true})
	})
}

// responseStream streams a response as the Responses API's events, over
// the chat stream's writer (headers at once, keep-alives). Text deltas go
// out as they pass the guard; function calls go out whole, once checked.
type responseStream struct {
	*sseWriter
	o      *responseObj
	msgID  string
	seq    int
	opened bool // the message item was announced
}

func newResponseStream(w http.ResponseWriter, o *responseObj, msgID string) *responseStream {
	s := &responseStream{sseWriter: &sseWriter{w: w, keepAlive: keepAliveInterval()}, o: o, msgID: msgID}
	s.open = func() error {
		if err := s.emitLocked("response.created", map[string]any{"response": s.o}); err != nil {
			return err
		}
		return s.emitLocked("response.in_progress", map[string]any{"response": s.o})
	}
	return s
}

// emitLocked writes one event with its type and sequence number; s.mu is
// held.
func (s *responseStream) emitLocked(typ string, fields map[string]any) error {
	fields["type"], fields["sequence_number"] = typ, s.seq
	s.seq++
	return s.write(namedEvent{name: typ, data: fields})
}

func (s *responseStream) emit(typ string, fields map[string]any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.emitLocked(typ, fields)
}

func (s *responseStream) openMessage() error {
	if s.opened {
		return nil
	}
	s.opened = true
	item := outputItem{Type: "message", ID: s.msgID, Status: "in_progress", Role: "assistant", Content: []outputText{}}
	if err := s.emit("response.output_item.added", map[string]any{"output_index": 0, "item": item}); err != nil {
		return err
	}
	return s.emit("response.content_part.added", map[string]any{"item_id": s.msgID, "output_index": 0, "content_index": 0,
		"part": outputText{Type: "output_text", Annotations: []any{}}})
}

func (s *responseStream) delta(text string) error {
	s.start(false)
	if err := s.openMessage(); err != nil {
		return err
	}
	return s.emit("response.output_text.delta", map[string]any{"item_id": s.msgID, "output_index": 0, "content_index": 0, "delta": text})
}

// finish sends the items' final state and the response; o holds the
// result. Write errors mean the client left; the response is stored.
func (s *responseStream) finish(cached bool) {
	s.start(cached)
	s.stop()
	for i, item := range s.o.Output {
		if item.Type == "message" {
			text := item.Content[0].Text
			if !s.opened && text != "" {
				_ = s.openMessage()
			}
			if s.opened {
				_ = s.emit("response.output_text.done", map[string]any{"item_id": item.ID, "output_index": i, "content_index": 0, "text": text})
				_ = s.emit("response.content_part.done", map[string]any{"item_id": item.ID, "output_index": i, "content_index": 0, "part": item.Content[0]})
				_ = s.emit("response.output_item.done", map[string]any{"output_index": i, "item": item})
			}
			continue
		}
		_ = s.emit("response.output_item.added", map[string]any{"output_index": i, "item": item})
		_ = s.emit("response.function_call_arguments.done", map[string]any{"item_id": item.ID, "output_index": i, "arguments": *item.Arguments})
		_ = s.emit("response.output_item.done", map[string]any{"output_index": i, "item": item})
	}
	typ := "response.completed"
	if s.o.Status == "incomplete" {
		typ = "response.incomplete"
	}
	_ = s.emit(typ, map[string]any{"response": s.o})
}

// fail ends a started stream with an error event.
func (s *responseStream) fail(typ, code, message string) {
	s.stop()
	_ = s.emit("error", map[string]any{"code": code, "message": message, "param": nil, "error_type": typ})
}
