package tools

import (
	"errors"
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
