package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/redis/go-redis/v9"

	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/quota"
	"github.com/bulkhead-ai/bulkhead/internal/testenv"
)

// blockingTool is a tool server whose first call waits until release is
// called (or its caller gives up); later calls answer at once. It counts
// every call that reaches it.
type blockingTool struct {
	*httptest.Server
	calls   atomic.Int64
	arrived chan struct{} // receives once the first call is waiting
	release func()
}

func newBlockingTool(t *testing.T) *blockingTool {
	t.Helper()
	b := &blockingTool{arrived: make(chan struct{})}
	gate := make(chan struct{})
	var once sync.Once
	b.release = func() { once.Do(func() { close(gate) }) }
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b.calls.Add(1) == 1 {
			close(b.arrived)
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"ok": true})
	}))
	t.Cleanup(func() { b.release(); b.Close() })
	return b
}

// waitArrived waits for the first call to reach b.
func (b *blockingTool) waitArrived(t *testing.T) {
	t.Helper()
	select {
	case <-b.arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the tool call never reached the tool server")
	}
}

// loopModel calls the "slow" tool again after every result, five times,
// then answers: a tool loop that runs as long as nothing stops it.
type loopModel struct{}

func (loopModel) Chat(ctx context.Context, req llm.Request, _ func(string) error) (llm.Response, error) {
	if err := ctx.Err(); err != nil {
		return llm.Response{}, err
	}
	n := 0
	for _, m := range req.Messages {
		if m.Role == "tool" {
			n++
		}
	}
	if n >= 5 {
		return llm.Response{Message: llm.Message{Role: "assistant", Content: "done"}, FinishReason: "stop"}, nil
	}
	return llm.Response{Message: llm.Message{Role: "assistant", ToolCalls: []llm.ToolCall{{
		ID: fmt.Sprint("call_", n+1), Type: "function", Function: llm.FunctionCall{Name: "slow", Arguments: "{}"}}}},
		FinishReason: "tool_calls"}, nil
}

// slowTenant registers the "slow" tool on tool and creates acme with it and
// the given model, returning a key.
func slowTenant(t *testing.T, env *testEnv, tool *blockingTool, model string) (keyID, key string) {
	t.Helper()
	env.admin(t, "POST", "/admin/v1/tools", map[string]any{"name": "slow", "description": "Takes its time", "scope": "tenant",
		"parameters": json.RawMessage(`{"type":"object","properties":{}}`),
		"http":       map[string]any{"method": "POST", "url": tool.URL + "/slow"}}, http.StatusCreated)
	env.createTenant(t, map[string]any{"id": "acme", "tools": []string{"slow"}, "model": model})
	return env.newKey(t, "acme")
}

// startChat sends c in the background; the returned channel yields its
// response (or a zero one on a transport error).
func startChat(env *testEnv, c chatCall) <-chan response {
	done := make(chan response, 1)
	go func() {
		r, _ := env.sendChat(context.Background(), c)
		done <- r
	}()
	return done
}

func waitChat(t *testing.T, done <-chan response) response {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("the chat request did not end")
	}
	return response{}
}

// TestToolLoopStopsWhenAccessEnds runs a tool loop and, while its first call
// is at the tool server, deletes the tenant, revokes the key or suspends the
// tenant: once the admin call has returned, the tool server hears nothing
// more from the loop.
func TestToolLoopStopsWhenAccessEnds(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(t *testing.T, env *testEnv, keyID string)
	}{
		{"delete tenant", func(t *testing.T, env *testEnv, _ string) {
			env.admin(t, "DELETE", "/admin/v1/tenants/acme", nil, http.StatusNoContent)
		}},
		{"revoke key", func(t *testing.T, env *testEnv, keyID string) {
			env.admin(t, "DELETE", "/admin/v1/tenants/acme/keys/"+keyID, nil, http.StatusNoContent)
		}},
		{"suspend tenant", func(t *testing.T, env *testEnv, _ string) {
			env.admin(t, "PATCH", "/admin/v1/tenants/acme", map[string]any{"status": "suspended"}, http.StatusOK)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t, envOptions{providers: map[string]llm.Provider{"loop": loopModel{}}})
			tool := newBlockingTool(t)
			keyID, key := slowTenant(t, env, tool, "loop/any")
			done := startChat(env, chatCall{key: key, content: "go"})
			tool.waitArrived(t)

			tc.end(t, env, keyID)
			before := tool.calls.Load()
			tool.release()
			r := waitChat(t, done)
			if got := tool.calls.Load() - before; got != 0 {
				t.Errorf("after %s returned, the tool server got %d more calls (chat ended %v), want 0", tc.name, got, r)
			}
			// The turn ends as a request with a dead credential would.
			checkAPIError(t, r, http.StatusUnauthorized, "invalid_api_key")
		})
	}
}

