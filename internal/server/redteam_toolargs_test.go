package server

// Red-team probes of the tool-call path (from helper h14's findings F2, F9,
// F10, F15 and F16), kept as regression tests: each asserts the safe
// outcome for tenant A (mallory) attacking tenant B (victim).

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"sync"
	"testing"
	"unicode"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"

	"github.com/bulkhead-ai/bulkhead/internal/tools"
)

// rtQueryEcho is a tool server that records raw query strings.
type rtQueryEcho struct {
	*httptest.Server
	mu    sync.Mutex
	query []string
}

func newRTQueryEcho(t *testing.T) *rtQueryEcho {
	e := &rtQueryEcho{}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.query = append(e.query, r.URL.RawQuery)
		e.mu.Unlock()
		io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *rtQueryEcho) all() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.query...)
}

// rtDenied checks that A's latest tool.call audit record is a denial for
// reason: the refusal is recorded, not only the request withheld.
func rtDenied(t *testing.T, w *hostileWorld, what, reason string) {
	t.Helper()
	recs := auditOf(t, w.env, w.aKey, "tool.call")
	if len(recs) == 0 {
		t.Errorf("%s: no tool.call audit record", what)
		return
	}
	if rec := string(recs[len(recs)-1].Data); !strings.Contains(rec, `"deny"`) || !strings.Contains(rec, reason) {
		t.Errorf("%s: audit record %s, want a denial for %q", what, rec, reason)
	}
}

// rtPHPName is the parameter a PHP, Rails (Rack) or qs-style (Express)
// query parser files a query name under: '.' and ' ' become '_', the first
// unmatched '[' becomes '_', and "name[...]" is an array or hash under name.
func rtPHPName(name string) string {
	if i := strings.IndexByte(name, '['); i > 0 {
		if strings.IndexByte(name[i:], ']') > 0 {
			return name[:i]
		}
		name = name[:i] + "_" + name[i+1:]
	}
	return strings.NewReplacer(".", "_", " ", "_").Replace(strings.TrimLeft(name, " "))
}

// TestRedteamGETQueryBracketKeys (F2): on GET tools, bracketed keys must not
// reach the tool server as a name PHP/Rack/qs file under the bound
// tenant_id or the URL's fixed scope.
func TestRedteamGETQueryBracketKeys(t *testing.T) {
	w := newHostileWorld(t, false)
	env := w.env
	q := newRTQueryEcho(t)
	env.admin(t, "POST", "/admin/v1/tools", map[string]any{
		"name": "crm_find", "description": "Find customers", "scope": "tenant",
		"parameters": json.RawMessage(`{"type":"object","properties":{"customer":{"type":"string"},"tenant_id":{"type":"string"}},"additionalProperties":true}`),
		"bound":      map[string]string{"tenant_id": tools.BindTenantID},
		"http":       map[string]any{"method": "GET", "url": q.URL + "/find"},
	}, http.StatusCreated)
	env.admin(t, "POST", "/admin/v1/tools", map[string]any{
		"name": "crm_read", "description": "Read customers", "scope": "tenant",
		"parameters": json.RawMessage(`{"type":"object","properties":{"customer":{"type":"string"}},"additionalProperties":true}`),
		"http":       map[string]any{"method": "GET", "url": q.URL + "/read?scope=read"},
	}, http.StatusCreated)
	env.admin(t, "PATCH", "/admin/v1/tenants/"+hostileA, map[string]any{"tools": []string{"crm_ticket", "crm_note", "crm_find", "crm_read"}}, http.StatusOK)

	// A legitimate call still goes through.
	before := len(q.all())
	w.chat(t, w.aKey, `/call crm_find {"customer":"c","page":"2"}`, false)
	if got := q.all()[before:]; len(got) != 1 {
		t.Fatalf("a plain GET call: the tool server got %q, want one request", got)
	}
	cases := []struct{ tool, key, param string }{
		{"crm_read", "scope[]", "scope"},
		{"crm_find", "tenant_id[]", "tenant_id"},
		{"crm_find", "tenant_id[0]", "tenant_id"},
		{"crm_find", "tenant[id", "tenant_id"},
		{"crm_find", "tenant_id[x]", "tenant_id"},
	}
	for _, c := range cases {
		before := len(q.all())
		w.chat(t, w.aKey, `/call `+c.tool+` {"customer":"c","`+c.key+`":"`+hostileB+`"}`, false)
		rtDenied(t, w, c.key, tools.ReasonQueryName)
		for _, raw := range q.all()[before:] {
			vals, _ := url.ParseQuery(raw)
			for name := range vals {
				if name != c.param && rtPHPName(name) == c.param {
					t.Errorf("model key %q: the tool server got query %q, which PHP/Rack/qs read as %s", c.key, raw, c.param)
				}
			}
		}
	}
}

