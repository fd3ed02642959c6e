package server

import (
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// consoleClient is a browser of the console: it keeps the session cookie
// and does not follow redirects, so tests see them.
type consoleClient struct {
	e      *testEnv
	client *http.Client
	cookie *http.Cookie
}

func (e *testEnv) consoleClient() *consoleClient {
	return &consoleClient{e: e, client: &http.Client{Transport: e.client.Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// request sends one console request: form is sent as a POST body, nil
// makes a GET.
func (c *consoleClient) request(t testing.TB, path string, form url.Values, header map[string]string) response {
	t.Helper()
	method, body := http.MethodGet, ""
	if form != nil {
		method, body = http.MethodPost, form.Encode()
	}
	req, err := http.NewRequestWithContext(t.Context(), method, c.e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if c.cookie != nil {
		req.AddCookie(c.cookie)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == consoleCookie {
			c.cookie = ck
			if ck.MaxAge < 0 {
				c.cookie = nil
			}
		}
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (c *consoleClient) get(t testing.TB, path string) response {
	t.Helper()
	return c.request(t, path, nil, nil)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the anti-forgery token from a page the session renders.
func (c *consoleClient) csrf(t testing.TB) string {
	t.Helper()
	page := c.get(t, "/console/")
	if loc := page.header.Get("Location"); loc != "" {
		page = c.get(t, loc)
	}
	m := csrfField.FindSubmatch(page.body)
	if m == nil {
		t.Fatalf("no csrf field in the console page: %v", page)
	}
	return string(m[1])
}

// post sends a form with the session's anti-forgery token.
func (c *consoleClient) post(t testing.TB, path string, form url.Values) response {
	t.Helper()
	form.Set("csrf", c.csrf(t))
	return c.request(t, path, form, nil)
}

// signIn signs c in with credential and checks it worked.
func (c *consoleClient) signIn(t testing.TB, credential string) {
	t.Helper()
	r := c.request(t, "/console/signin", url.Values{"credential": {credential}}, nil)
	if r.status != http.StatusSeeOther || c.cookie == nil {
		t.Fatalf("sign in: got %v, cookie %v; want 303 and a session cookie", r, c.cookie)
	}
}

func TestConsoleSignIn(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme"})
	keyID, key := env.newKey(t, "acme")

	for _, tc := range []struct {
		name, credential string
		wantHome         string
	}{
		{"admin token", testAdminToken, "/console/tenants"},
		{"tenant key", key, "/console/tenants/acme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := env.consoleClient()
			r := c.request(t, "/console/signin", url.Values{"credential": {tc.credential}}, nil)
			if r.status != http.StatusSeeOther || r.header.Get("Location") != "/console/" {
				t.Fatalf("sign in: got %v, want 303 to /console/", r)
			}
			ck := c.cookie
			if ck == nil {
				t.Fatal("no session cookie")
			}
			if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure || ck.Path != "/console" || ck.MaxAge != 8*3600 {
				t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, not Secure on plain HTTP, Path /console, Max-Age 8h", ck)
			}
			payload, _, _ := strings.Cut(ck.Value, ".")
			raw, err := base64.RawURLEncoding.DecodeString(payload)
			if err != nil {
				t.Fatalf("cookie payload: %v", err)
			}
			if strings.Contains(string(raw), tc.credential) || strings.Contains(ck.Value, tc.credential) {
				t.Errorf("the cookie holds the credential: %s", raw)
			}
			if got := c.get(t, "/console/").header.Get("Location"); got != tc.wantHome {
				t.Errorf("home: redirected to %q, want %q", got, tc.wantHome)
			}
			if r := c.get(t, tc.wantHome); r.status != http.StatusOK {
				t.Errorf("GET %s: %v", tc.wantHome, r)
			}
		})
	}

	for _, bad := range []string{"", "nope", testAdminToken + "x", key[:len(key)-2] + "zz", "bk_" + keyID} {
		c := env.consoleClient()
		r := c.request(t, "/console/signin", url.Values{"credential": {bad}}, nil)
		if r.status != http.StatusUnauthorized || c.cookie != nil || !strings.Contains(string(r.body), "Sign-in failed") {
			t.Errorf("sign in with %q: got %d, cookie %v; want 401, no cookie", bad, r.status, c.cookie)
		}
	}
	// A wrong secret for acme's key id is counted into acme's log, as the
	// API counts it.
	if audit := env.admin(t, "GET", "/admin/v1/tenants/acme/audit", nil, http.StatusOK); !strings.Contains(string(audit.body), "auth.failure") {
		t.Errorf("acme's audit log has no auth.failure after a refused console sign-in: %s", audit.body)
	}
	// Without a session, pages go to the sign-in form and changes are refused.
	c := env.consoleClient()
	if r := c.get(t, "/console/tenants"); r.status != http.StatusSeeOther || r.header.Get("Location") != "/console/signin" {
		t.Errorf("GET /console/tenants without a session: %v, want 303 to sign-in", r)
	}
	if r := c.request(t, "/console/tenants", url.Values{"id": {"evil"}}, nil); r.status != http.StatusUnauthorized {
		t.Errorf("POST without a session: %v, want 401", r)
	}
	// A forged cookie is no session.
	c.cookie = &http.Cookie{Name: consoleCookie, Value: base64.RawURLEncoding.EncodeToString([]byte(`{"sid":"x","op":true}`)) + ".AAAA"}
	if r := c.get(t, "/console/tenants"); r.status != http.StatusSeeOther {
		t.Errorf("forged cookie: %v, want 303 to sign-in", r)
	}
	if _, err := env.plane.Tenant("evil"); err == nil {
		t.Error("a POST without a session created a tenant")
	}
}

func TestConsoleHeaders(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme"})
	c := env.consoleClient()
	signin := c.get(t, "/console/signin")
	c.signIn(t, testAdminToken)
	inlineScript := regexp.MustCompile(`<script(?:\s[^>]*)?>`)
	for _, r := range []response{signin, c.get(t, "/console/tenants"), c.get(t, "/console/tenants/acme"),
		c.get(t, "/console/tenants/nobody"), c.get(t, "/console/assets/console.css"), c.get(t, "/console/assets/console.js")} {
		for k, want := range map[string]string{
			"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
			"Cache-Control":           "no-store",
		} {
			if got := r.header.Get(k); got != want {
				t.Errorf("%s: got %q, want %q", k, got, want)
			}
		}
		for _, tag := range inlineScript.FindAllString(string(r.body), -1) {
			if !strings.Contains(tag, ` src="/console/assets/`) {
				t.Errorf("a script tag that is not the console's file: %s", tag)
			}
		}
		if strings.Contains(string(r.body), "style=") || strings.Contains(string(r.body), " onclick=") {
			t.Errorf("inline style or handler in a console page")
		}
	}
	if r := c.get(t, "/console/assets/layout.html"); r.status != http.StatusNotFound {
		t.Errorf("GET a template as an asset: %v, want 404", r.status)
	}
}

func TestConsoleCSRF(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	c := env.consoleClient()
	c.signIn(t, testAdminToken)
	other := env.consoleClient()
	other.signIn(t, testAdminToken)
	otherToken := other.csrf(t)

	for _, tc := range []struct {
		name   string
		csrf   string
		header map[string]string
	}{
		{"missing token", "", nil},
		{"wrong token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", nil},
		{"another session's token", otherToken, nil},
		{"foreign origin", c.csrf(t), map[string]string{"Origin": "https://evil.example"}},
		{"opaque origin", c.csrf(t), map[string]string{"Origin": "null"}},
		{"cross-site fetch", c.csrf(t), map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": env.srv.URL}},
	} {
		form := url.Values{"id": {"evil"}}
		if tc.csrf != "" {
			form.Set("csrf", tc.csrf)
		}
		if r := c.request(t, "/console/tenants", form, tc.header); r.status != http.StatusForbidden {
			t.Errorf("%s: got %v, want 403", tc.name, r)
		}
		if _, err := env.plane.Tenant("evil"); err == nil {
			t.Fatalf("%s: the tenant was created", tc.name)
		}
	}
	if r := c.post(t, "/console/tenants", url.Values{"id": {"good"}}); r.status != http.StatusSeeOther {
		t.Fatalf("create with the token: %v, want 303", r)
	}
	if _, err := env.plane.Tenant("good"); err != nil {
		t.Errorf("create with the token: %v", err)
	}
	// Deleting, revoking and policy changes are refused the same way.
	keyID, _ := env.newKey(t, "good")
	for _, path := range []string{"/console/tenants/good/delete", "/console/tenants/good/keys/" + keyID + "/revoke",
		"/console/tenants/good/policy", "/console/tenants/good/status", "/console/tenants/good/keys"} {
		if r := c.request(t, path, url.Values{"confirm": {"good"}, "status": {"suspended"}, "policy": {"forbid (principal, action, resource);"}}, nil); r.status != http.StatusForbidden {
			t.Errorf("POST %s without a token: %v, want 403", path, r.status)
		}
	}
	tn, err := env.plane.Tenant("good")
	if err != nil || tn.Status != "active" || tn.Policy != "" {
		t.Fatalf("after refused changes: tenant %+v, %v; want it unchanged", tn, err)
	}
	keys, _ := env.plane.Keys(t.Context(), "good")
	if len(keys) != 1 || keys[0].RevokedAt != nil {
		t.Errorf("after refused changes: keys %+v, want the one key, not revoked", keys)
	}
}

func TestConsoleTenantSeesOnlyItsOwn(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme"})
	env.createTenant(t, map[string]any{"id": "globex"})
	_, key := env.newKey(t, "acme")
	c := env.consoleClient()
	c.signIn(t, key)

	for _, path := range []string{"/console/tenants/acme", "/console/tenants/acme/keys", "/console/tenants/acme/usage",
		"/console/tenants/acme/audit", "/console/tenants/acme/guard", "/console/tenants/acme/audit?verify=1"} {
		if r := c.get(t, path); r.status != http.StatusOK {
			t.Errorf("GET %s: %v, want 200", path, r)
		}
	}
	var missing string
	for _, sub := range []string{"", "/keys", "/usage", "/audit", "/guard"} {
		for _, other := range []string{"globex", "nobody"} {
			r := c.get(t, "/console/tenants/"+other+sub)
			if r.status != http.StatusNotFound {
				t.Errorf("GET %s%s as acme: %v, want 404", other, sub, r.status)
			}
			body := strings.ReplaceAll(string(r.body), other, "X")
			if sub == "" && other == "nobody" {
				missing = body
			} else if sub == "" && missing != "" && body != missing {
				t.Errorf("another tenant's page differs from a missing one's")
			}
		}
	}
	// The operator's pages, and every change, do not exist for a tenant.
	for _, path := range []string{"/console/tenants", "/console/usage"} {
		if r := c.get(t, path); r.status != http.StatusNotFound {
			t.Errorf("GET %s as acme: %v, want 404", path, r.status)
		}
	}
	for _, path := range []string{"/console/tenants", "/console/tenants/acme/keys", "/console/tenants/acme/policy",
		"/console/tenants/acme/status", "/console/tenants/acme/delete", "/console/tenants/globex/delete"} {
		if r := c.post(t, path, url.Values{"id": {"x"}, "confirm": {"acme"}, "status": {"suspended"}}); r.status != http.StatusNotFound {
			t.Errorf("POST %s as acme: %v, want 404", path, r.status)
		}
	}
	keys, _ := env.plane.Keys(t.Context(), "acme")
	if tn, err := env.plane.Tenant("acme"); err != nil || tn.Status != "active" || len(keys) != 1 {
		t.Errorf("after acme's refused changes: %+v %v, %d keys", tn, err, len(keys))
	}
	if _, err := env.plane.Tenant("x"); err == nil {
		t.Error("a tenant session created a tenant")
	}
}

func TestConsoleSessionEndsWithItsKey(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme"})
	for _, tc := range []struct {
		name string
		end  func(keyID string)
	}{
		{"revoked key", func(keyID string) {
			env.admin(t, "DELETE", "/admin/v1/tenants/acme/keys/"+keyID, nil, http.StatusNoContent)
		}},
		{"suspended tenant", func(string) {
			env.admin(t, "PATCH", "/admin/v1/tenants/acme", map[string]any{"status": "suspended"}, http.StatusOK)
		}},
		{"deleted tenant", func(string) { env.admin(t, "DELETE", "/admin/v1/tenants/acme", nil, http.StatusNoContent) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := env.plane.Tenant("acme"); err != nil {
				env.createTenant(t, map[string]any{"id": "acme"})
			}
			env.admin(t, "PATCH", "/admin/v1/tenants/acme", map[string]any{"status": "active"}, http.StatusOK)
			keyID, key := env.newKey(t, "acme")
			c := env.consoleClient()
			c.signIn(t, key)
			if r := c.get(t, "/console/tenants/acme"); r.status != http.StatusOK {
				t.Fatalf("before: %v", r)
			}
			tc.end(keyID)
			if r := c.get(t, "/console/tenants/acme"); r.status != http.StatusSeeOther || r.header.Get("Location") != "/console/signin" {
				t.Errorf("after: %v, want 303 to sign-in", r)
			}
		})
	}
}

func TestConsoleSignInRateLimited(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	c := env.consoleClient()
	limited := false
	for range 20 {
		r := c.request(t, "/console/signin", url.Values{"credential": {"guess"}}, nil)
		if r.status == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("20 wrong sign-ins in a row were never limited")
	}
	// Limited means refused, even with the right token.
	if r := c.request(t, "/console/signin", url.Values{"credential": {testAdminToken}}, nil); r.status != http.StatusTooManyRequests || c.cookie != nil {
		t.Errorf("sign-in while limited: %v, want 429 and no session", r.status)
	}
}

// TestConsoleSessionOnAnotherReplica: the cookie is stateless, keyed from
// the admin token every replica holds, so a replica that did not issue a
// session accepts it.
func TestConsoleSessionOnAnotherReplica(t *testing.T) {
	one, two := newTestEnv(t, envOptions{}), newTestEnv(t, envOptions{})
	c := one.consoleClient()
	c.signIn(t, testAdminToken)
	other := two.consoleClient()
	other.cookie = c.cookie
	if r := other.get(t, "/console/tenants"); r.status != http.StatusOK {
		t.Errorf("the session on another replica: %v, want 200", r.status)
	}
}

// TestConsoleCookieSecureOnTLS: over TLS the session cookie is Secure, and
// the console's own https origin passes the origin check; behind a proxy
// that terminated TLS too.
func TestConsoleCookieSecureOnTLS(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	ts := httptest.NewTLSServer(env.srv.Config.Handler)
	defer ts.Close()
	client := ts.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, ts.URL+"/console/signin",
		strings.NewReader(url.Values{"credential": {testAdminToken}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", ts.URL)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var got *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == consoleCookie {
			got = c
		}
	}
	if resp.StatusCode != http.StatusSeeOther || got == nil || !got.Secure || !got.HttpOnly || got.SameSite != http.SameSiteStrictMode {
		t.Errorf("sign-in over TLS: %d, cookie %+v; want 303 and a Secure, HttpOnly, SameSite=Strict cookie", resp.StatusCode, got)
	}
}

func TestConsoleCookieSecureBehindTLSProxy(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	c := env.consoleClient()
	host := strings.TrimPrefix(env.srv.URL, "http://")
	r := c.request(t, "/console/signin", url.Values{"credential": {testAdminToken}},
		map[string]string{"X-Forwarded-Proto": "https", "Origin": "https://" + host})
	if r.status != http.StatusSeeOther || c.cookie == nil || !c.cookie.Secure {
		t.Errorf("sign-in behind a TLS proxy: %v, cookie %+v; want 303 and a Secure cookie", r.status, c.cookie)
	}
}