// TestTurnOfDeletedTenantDoesNotReachSuccessor deletes a tenant while one of
// its turns waits on a tool, and creates the tenant again under the same id:
// when the old turn goes on, nothing of it lands in the new tenant's history
// or audit log.
func TestTurnOfDeletedTenantDoesNotReachSuccessor(t *testing.T) {
	env := newTestEnv(t, envOptions{providers: map[string]llm.Provider{"loop": loopModel{}}})
	tool := newBlockingTool(t)
	_, oldKey := slowTenant(t, env, tool, "loop/any")
	const marker = "old-incarnation-marker-5e1f"
	// The loop goes on calling the tool after the re-create unless stopped:
	// each call is audited, and the turn ends by storing its history.
	done := startChat(env, chatCall{key: oldKey, user: "alice", session: "s1", content: marker})
	tool.waitArrived(t)

	env.admin(t, "DELETE", "/admin/v1/tenants/acme", nil, http.StatusNoContent)
	env.createTenant(t, map[string]any{"id": "acme", "tools": []string{"slow"}})
	_, newKey := env.newKey(t, "acme")
	tool.release()
	waitChat(t, done)

	if h := joinContents(env.echo(t, chatCall{key: newKey, user: "alice", session: "s1"})); strings.Contains(h, marker) || strings.Contains(h, `"ok":true`) {
		t.Errorf("the new tenant's history holds the old turn: %q", h)
	}
	if r := env.admin(t, "GET", "/admin/v1/tenants/acme/audit", nil, http.StatusOK); strings.Contains(string(r.body), `"slow"`) {
		t.Errorf("the new tenant's audit log holds the old turn's tool call: %s", r.body)
	}
}