// rtLenientKey is a key as a lenient server could match it: NFKC, full
// case folding, combining marks, format and control characters and
// separators dropped.
func rtLenientKey(k string) string {
	k = norm.NFKC.String(cases.Fold().String(norm.NFKD.String(k)))
	return strings.Map(func(r rune) rune {
		if unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Cf, r) || unicode.IsControl(r) || unicode.IsSpace(r) ||
			r == '_' || r == '-' || r == '.' || unicode.Is(unicode.Pc, r) || unicode.Is(unicode.Pd, r) ||
			unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r) || unicode.Is(unicode.Variation_Selector, r) {
			return -1
		}
		return r
	}, k)
}

// TestRedteamKeySpellings (F9): keys with control characters (a C string
// ends at NUL) sent to the open tool crm_note must not reach the tool
// server as a key a lenient server folds onto a declared one.
func TestRedteamKeySpellings(t *testing.T) {
	w := newHostileWorld(t, false)
	for _, key := range []string{`tenant_id\u0000`, `tenant_id\u0001`, `tenant_id\u001f`, `tenant_id\u007f`, `tenant_id\u0085`, `tenant_id\ufffd`, `\u0000tenant_id`} {
		m := w.echo.mark()
		w.chat(t, w.aKey, `/call crm_note {"customer":"c-k","`+key+`":"`+hostileB+`"}`, false)
		rtDenied(t, w, key, tools.ReasonControl)
		for _, r := range w.echo.since(m) {
			for _, kv := range r.members {
				for _, d := range hostileDeclared {
					if kv.key != d && rtLenientKey(kv.key) == rtLenientKey(d) {
						t.Errorf("model key %q reached the tool server as %q = %s, which a lenient server folds onto %s", key, kv.key, kv.raw, d)
					}
				}
			}
		}
	}
}

