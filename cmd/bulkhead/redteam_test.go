package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/redteam"
)

// TestRedteam runs the whole suite in-process, as CI does: every scenario
// must be blocked, with at least 40 of them, and the JSON and HTML reports
// must say the same.
func TestRedteam(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	jsonFile, htmlFile := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.html")
	var out lockedBuffer
	if err := run(ctx, []string{"redteam", "--json", jsonFile, "--html", htmlFile}, envMap(nil), &out, &out); err != nil {
		t.Fatalf("run(redteam) = %v\n%s", err, out.String())
	}
	m := regexp.MustCompile(`scenarios: (\d+)  attempts: (\d+)  blocked: (\d+)  leaked: (\d+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no summary line in:\n%s", out.String())
	}
	if n, _ := strconv.Atoi(m[1]); n < 40 || m[4] != "0" || m[2] != m[3] {
		t.Fatalf("summary %q: want ≥ 40 scenarios, every attempt blocked, leaked: 0", m[0])
	}
	var rep redteam.Report
	b, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("JSON report: %v", err)
	}
	if strconv.Itoa(rep.Scenarios) != m[1] || rep.Leaked != 0 || len(rep.Results) != rep.Scenarios {
		t.Errorf("JSON report says %d scenarios, %d leaked, %d results; the text said %q", rep.Scenarios, rep.Leaked, len(rep.Results), m[0])
	}
	for _, r := range rep.Results {
		for _, a := range r.Attempts {
			if len(a.Evidence) == 0 {
				t.Errorf("%s: attempt %q was counted as blocked without evidence", r.Name, a.What)
			}
		}
	}
	h, err := os.ReadFile(htmlFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"<script", "<link", `src="http`, "@import"} {
		if strings.Contains(string(h), bad) {
			t.Errorf("HTML report is not self-contained: it holds %q", bad)
		}
	}
	if !strings.Contains(string(h), m[0]) {
		t.Errorf("HTML report lacks the summary %q", m[0])
	}
}

// TestRedteamTargetLeavesNothing runs scenarios that create extra tenants
// against a running server through --target, and checks that no tenant or
// tool of the run is left behind.
func TestRedteamTargetLeavesNothing(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var opts redteam.Options
	stop, err := startRedteamServer(ctx, &opts, envMap(nil), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	var out lockedBuffer
	args := []string{"redteam", "--target", opts.Target, "--admin-token", opts.AdminToken,
		"--run", "quota_outlives_tenant|rate_limit_neighbour|delete_tenant_mid_request|duplicate_json_keys|policy_upload_widens"}
	if err := run(ctx, args, envMap(nil), &out, &out); err != nil {
		t.Fatalf("run(redteam --target) = %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "scenarios: 5 ") {
		t.Fatalf("want 5 scenarios run:\n%s", out.String())
	}
	for _, path := range []string{"/admin/v1/tenants", "/admin/v1/tools"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, opts.Target+path, nil)
		req.Header.Set("Authorization", "Bearer "+opts.AdminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		if regexp.MustCompile(`"rt[0-9a-f]{8}[-_]`).Match(body) {
			t.Errorf("GET %s after the run still lists the run's objects: %s", path, body)
		}
	}
}
