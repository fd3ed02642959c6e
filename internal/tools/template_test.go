package tools

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/secret"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

func testValues() values {
	return values{
		secrets: secretValues(map[tenant.SecretName]string{"token": "s3cr3t-t0ken", "odd": "a b&c=d/e?f#g"}),
		bound: map[string]string{"account": "acct-42", "evil": "../admin?x=1", "dot": "..", "slash": "a/b", "empty": "",
			"email": "bob@example.com", "dots": "...", "back": `..\admin`, "pct": "..%2Fadmin", "semi": "..;", "query": "bob?tenant=b",
			"frag": "bob#x", "ctl": "bob\x01", "cookie": "bob; tenant=b", "comma": "bob, tenant=b", "quote": `bob"`, "eq": "tenant=b"},
	}
}

func TestExpandURL(t *testing.T) {
	for _, tc := range []struct {
		name, tmpl string
		want       string // the URL as sent; "" means an error is expected
	}{
		{"literal", "http://h.example/a/b?x=1", "http://h.example/a/b?x=1"},
		{"bound in path", "http://h.example/accounts/{{bound.account}}/orders", "http://h.example/accounts/acct-42/orders"},
		{"email in path", "http://h.example/u/{{bound.email}}/notes", "http://h.example/u/bob@example.com/notes"},
		// A path value is one opaque segment, whatever a server decodes.
		{"traversal refused", "http://h.example/items/{{bound.evil}}", ""},
		{"slash refused", "http://h.example/items/{{bound.slash}}", ""},
		{"backslash refused", "http://h.example/items/{{bound.back}}", ""},
		{"percent refused", "http://h.example/items/{{bound.pct}}", ""},
		{"tomcat dot parameter refused", "http://h.example/items/{{bound.semi}}", ""},
		{"question mark refused", "http://h.example/items/{{bound.query}}", ""},
		{"hash refused", "http://h.example/items/{{bound.frag}}", ""},
		{"control refused", "http://h.example/items/{{bound.ctl}}", ""},
		{"dots only refused", "http://h.example/items/x{{bound.dots}}", ""},
		{"secret with slash refused in path", "http://h.example/k/{{secret.odd}}", ""},
		{"spaces allowed in braces", "http://h.example/items/{{ bound.account }}", "http://h.example/items/acct-42"},
		{"secret in query", "http://h.example/q?key={{secret.odd}}&a=1", "http://h.example/q?key=a+b%26c%3Dd%2Fe%3Ff%23g&a=1"},
		{"bound in query", "http://h.example/q?id={{bound.evil}}", "http://h.example/q?id=..%2Fadmin%3Fx%3D1"},
		{"fragment dropped", "http://h.example/a#frag", "http://h.example/a"},
		{"no path", "https://h.example", "https://h.example"},
		{"dot segment refused", "http://h.example/items/{{bound.dot}}", ""},
		{"missing secret", "http://h.example/{{secret.nope}}", ""},
		{"missing bound", "http://h.example/{{bound.nope}}", ""},
		{"empty value", "http://h.example/{{bound.empty}}", ""},
		{"unknown source", "http://h.example/{{tenant.id}}", ""},
		{"malformed placeholder", "http://h.example/{{bound.account}", ""},
		{"placeholder in host", "http://{{bound.account}}.example/", ""},
		{"placeholder in port", "http://h.example:{{bound.account}}/", ""},
		{"placeholder in scheme", "{{bound.account}}://h.example/", ""},
		{"userinfo", "http://u:p@h.example/", ""},
		{"not absolute", "/relative/{{bound.account}}", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := testValues().expandURL(tc.tmpl)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("expandURL(%q) = %q, want an error", tc.tmpl, u)
				}
				if !errors.Is(err, errTemplate) {
					t.Errorf("error %v does not wrap errTemplate", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("expandURL(%q): %v", tc.tmpl, err)
			}
			if got := u.String(); got != tc.want {
				t.Errorf("expandURL(%q) = %q, want %q", tc.tmpl, got, tc.want)
			}
		})
	}
}

