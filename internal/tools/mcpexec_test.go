package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/testenv"
)

// mcpServer is an in-process MCP server over streamable HTTP whose "whoami"
// tool echoes the request's Authorization header and its arguments. It
// counts the sessions clients open.
type mcpServer struct {
	URL    string
	mu     sync.Mutex
	ids    map[string]bool // Mcp-Session-Id values seen
	closed map[string]bool // sessions the client ended (DELETE)
}

// sessions returns the number of sessions clients have used.
func (s *mcpServer) sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids)
}

// waitClosed waits until clients have ended n sessions.
func (s *mcpServer) waitClosed(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s.mu.Lock()
		got := len(s.closed)
		s.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("clients ended %d sessions, want %d", got, n)
		}
	}
}

func newMCPServer(t *testing.T) *mcpServer {
	t.Helper()
	s := &mcpServer{ids: map[string]bool{}, closed: map[string]bool{}}
	server := mcp.NewServer(&mcp.Implementation{Name: "whoami", Version: "1"}, nil)
	type whoamiArgs struct {
		Customer string `json:"customer"`
		TenantID string `json:"tenant_id"`
	}
	mcp.AddTool(server, &mcp.Tool{Name: "whoami", Description: "Echoes the caller's credentials."},
		func(ctx context.Context, req *mcp.CallToolRequest, in whoamiArgs) (*mcp.CallToolResult, any, error) {
			args, err := json.Marshal(in)
			if err != nil {
				return nil, nil, err
			}
			return &mcp.CallToolResult{Content: []mcp.Content{
				&mcp.TextContent{Text: "auth=" + req.Extra.Header.Get("Authorization")},
				&mcp.TextContent{Text: "args=" + string(args)},
				&mcp.ImageContent{MIMEType: "image/png", Data: []byte("png")},
			}}, nil, nil
		})
	mcp.AddTool(server, &mcp.Tool{Name: "fail", Description: "Reports a failure."},
		func(ctx context.Context, req *mcp.CallToolRequest, in struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: "it failed"}}}, nil, nil
		})
	mcp.AddTool(server, &mcp.Tool{Name: "big", Description: "Returns a lot."},
		func(ctx context.Context, req *mcp.CallToolRequest, in struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: strings.Repeat("b", 100)}}}, nil, nil
		})
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := r.Header.Get("Mcp-Session-Id"); id != "" {
			s.mu.Lock()
			s.ids[id] = true
			if r.Method == http.MethodDelete {
				s.closed[id] = true
			}
			s.mu.Unlock()
		}
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

func whoamiTool(t *testing.T, url, upstream string) *Tool {
	t.Helper()
	return compile(t, Definition{
		Name: "whoami",
		Parameters: json.RawMessage(`{"type":"object","properties":{
			"customer":{"type":"string"},"tenant_id":{"type":"string"}}}`),
		Bound: map[string]string{"tenant_id": BindTenantID},
		MCP: &MCPSpec{URL: url, Tool: upstream,
			Headers: map[string]string{"Authorization": "Bearer {{secret.mcp_token}}"}},
	})
}