// TestRecreatedTenantStartsWithFreshQuota spends a tenant's request rate or
// token budget, deletes it and creates it again: the new tenant is not
// limited by what the old one used, with the in-memory and the Redis
// limiter.
func TestRecreatedTenantStartsWithFreshQuota(t *testing.T) {
	backends := []struct {
		name string
		new  func(t *testing.T) envQuota
	}{
		{"memory", func(*testing.T) envQuota { return quota.NewMemory() }},
		{"redis", func(t *testing.T) envQuota {
			addr := cmpOr(os.Getenv("BULKHEAD_TEST_REDIS"), "127.0.0.1:6379")
			client := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second})
			err := client.Ping(t.Context()).Err()
			testenv.Require(t, "Redis", err == nil, "start redis-server or set BULKHEAD_TEST_REDIS")
			// A fresh prefix per run: keys of earlier runs cannot interfere.
			prefix := fmt.Sprintf("bulkhead-test-lifecycle-%d", time.Now().UnixNano())
			t.Cleanup(func() {
				ctx := context.Background()
				for iter := client.Scan(ctx, 0, prefix+":*", 1000).Iterator(); iter.Next(ctx); {
					client.Del(ctx, iter.Val())
				}
				client.Close()
			})
			return quota.NewRedis(client, prefix)
		}},
	}
	limits := []struct {
		name   string
		limits map[string]any
	}{
		{"requests_per_minute", map[string]any{"requests_per_minute": 1}},
		{"token_budget", map[string]any{"token_budget": 5}},
	}
	for _, b := range backends {
		for _, l := range limits {
			t.Run(b.name+"/"+l.name, func(t *testing.T) {
				env := newTestEnv(t, envOptions{quota: b.new(t)})
				env.createTenant(t, map[string]any{"id": "acme", "limits": l.limits})
				_, key := env.newKey(t, "acme")
				if r := env.chat(t, chatCall{key: key, content: "hi"}); r.status != http.StatusOK {
					t.Fatalf("first request: %v", r)
				}
				if r := env.chat(t, chatCall{key: key, content: "hi"}); r.status != http.StatusTooManyRequests {
					t.Fatalf("second request: got %v, want 429", r)
				}
				env.admin(t, "DELETE", "/admin/v1/tenants/acme", nil, http.StatusNoContent)
				env.createTenant(t, map[string]any{"id": "acme", "limits": l.limits})
				_, key = env.newKey(t, "acme")
				if r := env.chat(t, chatCall{key: key, content: "hi"}); r.status != http.StatusOK {
					t.Fatalf("re-created tenant's first request: got %v, want 200", r)
				}
			})
		}
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// stdioHelperEnv makes this test binary, run as an MCP tool's command, serve
// MCP over stdio (see TestStdioMCPHelper).
const stdioHelperEnv = "BULKHEAD_TEST_STDIO_MCP_HELPER"

// TestStdioMCPHelper is not a test: it is the stdio MCP server that
// TestRecreatedTenantGetsOwnMCPProcess starts, this binary run again. Its
// "counter" tool reports the process id and how often it was called.
func TestStdioMCPHelper(t *testing.T) {
	if os.Getenv(stdioHelperEnv) != "1" {
		t.Skip("the stdio MCP server of TestRecreatedTenantGetsOwnMCPProcess")
	}
	server := mcp.NewServer(&mcp.Implementation{Name: "counter", Version: "1"}, nil)
	var n atomic.Int64
	mcp.AddTool(server, &mcp.Tool{Name: "counter", Description: "Counts its calls."},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			text := fmt.Sprintf("pid=%d n=%d", os.Getpid(), n.Add(1))
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, nil, nil
		})
	err := server.Run(context.Background(), &mcp.StdioTransport{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "stdio mcp helper:", err)
		os.Exit(1)
	}
	os.Exit(0) // no test output on stdout: it is the MCP stream
}

// TestRecreatedTenantGetsOwnMCPProcess calls a stdio MCP tool, deletes the
// tenant and creates it again: the new tenant's call runs in a new process
// and session, not in its predecessor's.
func TestRecreatedTenantGetsOwnMCPProcess(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := newTestEnv(t, envOptions{})
	env.admin(t, "POST", "/admin/v1/tools", map[string]any{"name": "counter", "description": "Counts", "scope": "tenant",
		"parameters": json.RawMessage(`{"type":"object","properties":{}}`),
		"mcp": map[string]any{"command": []string{exe, "-test.run=^TestStdioMCPHelper$"},
			"env": map[string]string{stdioHelperEnv: "1"}}}, http.StatusCreated)
	counter := regexp.MustCompile(`pid=(\d+) n=(\d+)`)
	call := func(key string) (pid, n string) {
		t.Helper()
		got := env.say(t, chatCall{key: key, content: "/call counter {}"})
		m := counter.FindStringSubmatch(got)
		if m == nil {
			t.Fatalf("counter call: %q", got)
		}
		return m[1], m[2]
	}
	env.createTenant(t, map[string]any{"id": "acme", "tools": []string{"counter"}})
	_, key := env.newKey(t, "acme")
	oldPID, _ := call(key)
	if _, n := call(key); n != "2" {
		t.Fatalf("second call in one tenant: n=%s, want 2 (one session)", n)
	}

	env.admin(t, "DELETE", "/admin/v1/tenants/acme", nil, http.StatusNoContent)
	// The deleted tenant's process ends: nothing of its state lives on.
	pidNum, err := strconv.Atoi(oldPID)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); syscall.Kill(pidNum, 0) == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the deleted tenant's MCP process %d still runs", pidNum)
		}
	}
	env.createTenant(t, map[string]any{"id": "acme", "tools": []string{"counter"}})
	_, key = env.newKey(t, "acme")
	pid, n := call(key)
	if pid == oldPID || n != "1" {
		t.Fatalf("re-created tenant's call: pid=%s n=%s, want a new process (not %s) at n=1", pid, n, oldPID)
	}
}