func TestExpandHeader(t *testing.T) {
	v := testValues()
	v.secrets["crlf"] = secret.New("tok\r\nX-Injected: 1")
	v.secrets["lf"] = secret.New("tok\nen-value")
	v.secrets["nul"] = secret.New("tok\x00en-value")
	v.secrets["b64"] = secret.New("dTpw==")
	v.secrets["semi"] = secret.New("k; tenant=b")
	for _, tc := range []struct {
		name, tmpl string
		want       string
		wantErr    bool
	}{
		{"secret", "Bearer {{secret.token}}", "Bearer s3cr3t-t0ken", false},
		{"bound unescaped", "{{bound.evil}}", "../admin?x=1", false},
		{"literal", "application/json", "application/json", false},
		{"CRLF refused", "Bearer {{secret.crlf}}", "", true},
		{"LF refused", "Bearer {{secret.lf}}", "", true},
		{"NUL refused", "Bearer {{secret.nul}}", "", true},
		{"missing", "Bearer {{secret.nope}}", "", true},
		// Beside other text, a value may not add a header parameter.
		{"bound as a whole value", "{{bound.cookie}}", "bob; tenant=b", false},
		{"bound beside text", "tenant={{bound.account}}; uid={{bound.email}}", "tenant=acct-42; uid=bob@example.com", false},
		{"semicolon refused", "tenant={{bound.account}}; uid={{bound.cookie}}", "", true},
		{"comma refused", "uid={{bound.comma}}", "", true},
		{"quote refused", `uid="{{bound.quote}}"`, "", true},
		{"bound equals refused", "uid={{bound.eq}}", "", true},
		{"secret equals allowed", "Basic {{secret.b64}}", "Basic dTpw==", false},
		{"secret semicolon refused", "k={{secret.semi}}", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := v.expandHeader(tc.tmpl)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("expandHeader(%q) = %q, want an error", tc.tmpl, got)
				}
				for _, s := range v.secrets {
					if strings.Contains(err.Error(), s.Reveal()) {
						t.Errorf("error %q holds a secret value", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("expandHeader(%q): %v", tc.tmpl, err)
			}
			if got != tc.want {
				t.Errorf("expandHeader(%q) = %q, want %q", tc.tmpl, got, tc.want)
			}
		})
	}
}

