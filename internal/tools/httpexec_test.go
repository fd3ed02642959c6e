package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// compile compiles d or fails the test.
func compile(t *testing.T, d Definition) *Tool {
	t.Helper()
	if d.Scope == "" {
		d.Scope = ScopeTenant
	}
	tool, err := Compile(d)
	if err != nil {
		t.Fatalf("Compile(%q): %v", d.Name, err)
	}
	return tool
}

// newCall builds the call the runtime would make: the model's raw
// arguments, bound parameters filled from the tenant, the user and secrets.
func newCall(t *testing.T, tool *Tool, id tenant.ID, raw string, secrets map[tenant.SecretName]string) Call {
	t.Helper()
	bind := func(source string) (string, error) {
		switch {
		case source == BindTenantID:
			return string(id), nil
		case source == BindUserID:
			return "user-1", nil
		case strings.HasPrefix(source, BindSecretPrefix):
			if v, ok := secrets[tenant.SecretName(strings.TrimPrefix(source, BindSecretPrefix))]; ok {
				return v, nil
			}
		}
		return "", fmt.Errorf("no value for %q", source)
	}
	args, err := tool.Arguments(raw, bind)
	if err != nil {
		t.Fatalf("Arguments(%q): %v", raw, err)
	}
	bound := map[string]string{}
	for param, source := range tool.Bound {
		v, err := bind(source)
		if err != nil {
			t.Fatal(err)
		}
		bound[param] = v
	}
	return Call{Tool: tool, Tenant: id, Args: args, Bound: bound, Secrets: secretValues(secrets)}
}

// received is what the tool server saw of one request.
type received struct {
	Method, Path, EscapedPath, RawQuery, Auth, ContentType, Body string
}

// toolServer is a local HTTP tool server that records every request.
type toolServer struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []received
}

func newToolServer(t *testing.T) *toolServer {
	t.Helper()
	s := &toolServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, received{
			Method: r.Method, Path: r.URL.Path, EscapedPath: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery,
			Auth: r.Header.Get("Authorization"), ContentType: r.Header.Get("Content-Type"), Body: string(body),
		})
		s.mu.Unlock()
		switch {
		case strings.HasPrefix(r.URL.Path, "/redirect"):
			http.Redirect(w, r, "/target", http.StatusFound)
		case r.URL.Path == "/fail":
			http.Error(w, "boom", http.StatusInternalServerError)
		case r.URL.Path == "/size":
			n := 0
			fmt.Sscan(r.URL.Query().Get("n"), &n)
			io.WriteString(w, strings.Repeat("a", n))
		case r.URL.Path == "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		default:
			io.WriteString(w, "ok "+r.URL.EscapedPath())
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *toolServer) received() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.reqs...)
}

const (
	acmeToken   = "acme-token-0123456789"
	globexToken = "globex-token-9876543210"
)

func TestHTTPTenantsGetOwnCredentials(t *testing.T) {
	srv := newToolServer(t)
	tool := compile(t, Definition{
		Name: "crm_lookup",
		Parameters: json.RawMessage(`{"type":"object","properties":{
			"customer":{"type":"string"},"tenant_id":{"type":"string"}},"required":["customer"]}`),
		Bound: map[string]string{"tenant_id": BindTenantID},
		HTTP: &HTTPSpec{Method: "POST", URL: srv.URL + "/t/{{bound.tenant_id}}/lookup",
			Headers: map[string]string{"Authorization": "Bearer {{secret.crm_token}}"}},
	})
	e := NewHTTP(HTTPOptions{})
	tenants := []struct {
		id    tenant.ID
		token string
	}{{"acme", acmeToken}, {"globex", globexToken}}

	// Concurrently, to let the race detector see any shared state.
	var wg sync.WaitGroup
	for _, tn := range tenants {
		for range 5 {
			wg.Go(func() {
				call := newCall(t, tool, tn.id, `{"customer":"c-1"}`, map[tenant.SecretName]string{"crm_token": tn.token})
				res, err := e.Execute(context.Background(), call)
				if err != nil || res.IsError {
					t.Errorf("%s: Execute = %+v, %v", tn.id, res, err)
				}
			})
		}
	}
	wg.Wait()

	got := map[string]int{}
	for _, r := range srv.received() {
		var body map[string]string
		if err := json.Unmarshal([]byte(r.Body), &body); err != nil {
			t.Fatalf("body %q: %v", r.Body, err)
		}
		id := body["tenant_id"]
		got[fmt.Sprintf("%s %s %s customer=%s auth=%s ct=%s", r.Method, id, r.Path, body["customer"], r.Auth, r.ContentType)]++
	}
	want := map[string]int{
		"POST acme /t/acme/lookup customer=c-1 auth=Bearer " + acmeToken + " ct=application/json":       5,
		"POST globex /t/globex/lookup customer=c-1 auth=Bearer " + globexToken + " ct=application/json": 5,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("server received\n%v\nwant\n%v", got, want)
	}
}