// TestRedteamUserInPathTraversal (F10): the chat's user fills
// {{bound.user_id}} in a tool's URL path; it may not leave its segment for
// a server that decodes %2F and resolves dot segments.
func TestRedteamUserInPathTraversal(t *testing.T) {
	w := newHostileWorld(t, false)
	env := w.env
	env.admin(t, "POST", "/admin/v1/tools", map[string]any{
		"name": "user_notes", "description": "The user's notes", "scope": "tenant",
		"parameters": json.RawMessage(`{"type":"object","properties":{"tenant_id":{"type":"string"},"user_id":{"type":"string"},"q":{"type":"string"}}}`),
		"bound":      map[string]string{"tenant_id": tools.BindTenantID, "user_id": tools.BindUserID},
		"http":       map[string]any{"method": "GET", "url": w.echo.URL + "/t/{{bound.tenant_id}}/u/{{bound.user_id}}/notes"},
	}, http.StatusCreated)
	env.admin(t, "PATCH", "/admin/v1/tenants/"+hostileA, map[string]any{"tools": []string{"crm_ticket", "crm_note", "user_notes"}}, http.StatusOK)
	// An ordinary user id still reaches its path.
	m := w.echo.mark()
	env.chat(t, chatCall{key: w.aKey, user: "bob@example.com", content: `/call user_notes {"q":"all"}`})
	if got := w.echo.since(m); len(got) != 1 || got[0].path != "/t/"+hostileA+"/u/bob@example.com/notes" {
		t.Fatalf("user bob@example.com: the tool server got %+v, want one request to its notes", got)
	}
	for _, user := range []string{"../../victim/u/bob", "..%2F..%2Fvictim%2Fu%2Fbob", "x/../../../victim/u/bob", `..\..\victim`, "..", "..;", "bob?tenant=victim"} {
		m := w.echo.mark()
		env.chat(t, chatCall{key: w.aKey, user: user, content: `/call user_notes {"q":"all"}`})
		rtDenied(t, w, user, tools.ReasonPlaceholder)
		for _, req := range w.echo.since(m) {
			decoded := path.Clean(strings.ReplaceAll(req.path, `\`, "/")) // r.URL.Path is already %2F-decoded
			if !strings.HasPrefix(decoded, "/t/"+hostileA+"/u/") || strings.Count(decoded, "/") != 4 {
				t.Errorf("user %q: the tool server got path %q, which resolves to %q: outside the user's segment", user, req.path, decoded)
			}
		}
	}
}

// TestRedteamUserInHeaderParams (F10): the bound user id in a structured
// header may not add a parameter ("bob; tenant=victim").
func TestRedteamUserInHeaderParams(t *testing.T) {
	w := newHostileWorld(t, false)
	env := w.env
	env.admin(t, "POST", "/admin/v1/tools", map[string]any{
		"name": "ctx_lookup", "description": "Lookup", "scope": "tenant",
		"parameters": json.RawMessage(`{"type":"object","properties":{"tenant_id":{"type":"string"},"user_id":{"type":"string"},"q":{"type":"string"}}}`),
		"bound":      map[string]string{"tenant_id": tools.BindTenantID, "user_id": tools.BindUserID},
		"http": map[string]any{"method": "POST", "url": w.echo.URL + "/ctx",
			"headers": map[string]string{"Cookie": "tenant={{bound.tenant_id}}; uid={{bound.user_id}}"}},
	}, http.StatusCreated)
	env.admin(t, "PATCH", "/admin/v1/tenants/"+hostileA, map[string]any{"tools": []string{"crm_ticket", "crm_note", "ctx_lookup"}}, http.StatusOK)
	m := w.echo.mark()
	env.chat(t, chatCall{key: w.aKey, user: "bob", content: `/call ctx_lookup {"q":"x"}`})
	if got := w.echo.since(m); len(got) != 1 || got[0].header.Get("Cookie") != "tenant="+hostileA+"; uid=bob" {
		t.Fatalf("user bob: the tool server got %+v, want one request with its cookie", got)
	}
	for _, user := range []string{"bob; tenant=" + hostileB, "bob, tenant=" + hostileB, `bob"; tenant=` + hostileB} {
		m := w.echo.mark()
		env.chat(t, chatCall{key: w.aKey, user: user, content: `/call ctx_lookup {"q":"x"}`})
		rtDenied(t, w, user, tools.ReasonPlaceholder)
		for _, req := range w.echo.since(m) {
			r := &http.Request{Header: http.Header{"Cookie": req.header["Cookie"]}}
			for _, c := range r.Cookies() {
				if c.Name == "tenant" && c.Value != hostileA {
					t.Errorf("user %q: the tool server got Cookie %q: a tenant cookie reads %q", user, req.header.Get("Cookie"), c.Value)
				}
			}
		}
	}
}

// TestRedteamPrototypeKeys (F15): an open tool may not pass __proto__,
// constructor or prototype keys, at any depth, to a tool server that
// merges bodies into objects.
func TestRedteamPrototypeKeys(t *testing.T) {
	w := newHostileWorld(t, false)
	for _, args := range []string{
		`{"customer":"c","__proto__":{"is_admin":true,"tenant_id":"victim"}}`,
		`{"customer":"c","constructor":{"prototype":{"is_admin":true}}}`,
		`{"customer":"c","extra":{"__proto__":{"is_admin":true}}}`,
		`{"customer":"c","extra":[{"\u005f_proto__":{"is_admin":true}}]}`,
	} {
		m := w.echo.mark()
		w.chat(t, w.aKey, "/call crm_note "+args, false)
		rtDenied(t, w, args, tools.ReasonPrototype)
		for _, r := range w.echo.since(m) {
			for _, key := range []string{`"__proto__":`, `"constructor":`, `"prototype":`} {
				if strings.Contains(string(r.body), key) {
					t.Errorf("the tool server got key %s: %s", key, r.body)
				}
			}
		}
	}
}

// TestRedteamBoundKeyNested (F16): a bound name, or a declared top-level
// one, inside a free-form nested object must not reach a tool server that
// merges the nested object into the record, nor pass policy that way.
func TestRedteamBoundKeyNested(t *testing.T) {
	w := newHostileWorld(t, false)
	env := w.env
	env.admin(t, "POST", "/admin/v1/tools", map[string]any{
		"name": "crm_record", "description": "Store a record", "scope": "tenant",
		"parameters": json.RawMessage(`{"type":"object","properties":{"tenant_id":{"type":"string"},"name":{"type":"string"},` +
			`"metadata":{"type":"object","additionalProperties":true}}}`),
		"bound": map[string]string{"tenant_id": tools.BindTenantID},
		"http":  map[string]any{"method": "POST", "url": w.echo.URL + "/record"},
	}, http.StatusCreated)
	env.admin(t, "PATCH", "/admin/v1/tenants/"+hostileA, map[string]any{"tools": []string{"crm_ticket", "crm_note", "crm_record"}}, http.StatusOK)
	m := w.echo.mark()
	w.chat(t, w.aKey, `/call crm_record {"name":"n","metadata":{"colour":"red"}}`, false)
	if got := w.echo.since(m); len(got) != 1 {
		t.Fatalf("free metadata: the tool server got %d requests, want 1", len(got))
	}
	for _, key := range []string{"tenant_id", "TENANT_ID", "tenantId", "tenant-id"} {
		for _, args := range []string{
			`{"name":"n","metadata":{"` + key + `":"` + hostileB + `"}}`,
			`{"name":"n","metadata":{"deep":[{"` + key + `":"` + hostileB + `"}]}}`,
		} {
			m := w.echo.mark()
			w.chat(t, w.aKey, `/call crm_record `+args, false)
			rtDenied(t, w, args, tools.ReasonNested)
			for _, r := range w.echo.since(m) {
				if strings.Contains(string(r.body), hostileB) {
					t.Errorf("nested key %q: the tool server got %s next to the bound tenant_id", key, r.body)
				}
			}
		}
	}
	// The same merge against A's policy (no customer "vip" on crm_note).
	for _, args := range []string{`{"customer":"fine","metadata":{"customer":"vip"}}`, `{"customer":"fine","metadata":{"Customer":"vip"}}`} {
		m = w.echo.mark()
		w.chat(t, w.aKey, `/call crm_note `+args, false)
		rtDenied(t, w, args, tools.ReasonNested)
		for _, r := range w.echo.since(m) {
			if strings.Contains(string(r.body), `"vip"`) {
				t.Errorf("A's policy forbids customer vip on crm_note; the tool server got %s", r.body)
			}
		}
	}
}
