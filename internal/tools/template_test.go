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
		bound:   map[string]string{"account": "acct-42", "evil": "../admin?x=1", "dot": "..", "slash": "a/b", "empty": ""},
	}
}

func TestExpandURL(t *testing.T) {
	for _, tc := range []struct {
		name, tmpl string
		want       string // the URL as sent; "" means an error is expected
	}{
		{"literal", "http://h.example/a/b?x=1", "http://h.example/a/b?x=1"},
		{"bound in path", "http://h.example/accounts/{{bound.account}}/orders", "http://h.example/accounts/acct-42/orders"},
		{"traversal stays one segment", "http://h.example/items/{{bound.evil}}", "http://h.example/items/..%2Fadmin%3Fx=1"},
		{"slash escaped", "http://h.example/items/{{bound.slash}}", "http://h.example/items/a%2Fb"},
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
