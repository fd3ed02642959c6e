package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/testenv"
)

// promptfooDir holds promptfoo and its locked dependencies, installed with
// --ignore-scripts and then `npm rebuild better-sqlite3` (see .ci/run).
var promptfooDir = filepath.Join("..", "..", "test", "promptfoo")

const promptfooHint = "run `npm ci --ignore-scripts --prefix test/promptfoo && npm rebuild --prefix test/promptfoo better-sqlite3`"

// promptfooConfig is the eval the test runs: JSON answers checked with
// is-json (one of them not JSON, which must fail, so the assertions are
// seen to bite), and a client tool call checked against the tool's schema
// and by name. The offline model follows "/say" and "/call" lines.
const promptfooConfig = `description: bulkhead promptfoo eval
prompts:
  - "{{prompt}}"
providers:
  - id: openai:chat:default
    config:
      temperature: 0
      tools:
        - type: function
          function:
            name: get_weather
            description: The weather in a city
            parameters:
              type: object
              properties:
                city: {type: string}
              required: [city]
              additionalProperties: false
tests:
  - description: json answer
    vars: {prompt: '/say {"city":"Paris","days":3}'}
    assert:
      - type: is-json
        value:
          type: object
          required: [city, days]
          properties:
            city: {type: string}
            days: {type: integer}
  - description: not json
    vars: {prompt: "/say this is not json"}
    assert:
      - type: is-json
  - description: client tool call
    vars: {prompt: '/call get_weather {"city":"Oslo"}'}
    assert:
      - type: is-valid-openai-tools-call
      - type: javascript
        value: "JSON.stringify(output).includes('get_weather') && JSON.stringify(output).includes('Oslo')"
`

// promptfooResults is the part of `promptfoo eval --output x.json` read here.
type promptfooResults struct {
	Results struct {
		Stats   struct{ Successes, Failures, Errors int }
		Results []struct {
			Success  bool
			TestCase struct{ Description string }
			Error    string
		}
	}
}

// TestPromptfoo runs `promptfoo eval` against a live serve: is-json and
// tool-call assertions pass on the offline model's answers, and the one
// answer that is not JSON fails its assertion.
func TestPromptfoo(t *testing.T) {
	node, err := exec.LookPath("node")
	testenv.Require(t, "node", err == nil, "install Node.js 20 or later, then "+promptfooHint)
	cli := filepath.Join(promptfooDir, "node_modules", "promptfoo", "dist", "src", "main.js")
	_, err = os.Stat(cli)
	testenv.Require(t, "the promptfoo npm package", err == nil, promptfooHint)
	_, err = os.Stat(filepath.Join(promptfooDir, "node_modules", "better-sqlite3", "build", "Release", "better_sqlite3.node"))
	testenv.Require(t, "promptfoo's better-sqlite3 build", err == nil, promptfooHint)

	base, admin := startServer(t)
	key := createTenantKey(t, base, admin, map[string]any{"id": "pf-acme", "name": "Acme"})

	dir := t.TempDir()
	cfg := filepath.Join(dir, "promptfooconfig.yaml")
	out := filepath.Join(dir, "results.json")
	if err := os.WriteFile(cfg, []byte(promptfooConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	abs, err := filepath.Abs(cli)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, node, abs, "eval", "-c", cfg, "--output", out, "--no-cache", "--no-progress-bar", "--no-table")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "PROMPTFOO_CONFIG_DIR="+filepath.Join(dir, ".promptfoo"),
		"PROMPTFOO_DISABLE_TELEMETRY=1", "PROMPTFOO_DISABLE_UPDATE=1", "PROMPTFOO_DISABLE_REDTEAM_REMOTE_GENERATION=1",
		"OPENAI_API_KEY="+key, "OPENAI_BASE_URL="+base+"/v1", "NO_PROXY=127.0.0.1,localhost")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	// promptfoo exits non-zero when a test fails, as one must here.
	if err := cmd.Run(); err != nil && ctx.Err() != nil {
		t.Fatalf("promptfoo eval: %v\n%s", err, logs.String())
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("promptfoo wrote no results: %v\n%s", err, logs.String())
	}
	var res promptfooResults
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatalf("parse promptfoo results: %v\n%s", err, raw)
	}
	var passed, failed []string
	for _, r := range res.Results.Results {
		if r.Error != "" && !r.Success {
			t.Logf("%s: %s", r.TestCase.Description, r.Error)
		}
		if r.Success {
			passed = append(passed, r.TestCase.Description)
		} else {
			failed = append(failed, r.TestCase.Description)
		}
	}
	slices.Sort(passed)
	if want := []string{"client tool call", "json answer"}; !slices.Equal(passed, want) || !slices.Equal(failed, []string{"not json"}) {
		t.Fatalf("passed %q, failed %q; want passed %q, failed [not json]\nstats %+v\n%s", passed, failed, want, res.Results.Stats, logs.String())
	}
	if s := res.Results.Stats; s.Successes != 2 || s.Failures != 1 || s.Errors != 0 {
		t.Fatalf("stats %+v, want 2 successes, 1 failure, 0 errors\n%s", s, logs.String())
	}
}