func TestMCPHTTPTenantsGetOwnSessions(t *testing.T) {
	srv := newMCPServer(t)
	tool := whoamiTool(t, srv.URL, "")
	e := NewMCP(MCPOptions{})
	defer e.Close()

	tenants := []struct {
		id    tenant.ID
		token string
	}{{"acme", acmeToken}, {"globex", globexToken}}
	var wg sync.WaitGroup
	for _, tn := range tenants {
		for range 5 {
			wg.Go(func() {
				call := newCall(t, tool, tn.id, `{"customer":"c-1"}`, map[tenant.SecretName]string{"mcp_token": tn.token})
				got, err := e.Execute(context.Background(), call)
				if err != nil {
					t.Errorf("%s: Execute: %v", tn.id, err)
					return
				}
				want := Result{Content: "auth=Bearer " + tn.token + "\n" +
					`args={"customer":"c-1","tenant_id":"` + string(tn.id) + `"}` + "\n[image]"}
				if got != want {
					t.Errorf("%s: Execute = %q, want %q", tn.id, got.Content, want.Content)
				}
			})
		}
	}
	wg.Wait()
	if got, want := srv.sessions(), 2; got != want {
		t.Errorf("server saw %d sessions, want %d (one per tenant, reused)", got, want)
	}

	// Listing reuses the tenant's session.
	tools, err := e.List(context.Background(), "acme", *tool.MCP, secretValues(map[tenant.SecretName]string{"mcp_token": acmeToken}))
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var names []string
	for _, ut := range tools {
		names = append(names, ut.Name)
		if ut.Name == "whoami" && !strings.Contains(string(ut.InputSchema), `"customer"`) {
			t.Errorf("whoami input schema = %s, want the customer property", ut.InputSchema)
		}
	}
	slices.Sort(names)
	if want := []string{"big", "fail", "whoami"}; !slices.Equal(names, want) {
		t.Errorf("List = %v, want %v", names, want)
	}
	if got, want := srv.sessions(), 2; got != want {
		t.Errorf("after List, server saw %d sessions, want %d", got, want)
	}

	// A rotated credential is a new session; the old one is not reused.
	call := newCall(t, tool, "acme", `{"customer":"c-2"}`, map[tenant.SecretName]string{"mcp_token": "acme-rotated-token-42"})
	got, err := e.Execute(context.Background(), call)
	if err != nil || !strings.HasPrefix(got.Content, "auth=Bearer acme-rotated-token-42\n") {
		t.Errorf("after rotation, Execute = %q, %v", got.Content, err)
	}
	if got, want := srv.sessions(), 3; got != want {
		t.Errorf("after rotation, server saw %d sessions, want %d", got, want)
	}
}

// TestMCPSessionsNeverShared checks tenants get separate sessions even when
// nothing else tells them apart: the same server, no credentials.
func TestMCPSessionsNeverShared(t *testing.T) {
	srv := newMCPServer(t)
	tool := compile(t, Definition{Name: "big", MCP: &MCPSpec{URL: srv.URL}})
	e := NewMCP(MCPOptions{})
	defer e.Close()
	for i, id := range []tenant.ID{"acme", "globex", "acme", "globex"} {
		if _, err := e.Execute(context.Background(), newCall(t, tool, id, `{}`, nil)); err != nil {
			t.Fatalf("call %d (%s): %v", i, id, err)
		}
	}
	if got, want := srv.sessions(), 2; got != want {
		t.Errorf("server saw %d sessions, want %d", got, want)
	}
}

func TestMCPResults(t *testing.T) {
	srv := newMCPServer(t)
	secrets := map[tenant.SecretName]string{"mcp_token": acmeToken}
	for _, tc := range []struct {
		name, upstream string
		maxOutput      int
		want           Result
	}{
		{"tool error passed through", "fail", 0, Result{IsError: true, Content: "it failed"}},
		{"output capped", "big", 10, Result{Content: strings.Repeat("b", 10), Truncated: true}},
		{"output at the cap", "big", 100, Result{Content: strings.Repeat("b", 100)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := NewMCP(MCPOptions{MaxOutput: tc.maxOutput})
			defer e.Close()
			tool := compile(t, Definition{Name: tc.upstream, MCP: &MCPSpec{URL: srv.URL,
				Headers: map[string]string{"Authorization": "Bearer {{secret.mcp_token}}"}}})
			got, err := e.Execute(context.Background(), newCall(t, tool, "acme", `{}`, secrets))
			if err != nil {
				t.Fatalf("Execute: %v", err)
			}
			if got != tc.want {
				t.Errorf("Execute = %+v, want %+v", got, tc.want)
			}
		})
	}

	t.Run("unknown tool is an error", func(t *testing.T) {
		e := NewMCP(MCPOptions{})
		defer e.Close()
		res, err := e.Execute(context.Background(), newCall(t, whoamiTool(t, srv.URL, "nope"), "acme", `{}`, secrets))
		if err == nil && !res.IsError {
			t.Errorf("Execute = %+v, want an error", res)
		}
	})
	t.Run("missing secret is an error, nothing sent", func(t *testing.T) {
		e := NewMCP(MCPOptions{})
		defer e.Close()
		before := srv.sessions()
		_, err := e.Execute(context.Background(), newCall(t, whoamiTool(t, srv.URL, ""), "acme", `{}`, nil))
		if err == nil {
			t.Error("Execute succeeded without the secret")
		}
		if srv.sessions() != before {
			t.Error("a session was opened without the secret")
		}
	})
	t.Run("no tenant is an error", func(t *testing.T) {
		e := NewMCP(MCPOptions{})
		defer e.Close()
		_, err := e.Execute(context.Background(), newCall(t, whoamiTool(t, srv.URL, ""), "", `{}`, secrets))
		if err == nil {
			t.Error("Execute succeeded without a tenant")
		}
	})
	t.Run("closed executor refuses", func(t *testing.T) {
		e := NewMCP(MCPOptions{})
		e.Close()
		_, err := e.Execute(context.Background(), newCall(t, whoamiTool(t, srv.URL, ""), "acme", `{}`, secrets))
		if !errors.Is(err, errClosed) && (err == nil || !strings.Contains(err.Error(), errClosed.Error())) {
			t.Errorf("Execute after Close: %v, want %v", err, errClosed)
		}
	})
}

