package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/testenv"
)

// sdkDir holds the Node script and its locked dependencies.
var sdkDir = filepath.Join("..", "..", "test", "openai-sdk")

const sdkHint = "run `npm ci --prefix test/openai-sdk`"

type sdkUsage struct {
	TotalTokens int `json:"total_tokens"`
}

// sdkResult is the JSON line test/openai-sdk/sdk.mjs prints.
type sdkResult struct {
	NonStream struct {
		Object       string
		Model        string
		Role         string
		Content      string
		FinishReason string
		Usage        *sdkUsage
	}
	Stream struct {
		Chunks       int
		Deltas       int
		Content      string
		FinishReason string
		Usage        *sdkUsage
	}
	Models      []string
	AuthStatus  int
	ClientTools struct {
		FinishReason, Name, Arguments, ID string
		FollowUp, FollowUpFinishReason    string
		StreamFinishReason                string
		StreamCalls                       []struct{ ID, Name, Arguments string }
	}
}

// TestOpenAISDK drives the real server with the official OpenAI Node client.
func TestOpenAISDK(t *testing.T) {
	t.Parallel()
	node := requireOpenAISDK(t)

	base, admin := startServer(t)
	const prompt = "You are Acme's agent."
	// no_cache: the streamed request repeats the plain one, and must reach the model.
	key := createTenantKey(t, base, admin, map[string]any{"id": "acme", "system_prompt": prompt, "no_cache": true})

	var got sdkResult
	runSDKScript(t, node, "sdk.mjs", &got, "BASE_URL="+base+"/v1", "API_KEY="+key)

	for _, c := range []struct{ name, content string }{
		{"non-streaming content", got.NonStream.Content},
		{"streamed content", got.Stream.Content},
	} {
		for _, want := range []string{prompt, "hello from the sdk"} {
			if !strings.Contains(c.content, want) {
				t.Errorf("%s = %q, want it to contain %q", c.name, c.content, want)
			}
		}
	}
	if got.Stream.Content != got.NonStream.Content {
		t.Errorf("streamed content = %q, want the non-streaming content %q", got.Stream.Content, got.NonStream.Content)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"non-streaming object", got.NonStream.Object, "chat.completion"},
		{"non-streaming model", got.NonStream.Model, "default"},
		{"non-streaming role", got.NonStream.Role, "assistant"},
		{"non-streaming finish reason", got.NonStream.FinishReason, "stop"},
		{"non-streaming usage present", got.NonStream.Usage != nil && got.NonStream.Usage.TotalTokens > 0, true},
		{"streamed in several deltas", got.Stream.Deltas > 1, true},
		{"stream finish reason", got.Stream.FinishReason, "stop"},
		{"stream usage present (include_usage)", got.Stream.Usage != nil && got.Stream.Usage.TotalTokens > 0, true},
		{"models include default", slices.Contains(got.Models, "default"), true},
		{"bad key status", got.AuthStatus, 401},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	ct := got.ClientTools
	const args = `{"city":"Paris"}`
	if ct.FinishReason != "tool_calls" || ct.Name != "get_weather" || ct.Arguments != args || !strings.HasPrefix(ct.ID, "call_") {
		t.Errorf("client tool call = %+v, want get_weather with %s and finish reason tool_calls", ct, args)
	}
	if want := "Tool results:\n" + ct.ID + ": sunny, 21 C"; ct.FollowUp != want || ct.FollowUpFinishReason != "stop" {
		t.Errorf("client tool follow-up = %q (%s), want %q", ct.FollowUp, ct.FollowUpFinishReason, want)
	}
	if ct.StreamFinishReason != "tool_calls" || len(ct.StreamCalls) != 1 || ct.StreamCalls[0].Name != "get_weather" || ct.StreamCalls[0].Arguments != args {
		t.Errorf("streamed client tool calls = %+v (%s), want one get_weather call", ct.StreamCalls, ct.StreamFinishReason)
	}
}

// requireNode returns the node binary once it and every npm package named
// (directory, package) are installed; else the test skips loudly, or fails
// under BULKHEAD_REQUIRE_ALL=1, with hint saying how to install them.
func requireNode(t *testing.T, hint, dir string, packages ...string) (node string) {
	t.Helper()
	node, err := exec.LookPath("node")
	testenv.Require(t, "node", err == nil, "install Node.js 20 or later, then "+hint)
	for _, pkg := range packages {
		_, err := os.Stat(filepath.Join(dir, "node_modules", pkg, "package.json"))
		testenv.Require(t, "the "+pkg+" npm package", err == nil, hint)
	}
	return node
}

// requireOpenAISDK is requireNode for test/openai-sdk.
func requireOpenAISDK(t *testing.T) (node string) {
	t.Helper()
	return requireNode(t, sdkHint, sdkDir, "openai")
}

// runSDKScript runs script from sdkDir with node and env (besides the
// process's own), and decodes the JSON its last line of output prints into
// out.
func runSDKScript(t *testing.T, node, script string, out any, env ...string) {
	t.Helper()
	runNodeScript(t, node, sdkDir, script, out, env...)
}

// runNodeScript is runSDKScript for a script of dir.
func runNodeScript(t *testing.T, node, dir, script string, out any, env ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), env...), "NO_PROXY=127.0.0.1,localhost")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node %s: %v\nstdout:\n%s\nstderr:\n%s", script, err, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), out); err != nil {
		t.Fatalf("parse %s output: %v\nstdout:\n%s\nstderr:\n%s", script, err, stdout.String(), stderr.String())
	}
	t.Logf("%s: %s", script, lines[len(lines)-1])
}
