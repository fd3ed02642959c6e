package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/bulkhead-ai/bulkhead/internal/config"
	"github.com/bulkhead-ai/bulkhead/internal/requestid"
)

// Planted where content lives: the user's message, a tenant secret and a
// tool call's argument. None may appear in any span.
const (
	traceMessageMarker = "TRACE-MSG-5d1e"
	traceSecret        = "trace-secret-value-8b2c4f"
	traceArgMarker     = "TRACE-ARG-93aa"
)

// tracedTurn sends one turn that calls a tool with a planted argument, in a
// message with a planted marker, for a tenant holding a planted secret.
func tracedTurn(t *testing.T, env *testEnv) response {
	t.Helper()
	env.createTenant(t, map[string]any{"id": "acme", "tools": []string{"memory_search"}})
	env.admin(t, "PUT", "/admin/v1/tenants/acme/secrets/crm_token", map[string]string{"value": traceSecret}, http.StatusNoContent)
	_, key := env.newKey(t, "acme")
	r := env.chat(t, chatCall{key: key, session: "s1", content: traceMessageMarker + " " + traceSecret +
		"\n/call memory_search {\"query\":\"" + traceArgMarker + "\"}"})
	if r.status != http.StatusOK {
		t.Fatalf("chat: got %v, want 200", r)
	}
	return r
}

// TestTraceSpanTree: one request is one server span named by its route,
// carrying the tenant, request id and status, with a child span for each
// stage and for the tool call (its name and decision); no attribute or
// event holds the message, the secret or the argument.
func TestTraceSpanTree(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	env := newTestEnv(t, envOptions{spans: exp})
	r := tracedTurn(t, env)

	const route = "POST /v1/chat/completions"
	var spans tracetest.SpanStubs
	// The server span ends just after the response is written.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		spans = exp.GetSpans()
		if rootOf(spans, route) != nil {
			break
		}
	}
	root := rootOf(spans, route)
	if root == nil {
		t.Fatalf("no %q span in %v", route, names(spans))
	}
	attrs := map[string]string{}
	for _, a := range root.Attributes {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	for k, want := range map[string]string{"http.route": route, "bulkhead.tenant": "acme",
		"bulkhead.request_id": r.header.Get(requestid.Header), "http.response.status_code": "200"} {
		if attrs[k] != want {
			t.Errorf("root span %s = %q, want %q", k, attrs[k], want)
		}
	}
	children := map[string][]tracetest.SpanStub{}
	for _, s := range spans {
		if s.Parent.SpanID() == root.SpanContext.SpanID() {
			children[s.Name] = append(children[s.Name], s)
		}
	}
	for _, stage := range []string{"auth", "quota", "history", "cache", "model", "tools", "retrieval", "guard", "audit", "tool"} {
		if len(children[stage]) == 0 {
			t.Errorf("no %q child span; children: %v", stage, children)
		}
	}
	if got := len(children["model"]); got != 2 {
		t.Errorf("model spans: got %d, want 2 (the tool call, then the answer)", got)
	}
	if tool := children["tool"]; len(tool) == 1 {
		got := map[string]string{}
		for _, a := range tool[0].Attributes {
			got[string(a.Key)] = a.Value.Emit()
		}
		if got["bulkhead.tool"] != "memory_search" || got["bulkhead.decision"] != "allow" {
			t.Errorf("tool span attributes: %v", got)
		}
	}
	for _, s := range spans {
		// The admin requests that set acme up are traces of their own.
		if s.Parent.IsValid() && s.SpanContext.TraceID() != root.SpanContext.TraceID() {
			t.Errorf("span %q is in another trace", s.Name)
		}
		checkNoContent(t, s.Name, spanText(s))
	}
}

// TestTraceOTLPExport sends the spans over real OTLP/HTTP to a collector
// in the test, which decodes the protobuf export requests: the tree
// arrives, and nothing planted is anywhere in the bytes sent.
func TestTraceOTLPExport(t *testing.T) {
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50") // milliseconds: export soon
	var mu sync.Mutex
	var raw [][]byte
	var got []*tracepb.Span
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var req coltrace.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(b, &req) != nil {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		mu.Lock()
		raw = append(raw, b)
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				got = append(got, ss.Spans...)
			}
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		w.Write(out)
	}))
	t.Cleanup(collector.Close)
	env := newTestEnv(t, envOptions{telemetry: config.Telemetry{OTLPEndpoint: collector.URL}})
	tracedTurn(t, env)

	var root *tracepb.Span
	for deadline := time.Now().Add(10 * time.Second); root == nil && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		for _, s := range got {
			if s.Name == "POST /v1/chat/completions" && len(s.ParentSpanId) == 0 {
				root = s
			}
		}
		mu.Unlock()
	}
	if root == nil {
		t.Fatal("the collector received no chat span")
	}
	mu.Lock()
	defer mu.Unlock()
	children := map[string]bool{}
	for _, s := range got {
		if string(s.ParentSpanId) == string(root.SpanId) {
			children[s.Name] = true
		}
	}
	for _, stage := range []string{"auth", "model", "tool", "guard"} {
		if !children[stage] {
			t.Errorf("no %q child span received; got %v", stage, children)
		}
	}
	for _, b := range raw {
		checkNoContent(t, "OTLP export", string(b))
	}
}

func rootOf(spans tracetest.SpanStubs, name string) *tracetest.SpanStub {
	for i, s := range spans {
		if s.Name == name && !s.Parent.IsValid() {
			return &spans[i]
		}
	}
	return nil
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

// spanText is everything a span says: its name, attributes, events and
// their attributes, and its status.
func spanText(s tracetest.SpanStub) string {
	var b strings.Builder
	b.WriteString(s.Name + " " + s.Status.Description)
	for _, a := range s.Attributes {
		b.WriteString(" " + string(a.Key) + "=" + a.Value.Emit())
	}
	for _, e := range s.Events {
		b.WriteString(" " + e.Name)
		for _, a := range e.Attributes {
			b.WriteString(" " + string(a.Key) + "=" + a.Value.Emit())
		}
	}
	return b.String()
}

func checkNoContent(t *testing.T, where, text string) {
	t.Helper()
	for _, planted := range []string{traceMessageMarker, traceSecret, traceArgMarker} {
		if strings.Contains(text, planted) {
			t.Errorf("%s holds %q", where, planted)
		}
	}
}