func TestMCPIdleSessionsClosed(t *testing.T) {
	srv := newMCPServer(t)
	tool := whoamiTool(t, srv.URL, "")
	e := NewMCP(MCPOptions{IdleTimeout: time.Minute})
	defer e.Close()
	var mu sync.Mutex
	now := time.Now()
	e.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	call := func(id tenant.ID, token string) {
		t.Helper()
		if _, err := e.Execute(context.Background(), newCall(t, tool, id, `{"customer":"c-1"}`, map[tenant.SecretName]string{"mcp_token": token})); err != nil {
			t.Fatalf("%s: Execute: %v", id, err)
		}
	}
	sessions := func() int {
		e.mu.Lock()
		defer e.mu.Unlock()
		return len(e.sessions)
	}

	call("acme", acmeToken)
	advance(30 * time.Second)
	call("globex", globexToken)
	advance(45 * time.Second) // acme idle 75s, globex 45s
	call("globex", globexToken)
	if got, want := sessions(), 1; got != want {
		t.Errorf("after acme's idle timeout, %d sessions open, want %d", got, want)
	}
	srv.waitClosed(t, 1)
	call("acme", acmeToken)
	if got, want := srv.sessions(), 3; got != want {
		t.Errorf("server saw %d sessions, want %d (acme's re-created)", got, want)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	srv.waitClosed(t, 3)
}

func TestMCPStdioEverything(t *testing.T) {
	command := testenv.EverythingServer(t)
	// What the server process holds; none of it may reach a tool server.
	const masterKey = "master-key-must-not-leak-0123456789"
	t.Setenv("BULKHEAD_MASTER_KEY", masterKey)
	t.Setenv("BULKHEAD_ADMIN_TOKEN", "admin-token-must-not-leak-42")

	spec := MCPSpec{Command: command, Env: map[string]string{"EVERYTHING_TOKEN": "{{secret.token}}"}}
	echo := compile(t, Definition{
		Name:       "everything_echo",
		Parameters: json.RawMessage(`{"type":"object","properties":{"message":{"type":"string"}},"required":["message"]}`),
		MCP:        &MCPSpec{Command: spec.Command, Env: spec.Env, Tool: "echo"},
	})
	getEnv := compile(t, Definition{Name: "get-env", MCP: &MCPSpec{Command: spec.Command, Env: spec.Env}})
	e := NewMCP(MCPOptions{})
	defer e.Close()
	ctx := context.Background()

	tenants := []struct {
		id    tenant.ID
		token string
	}{{"acme", acmeToken}, {"globex", globexToken}}
	for _, tn := range tenants {
		secrets := map[tenant.SecretName]string{"token": tn.token}

		tools, err := e.List(ctx, tenant.Incarnation(tn.id), spec, secretValues(secrets))
		if err != nil {
			t.Fatalf("%s: List: %v", tn.id, err)
		}
		if !slices.ContainsFunc(tools, func(ut UpstreamTool) bool { return ut.Name == "echo" }) {
			t.Errorf("%s: List = %v, want echo among them", tn.id, tools)
		}

		got, err := e.Execute(ctx, newCall(t, echo, tn.id, `{"message":"hello from `+string(tn.id)+`"}`, secrets))
		if want := (Result{Content: "Echo: hello from " + string(tn.id)}); err != nil || got != want {
			t.Errorf("%s: echo = %+v, %v; want %+v", tn.id, got, err, want)
		}

		res, err := e.Execute(ctx, newCall(t, getEnv, tn.id, `{}`, secrets))
		if err != nil {
			t.Fatalf("%s: get-env: %v", tn.id, err)
		}
		var env map[string]string
		if err := json.Unmarshal([]byte(res.Content), &env); err != nil {
			t.Fatalf("%s: get-env output %q: %v", tn.id, res.Content, err)
		}
		var names []string
		for name := range env {
			names = append(names, name)
		}
		slices.Sort(names)
		if want := []string{"EVERYTHING_TOKEN", "HOME", "PATH"}; !slices.Equal(names, want) {
			t.Errorf("%s: child environment has %v, want exactly %v", tn.id, names, want)
		}
		if env["EVERYTHING_TOKEN"] != tn.token {
			t.Errorf("%s: child EVERYTHING_TOKEN = %q, want the tenant's own", tn.id, env["EVERYTHING_TOKEN"])
		}
		if strings.Contains(res.Content, masterKey) {
			t.Errorf("%s: child environment holds the master key", tn.id)
		}
	}

	// One process per tenant, each alive, each with its own HOME.
	e.mu.Lock()
	var pids []int
	homes := map[string]bool{}
	for _, s := range e.sessions {
		pids = append(pids, s.pid)
		homes[s.home] = true
	}
	e.mu.Unlock()
	if len(pids) != 2 || pids[0] == pids[1] || len(homes) != 2 {
		t.Fatalf("processes %v with homes %v, want two of each", pids, homes)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err != nil {
			t.Errorf("process %d: %v, want it running", pid, err)
		}
	}

	// A process that dies is replaced on the next call.
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var victim tenant.ID
	e.mu.Lock()
	for _, s := range e.sessions {
		if s.pid == pids[0] {
			victim = s.tenant
		}
	}
	e.mu.Unlock()
	secrets := map[tenant.SecretName]string{"token": acmeToken}
	if victim == "globex" {
		secrets["token"] = globexToken
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := e.Execute(ctx, newCall(t, echo, victim, `{"message":"again"}`, secrets))
		if err == nil {
			if want := (Result{Content: "Echo: again"}); got != want {
				t.Errorf("after the process died, echo = %+v, want %+v", got, want)
			}
			break
		}
		// The first call may meet the dead process before the watcher has
		// noticed; the one after must succeed.
		if time.Now().After(deadline) {
			t.Fatalf("after the process died, echo keeps failing: %v", err)
		}
	}

	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, pid := range pids[1:] {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("after Close, process %d: %v, want it gone", pid, err)
		}
	}
	for home := range homes {
		if _, err := os.Stat(home); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after Close, HOME %s: %v, want it removed", home, err)
		}
	}
}

