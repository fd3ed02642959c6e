package main

import (
	"bytes"
	"context"
	"encoding/json"
	"html/template"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/testenv"
)

var browserDir = filepath.Join("..", "..", "test", "browser")

const browserHint = "run `npm ci --prefix test/browser` and `apt-get install -y chromium`"

// requireBrowser returns the node binary, skipping the test (or failing it
// under BULKHEAD_REQUIRE_ALL=1) without node, Chromium or playwright-core.
func requireBrowser(t *testing.T) (node string) {
	t.Helper()
	node = requireNode(t, browserHint, browserDir, "playwright-core")
	_, err := os.Stat("/usr/bin/chromium")
	testenv.Require(t, "chromium", err == nil, browserHint)
	return node
}

// frontEnd is the tenant's static page: it gets its end user's token from
// the identity provider, then chats with bulkhead directly, through CORS.
var frontEnd = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Acme support</title></head>
<body>
<p id="answer"></p><p id="error"></p><p id="status">running</p>
<script>
(async () => {
  try {
    const t = await fetch({{.Issuer}} + "/token?sub=alice");
    const {token} = await t.json();
    const r = await fetch({{.Bulkhead}} + "/v1/chat/completions", {
      method: "POST",
      headers: {"Authorization": "Bearer " + token, "Content-Type": "application/json"},
      body: JSON.stringify({messages: [{role: "user", content: "hello from the browser"}]}),
    });
    const body = await r.json();
    if (!r.ok) throw new Error(r.status + " " + JSON.stringify(body));
    document.getElementById("answer").textContent = body.choices[0].message.content;
  } catch (e) {
    document.getElementById("error").textContent = String(e);
  }
  document.getElementById("status").textContent = "done";
})();
</script></body></html>`))

// TestBrowserFrontEnd: a page of the tenant's listed origin, in headless
// Chromium, signs its user in at a test issuer and chats with a real
// `bulkhead serve` using the token; the same page served from an origin the
// tenant did not list (nobody's, or another tenant's) cannot read the answer.
func TestBrowserFrontEnd(t *testing.T) {
	t.Parallel()
	node := requireBrowser(t)

	base, admin := startServer(t)

	// The identity provider: JWKS and a token endpoint a page may call.
	var idp *authtest.Issuer
	idpSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		switch r.URL.Path {
		case "/jwks":
			w.Write(idp.JWKS())
		case "/token":
			tok, err := idp.Sign(r.URL.Query().Get("sub"), "acme-web", 5*time.Minute, nil)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			json.NewEncoder(w).Encode(map[string]string{"token": tok})
		default:
			http.NotFound(w, r)
		}
	}))
	defer idpSrv.Close()
	idp = authtest.NewIssuer(t, idpSrv.URL)

	page := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := frontEnd.Execute(w, map[string]string{"Issuer": idpSrv.URL, "Bulkhead": base}); err != nil {
			t.Errorf("render page: %v", err)
		}
	}
	app := httptest.NewServer(http.HandlerFunc(page))   // the origin acme lists
	other := httptest.NewServer(http.HandlerFunc(page)) // an origin nobody lists
	// globex's origin passes the preflight (some tenant lists it), but acme
	// does not list it, so acme's answer is not readable there either.
	globexApp := httptest.NewServer(http.HandlerFunc(page))
	defer app.Close()
	defer other.Close()
	defer globexApp.Close()
	if status, b := call(t, http.MethodPost, base+"/admin/v1/tenants", admin, map[string]any{
		"id": "globex", "cors_origins": []string{globexApp.URL}}); status != http.StatusCreated {
		t.Fatalf("create tenant: %d %s", status, b)
	}

	if status, b := call(t, http.MethodPost, base+"/admin/v1/tenants", admin, map[string]any{
		"id": "acme", "system_prompt": "You are Acme's assistant.", "cors_origins": []string{app.URL}}); status != http.StatusCreated {
		t.Fatalf("create tenant: %d %s", status, b)
	}
	// The CLI registers the issuer, its keys by URL.
	var stdout, stderr bytes.Buffer
	env := envMap(map[string]string{"BULKHEAD_SERVER": base, "BULKHEAD_ADMIN_TOKEN": admin})
	if err := run(t.Context(), []string{"issuer", "add", "acme", "--issuer", idpSrv.URL, "--audience", "acme-web",
		"--jwks-url", idpSrv.URL + "/jwks"}, env, &stdout, &stderr); err != nil {
		t.Fatalf("bulkhead issuer add: %v\n%s", err, stderr.String())
	}
	stdout.Reset()
	if err := run(t.Context(), []string{"issuer", "list", "acme"}, env, &stdout, &stderr); err != nil || !strings.Contains(stdout.String(), idpSrv.URL+"/jwks") {
		t.Fatalf("bulkhead issuer list: %v\n%s", err, stdout.String())
	}

	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	pages, _ := json.Marshal([]string{app.URL, other.URL, globexApp.URL})
	cmd := exec.CommandContext(ctx, node, "pages.mjs")
	cmd.Dir = browserDir
	cmd.Env = append(os.Environ(), "PAGES="+string(pages), "NO_PROXY=127.0.0.1,localhost")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("node pages.mjs: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
	}
	var shown []struct {
		URL, Answer, Error string
		Console            []string
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &shown); err != nil || len(shown) != 3 {
		t.Fatalf("parse pages.mjs output: %v\n%s", err, out.String())
	}
	t.Logf("pages: %+v", shown)
	if listed := shown[0]; listed.Answer == "" || listed.Error != "" {
		t.Errorf("the listed origin's page: answer %q, error %q; want an answer", listed.Answer, listed.Error)
	}
	for _, unlisted := range shown[1:] {
		if unlisted.Answer != "" || unlisted.Error == "" {
			t.Errorf("page of %s, an origin acme does not list: answer %q, error %q; want it refused", unlisted.URL, unlisted.Answer, unlisted.Error)
		}
	}
}

// TestBrowserConsole drives the console of a live `bulkhead serve` in
// headless Chromium (test/browser/console.mjs): the operator signs in,
// creates tenants, creates and revokes a key, sees a bad policy's error at
// its line and verifies an audit chain; a change without the anti-forgery
// token is refused; the tenant, signed in with its key, sees its own usage
// and audit and gets a 404 for another tenant's pages. It writes a
// screenshot of each page to docs/console.
func TestBrowserConsole(t *testing.T) {
	t.Parallel()
	node := requireBrowser(t)

	// A price for the offline model, so the usage pages show spend.
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bulkhead.yaml")
	if err := os.WriteFile(cfg, []byte("prices:\n  offline/default: {input: 2.5, cached_input: 1.25, output: 10}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	admin := "bka_console_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	base, stop := startServerWith(t, filepath.Join(dir, "data"), map[string]string{"BULKHEAD_ADMIN_TOKEN": admin}, "--config", cfg)
	t.Cleanup(func() { _ = stop() })
	shots, err := filepath.Abs(filepath.Join("..", "..", "docs", "console"))
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "console.mjs")
	cmd.Dir = browserDir
	cmd.Env = append(os.Environ(), "BASE="+base, "ADMIN="+admin, "SHOTS="+shots, "NO_PROXY=127.0.0.1,localhost")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("node console.mjs: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
	}
	var seen struct {
		Errors                     []string
		SigninURL, OperatorHome    string
		Created                    string
		Keys                       []string
		RevokedRow                 string
		RevokedKeyAPI              int
		PolicyError, PolicyBadLine string
		Verify                     string
		FilteredTypes              []string
		ForgedStatus               int
		ForgedListed               bool
		RevokedSignIn, TenantHome  string
		TenantUsage                string
		TenantUsageText            string
		TenantUsageCharts          int
		AllUsageText               string
		AllUsageCharts             int
		TenantAuditTypes           []string
		OtherTenant                map[string]int
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &seen); err != nil {
		t.Fatalf("parse console.mjs output: %v\n%s", err, out.String())
	}
	t.Logf("console: %+v", seen)
	check := func(what string, ok bool) {
		t.Helper()
		if !ok {
			t.Errorf("%s: got %+v", what, seen)
		}
	}
	check("no script errors in the pages (the CSP allows the console's own script)", len(seen.Errors) == 0)
	check("without a session the console shows the sign-in form", seen.SigninURL == "/console/signin")
	check("the operator lands on the tenants", seen.OperatorHome == "/console/tenants")
	check("the tenant was created", strings.Contains(seen.Created, "Tenant created"))
	check("two keys were created and shown", len(seen.Keys) == 2 && seen.Keys[0] == "bk_" && seen.Keys[1] == "bk_")
	check("the revoked key shows as revoked and fails on the API", strings.Contains(seen.RevokedRow, "revoked") && seen.RevokedKeyAPI == http.StatusUnauthorized)
	check("the bad policy's error names line 2 and the editor marks it", strings.Contains(seen.PolicyError, "line 2, column") && strings.TrimSpace(seen.PolicyBadLine) == "2")
	check("the audit chain verifies", strings.HasPrefix(seen.Verify, "Chain verified:"))
	check("the audit filter shows one event type", len(seen.FilteredTypes) == 1 && seen.FilteredTypes[0] == "key.revoke")
	check("a change without the CSRF token is refused and changes nothing", seen.ForgedStatus == http.StatusForbidden && !seen.ForgedListed)
	check("the revoked key cannot sign in", strings.Contains(seen.RevokedSignIn, "Sign-in failed"))
	check("the tenant lands on its own page", seen.TenantHome == "/console/tenants/acme")
	check("the tenant sees its own usage", strings.Contains(seen.TenantUsage, "acme"))
	check("the tenant's usage charts and lists its end user's requests", seen.TenantUsageCharts > 0 && strings.Contains(seen.TenantUsageText, "alice-at-acme"))
	check("the tenant's usage holds nothing of another tenant's", !strings.Contains(seen.TenantUsageText, "bob-at-globex") && !strings.Contains(seen.TenantUsageText, "globex"))
	check("the tenant's usage shows spend at the configured price", !strings.Contains(seen.TenantUsageText, "No usage yet") && regexp.MustCompile(`\b0\.0*[1-9][0-9]*\b`).MatchString(seen.TenantUsageText))
	check("the operator's usage shows both tenants' end users", seen.AllUsageCharts > 0 && strings.Contains(seen.AllUsageText, "alice-at-acme") && strings.Contains(seen.AllUsageText, "bob-at-globex"))
	check("the tenant sees its own audit log", slices.Contains(seen.TenantAuditTypes, "key.create") && slices.Contains(seen.TenantAuditTypes, "policy.set"))
	for path, status := range seen.OtherTenant {
		check("the tenant gets 404 for "+path, status == http.StatusNotFound)
	}
	check("every other tenant's and operator's page was tried", len(seen.OtherTenant) == 5)
	for _, name := range []string{"signin", "tenants", "tenant", "tenant-policy-error", "keys", "audit", "guard", "usage", "usage-all", "tenant-view", "tenant-audit"} {
		if _, err := os.Stat(filepath.Join(shots, name+".png")); err != nil {
			t.Errorf("screenshot %s: %v", name, err)
		}
	}
}