func TestHTTPRequestShape(t *testing.T) {
	srv := newToolServer(t)
	for _, tc := range []struct {
		name   string
		def    Definition
		args   string
		bound  map[string]string // bound params filled from secrets, by secret name
		want   received
		errHas string // non-empty: Execute must fail with this in the message
	}{
		{
			name: "bound value that is not one path segment refused",
			def: Definition{
				Parameters: json.RawMessage(`{"type":"object","properties":{"item":{"type":"string"}}}`),
				Bound:      map[string]string{"item": "secret.item"},
				HTTP:       &HTTPSpec{Method: "GET", URL: srv.URL + "/items/{{bound.item}}"},
			},
			bound:  map[string]string{"item": "../admin?x=1"},
			errHas: "not one url path segment",
		},
		{
			name: "GET arguments in the query",
			def: Definition{
				Parameters: json.RawMessage(`{"type":"object","properties":{"q":{"type":"string"},"n":{"type":"integer"},
					"flag":{"type":"boolean"},"tags":{"type":"array","items":{"type":"string"}},"f":{"type":"number"}}}`),
				HTTP: &HTTPSpec{Method: "GET", URL: srv.URL + "/search?fixed=1"},
			},
			args: `{"q":"a b&c","n":3,"flag":true,"tags":["x","y"],"f":1.5}`,
			want: received{Method: "GET", Path: "/search", EscapedPath: "/search",
				RawQuery: "f=1.5&fixed=1&flag=true&n=3&q=a+b%26c&tags=%5B%22x%22%2C%22y%22%5D"},
		},
		{
			name: "DELETE arguments in the query",
			def: Definition{
				Parameters: json.RawMessage(`{"type":"object","properties":{"id":{"type":"string"}}}`),
				HTTP:       &HTTPSpec{Method: "delete", URL: srv.URL + "/things"},
			},
			args: `{"id":"7"}`,
			want: received{Method: "DELETE", Path: "/things", EscapedPath: "/things", RawQuery: "id=7"},
		},
		{
			name: "PUT arguments as JSON",
			def: Definition{
				Parameters: json.RawMessage(`{"type":"object","properties":{"id":{"type":"string"},"n":{"type":"integer"}}}`),
				HTTP:       &HTTPSpec{Method: "PUT", URL: srv.URL + "/things"},
			},
			args: `{"id":"7","n":2}`,
			want: received{Method: "PUT", Path: "/things", EscapedPath: "/things", ContentType: "application/json", Body: `{"id":"7","n":2}`},
		},
		{
			name: "dot segment refused",
			def: Definition{
				Parameters: json.RawMessage(`{"type":"object","properties":{"item":{"type":"string"}}}`),
				Bound:      map[string]string{"item": "secret.item"},
				HTTP:       &HTTPSpec{Method: "GET", URL: srv.URL + "/items/{{bound.item}}/x"},
			},
			bound:  map[string]string{"item": ".."},
			errHas: "segment",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(srv.received())
			tc.def.Name = "t"
			tool := compile(t, tc.def)
			secrets := map[tenant.SecretName]string{"api_key": "k-0123456789"}
			for name, v := range tc.bound {
				secrets[tenant.SecretName(name)] = v
			}
			res, err := NewHTTP(HTTPOptions{}).Execute(context.Background(), newCall(t, tool, "acme", tc.args, secrets))
			reqs := srv.received()[before:]
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Errorf("Execute = %+v, %v; want an error containing %q", res, err, tc.errHas)
				}
				if len(reqs) != 0 {
					t.Errorf("server received %+v; want nothing", reqs)
				}
				return
			}
			if err != nil || res.IsError {
				t.Fatalf("Execute = %+v, %v", res, err)
			}
			if len(reqs) != 1 {
				t.Fatalf("server received %d requests, want 1", len(reqs))
			}
			if got := reqs[0]; got != tc.want {
				t.Errorf("server received\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

// TestHTTPFixedQueryParameters: arguments that did not come through Decode
// (a builtin or a test building a Call) still cannot shadow a query
// parameter the URL fixes, by any spelling and for any method, while a
// bound parameter named like one is the runtime's own value.
func TestHTTPFixedQueryParameters(t *testing.T) {
	srv := newToolServer(t)
	params := json.RawMessage(`{"type":"object","additionalProperties":true,"properties":{"customer":{"type":"string"},"tenant":{"type":"string"}}}`)
	for _, method := range []string{"GET", "DELETE", "POST", "PUT", "PATCH"} {
		tool := compile(t, Definition{Name: "q", Parameters: params, Bound: map[string]string{"tenant": BindTenantID},
			HTTP: &HTTPSpec{Method: method, URL: srv.URL + "/lookup?scope=read&key={{secret.api_key}}&tenant_id={{bound.tenant}}"}})
		for _, key := range []string{"scope", "SCOPE", "Scope", "scope​", "ſcope", "s-cope", "key", "KEY", "tenantId", "tenant-id"} {
			t.Run(method+" "+key, func(t *testing.T) {
				before := len(srv.received())
				call := Call{Tool: tool, Tenant: "acme", Args: map[string]any{"customer": "c", key: "admin"},
					Bound: map[string]string{"tenant": "acme"}, Secrets: secretValues(map[tenant.SecretName]string{"api_key": "k-0123456789"})}
				res, err := NewHTTP(HTTPOptions{}).Execute(context.Background(), call)
				if err == nil || !strings.Contains(err.Error(), "collides with a query parameter") {
					t.Errorf("Execute = %+v, %v; want a collision error", res, err)
				}
				if reqs := srv.received()[before:]; len(reqs) != 0 {
					t.Errorf("server received %+v; want nothing", reqs)
				}
			})
		}
		t.Run(method+" control", func(t *testing.T) {
			call := Call{Tool: tool, Tenant: "acme", Args: map[string]any{"customer": "c", "tenant": "acme", "note": "x"},
				Bound: map[string]string{"tenant": "acme"}, Secrets: secretValues(map[tenant.SecretName]string{"api_key": "k-0123456789"})}
			if res, err := NewHTTP(HTTPOptions{}).Execute(context.Background(), call); err != nil || res.IsError {
				t.Fatalf("Execute = %+v, %v; want the call made", res, err)
			}
		})
	}
}

func TestHTTPResults(t *testing.T) {
	srv := newToolServer(t)
	for _, tc := range []struct {
		name      string
		url       string
		maxOutput int
		want      Result
	}{
		{"ok", srv.URL + "/hello", 0, Result{Content: "ok /hello"}},
		{"500 is a tool error", srv.URL + "/fail", 0, Result{IsError: true, Content: "HTTP 500: boom\n"}},
		{"redirect not followed", srv.URL + "/redirect", 0, Result{IsError: true, Content: "HTTP 302: redirects are not followed"}},
		{"output at the cap", srv.URL + "/size?n=10", 10, Result{Content: strings.Repeat("a", 10)}},
		{"output over the cap", srv.URL + "/size?n=100", 10, Result{Content: strings.Repeat("a", 10), Truncated: true}},
		{"default cap", srv.URL + "/size?n=70000", 0, Result{Content: strings.Repeat("a", DefaultMaxOutput), Truncated: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tool := compile(t, Definition{Name: "t", HTTP: &HTTPSpec{Method: "GET", URL: tc.url}})
			e := NewHTTP(HTTPOptions{MaxOutput: tc.maxOutput})
			got, err := e.Execute(context.Background(), newCall(t, tool, "acme", "", nil))
			if err != nil {
				t.Fatalf("Execute: %v", err)
			}
			if got != tc.want {
				t.Errorf("Execute = %.80q (len %d), want %.80q (len %d)", got.Content, len(got.Content), tc.want.Content, len(tc.want.Content))
			}
		})
	}
	for _, r := range srv.received() {
		if r.Path == "/target" {
			t.Errorf("redirect was followed to %s", r.Path)
		}
	}
}

func TestHTTPRedirectToOtherHost(t *testing.T) {
	elsewhere := newToolServer(t)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/steal", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)
	tool := compile(t, Definition{Name: "t", HTTP: &HTTPSpec{Method: "POST", URL: redirector.URL + "/x",
		Headers: map[string]string{"Authorization": "Bearer {{secret.token}}"}}})
	got, err := NewHTTP(HTTPOptions{}).Execute(context.Background(),
		newCall(t, tool, "acme", "", map[tenant.SecretName]string{"token": acmeToken}))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Result{IsError: true, Content: "HTTP 307: redirects are not followed"}); got != want {
		t.Errorf("Execute = %+v, want %+v", got, want)
	}
	if reqs := elsewhere.received(); len(reqs) != 0 {
		t.Errorf("the other host received %+v", reqs)
	}
}

func TestHTTPTimeout(t *testing.T) {
	srv := newToolServer(t)
	tool := compile(t, Definition{Name: "t", HTTP: &HTTPSpec{Method: "GET", URL: srv.URL + "/slow?key={{secret.token}}"}})
	e := NewHTTP(HTTPOptions{Timeout: 100 * time.Millisecond})
	start := time.Now()
	res, err := e.Execute(context.Background(), newCall(t, tool, "acme", "", map[tenant.SecretName]string{"token": acmeToken}))
	if err == nil {
		t.Fatalf("Execute = %+v, want a timeout error", res)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Execute took %v, want about 100ms", d)
	}
	assertNoSecret(t, err, acmeToken)
}

// TestHTTPErrorsHideSecrets makes net/http fail on URLs and headers holding
// secrets; the errors must not show them in any form.
func TestHTTPErrorsHideSecrets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	// A secret with characters that escaping changes.
	const secret = "p@ss/w0rd?&=+ secret"
	for _, tc := range []struct {
		name string
		spec HTTPSpec
	}{
		{"secret in path, connection refused", HTTPSpec{Method: "GET", URL: closed + "/v1/{{secret.token}}/x"}},
		{"secret in query, connection refused", HTTPSpec{Method: "GET", URL: closed + "/v1?key={{secret.token}}"}},
		{"secret in header, connection refused", HTTPSpec{Method: "POST", URL: closed + "/v1",
			Headers: map[string]string{"Authorization": "Bearer {{secret.token}}"}}},
		{"secret with CRLF in header", HTTPSpec{Method: "POST", URL: closed + "/v1",
			Headers: map[string]string{"X-Key": "{{secret.crlf}}"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tool := compile(t, Definition{Name: "t", HTTP: &tc.spec})
			secrets := map[tenant.SecretName]string{"token": secret, "crlf": secret + "\r\nX-Evil: 1"}
			res, err := NewHTTP(HTTPOptions{}).Execute(context.Background(), newCall(t, tool, "acme", "", secrets))
			if err == nil {
				t.Fatalf("Execute = %+v, want an error", res)
			}
			t.Logf("error: %v", err)
			assertNoSecret(t, err, secret)
			if errors.Unwrap(err) != nil {
				t.Errorf("error unwraps to %v; want only the redacted message", errors.Unwrap(err))
			}
		})
	}
}

func assertNoSecret(t *testing.T, err error, secret string) {
	t.Helper()
	msg := err.Error()
	for _, form := range []string{secret, url.PathEscape(secret), url.QueryEscape(secret)} {
		if strings.Contains(msg, form) {
			t.Errorf("error %q holds the secret (as %q)", msg, form)
		}
	}
}