// TestMCPSendsCanonicalArguments: the MCP server receives the arguments
// the runtime checked, not a re-marshal of them.
func TestMCPSendsCanonicalArguments(t *testing.T) {
	server := mcp.NewServer(&mcp.Implementation{Name: "echo", Version: "1"}, nil)
	got := make(chan json.RawMessage, 1)
	server.AddTool(&mcp.Tool{Name: "echo", InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			got <- append(json.RawMessage(nil), req.Params.Arguments...)
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil
		})
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil))
	t.Cleanup(srv.Close)
	tool := compile(t, Definition{Name: "echo",
		Parameters: json.RawMessage(`{"type":"object","properties":{"b":{"type":"string"},"a":{"type":"number"},"tenant_id":{"type":"string"}}}`),
		Bound:      map[string]string{"tenant_id": BindTenantID},
		MCP:        &MCPSpec{URL: srv.URL}})
	model, err := tool.Decode(`{"b":"<&> \u00e9\/","a":1.50}`)
	if err != nil {
		t.Fatal(err)
	}
	args, err := tool.Complete(model, func(string) (string, error) { return "acme", nil })
	if err != nil {
		t.Fatal(err)
	}
	e := NewMCP(MCPOptions{})
	defer e.Close()
	if _, err := e.Execute(context.Background(), Call{Tool: tool, Tenant: "acme", Args: args.Value, Body: args.JSON}); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	received := <-got
	var sent, seen any
	if err := json.Unmarshal(args.JSON, &sent); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(received, &seen); err != nil || !reflect.DeepEqual(sent, seen) {
		t.Fatalf("server got %s (%v), want %s", received, err, args.JSON)
	}
	if !bytes.Equal(received, args.JSON) {
		t.Errorf("server got %s, want the canonical bytes %s", received, args.JSON)
	}
}