// TestExpandNoReexpansion checks a value that looks like a placeholder is
// inserted as text, never expanded in turn.
func TestExpandNoReexpansion(t *testing.T) {
	v := values{
		secrets: secretValues(map[tenant.SecretName]string{"token": "s3cr3t-t0ken"}),
		bound:   map[string]string{"x": "{{secret.token}}"},
	}
	got, err := v.expandHeader("{{bound.x}}")
	if err != nil {
		t.Fatal(err)
	}
	if want := "{{secret.token}}"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// secretValues wraps test secrets as the executors receive them.
func secretValues(m map[tenant.SecretName]string) map[tenant.SecretName]secret.Value {
	out := make(map[tenant.SecretName]secret.Value, len(m))
	for name, v := range m {
		out[name] = secret.New(v)
	}
	return out
}

// FuzzExpand fuzzes the two things a caller does not control in tool request
// templating: a placeholder's value (a bound parameter may come from the
// chat's user) and the template (the operator's, but still parsed by us).
// Whatever they hold, an accepted expansion:
//   - keeps the value in its place: the URL goes to the template's scheme
//     and host with no userinfo, the path has the template's segments with
//     the value as exactly one of them, the query has the template's keys
//     with the value as one of their values; a header has the template's
//     parameters and holds no CR, LF or NUL;
//   - never expands a value in turn: the secret appears only where the
//     template names it;
//   - never names a value in an error message.
func FuzzExpand(f *testing.F) {
	for _, s := range []string{"acct-42", "../admin", "a/b", "%2e%2e", "..", "...", "bob; tenant=b", "x\r\nY: 1",
		"{{secret.token}}", "a?b=c#d", `..\x`, "é/ü", "a b&c=d", "x\x00", "tenant=b", "\u2215etc", "..;", "%00"} {
		f.Add(s, "http://h.example/u/{{bound.v}}/n?q={{bound.v}}&k=1")
	}
	for _, tmpl := range []string{"http://h.example:8080/{{secret.token}}", "https://h.example?x={{bound.v}}", "http://h.example/a{{bound.v}}b",
		"http://{{bound.v}}/", "http://h.example@{{bound.v}}/", "http://h.example/{{ bound.v }}#{{bound.v}}", "http://h.example/{{bound.v}", "http://h.example/%{{bound.v}}"} {
		f.Add("acct-42", tmpl)
	}
	const token = "s3cr3t-t0ken"
	f.Fuzz(func(t *testing.T, val, tmpl string) {
		v := values{secrets: secretValues(map[tenant.SecretName]string{"token": token}), bound: map[string]string{"v": val}}
		// An error may quote the operator's template (a bad placeholder),
		// never a value: val counts only where the template does not hold it.
		noValueIn := func(template string, err error) {
			t.Helper()
			if err == nil {
				return
			}
			if len(val) >= 4 && !strings.Contains(template, val) && strings.Contains(err.Error(), val) ||
				!strings.Contains(template, token) && strings.Contains(err.Error(), token) {
				t.Fatalf("error %q names a value", err)
			}
		}

		// A fixed template, the value fuzzed.
		const fixed = "http://h.example/u/{{bound.v}}/n?q={{bound.v}}&k=1"
		u, err := v.expandURL(fixed)
		noValueIn(fixed, err)
		if err == nil {
			if u.Scheme != "http" || u.Host != "h.example" || u.User != nil || u.Fragment != "" {
				t.Fatalf("value %q: url %q left its origin", val, u)
			}
			segs := strings.Split(u.EscapedPath(), "/")
			if len(segs) != 4 || segs[0] != "" || segs[1] != "u" || segs[3] != "n" {
				t.Fatalf("value %q: path %q does not have the template's segments", val, u.EscapedPath())
			}
			if plain, err := url.PathUnescape(segs[2]); err != nil || plain != val {
				t.Fatalf("value %q: path segment %q reads back as %q, %v", val, segs[2], plain, err)
			}
			q, err := url.ParseQuery(u.RawQuery)
			if err != nil || len(q) != 2 || len(q["q"]) != 1 || q.Get("q") != val || q.Get("k") != "1" {
				t.Fatalf("value %q: query %q reads back as %v, %v", val, u.RawQuery, q, err)
			}
		}
		for _, h := range []string{"tenant={{bound.v}}; uid=x", "{{bound.v}}", "Bearer {{secret.token}}, {{bound.v}}"} {
			out, err := v.expandHeader(h)
			noValueIn(h, err)
			if err != nil {
				continue
			}
			if strings.ContainsAny(out, "\r\n\x00") {
				t.Fatalf("value %q: header %q holds CR, LF or NUL", val, out)
			}
			if want := strings.ReplaceAll(strings.ReplaceAll(h, "{{secret.token}}", token), "{{bound.v}}", val); out != want {
				t.Fatalf("value %q: header %q, want %q", val, out, want)
			}
			if h != "{{bound.v}}" && strings.Count(out, ";")+strings.Count(out, ",") != strings.Count(h, ";")+strings.Count(h, ",") {
				t.Fatalf("value %q: header %q has parameters the template %q does not", val, out, h)
			}
		}

		// The template fuzzed, the value too.
		u, err = v.expandURL(tmpl)
		noValueIn(tmpl, err)
		if err == nil {
			if u.User != nil || u.Scheme != "http" && u.Scheme != "https" {
				t.Fatalf("template %q: url %q", tmpl, u)
			}
			origin, _, _ := strings.Cut(tmpl, "://")
			rest := tmpl[len(origin)+3:]
			if i := strings.IndexAny(rest, "/?#"); i >= 0 {
				rest = rest[:i]
			}
			if !strings.EqualFold(u.Host, rest) {
				t.Fatalf("template %q, value %q: host %q, want %q", tmpl, val, u.Host, rest)
			}
			if strings.Contains(u.String(), url.PathEscape(token)) && !strings.Contains(tmpl, "secret.token") && !strings.Contains(tmpl, token) {
				t.Fatalf("template %q, value %q: url %q holds the secret", tmpl, val, u)
			}
		}
		if out, err := v.expandHeader(tmpl); err == nil {
			if strings.ContainsAny(out, "\r\n\x00") {
				t.Fatalf("template %q: header %q holds CR, LF or NUL", tmpl, out)
			}
			if strings.Contains(out, token) && !strings.Contains(tmpl, "secret.token") && !strings.Contains(tmpl, token) && !strings.Contains(val, token) {
				t.Fatalf("template %q, value %q: header %q holds the secret", tmpl, val, out)
			}
		} else {
			noValueIn(tmpl, err)
		}
	})
}
