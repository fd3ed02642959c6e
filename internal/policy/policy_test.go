package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/label"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

func newEngine(t testing.TB) *Engine {
	t.Helper()
	e, err := NewEngine()
	if err != nil {
		t.Fatalf("NewEngine: %v", err)
	}
	return e
}

// profiles every test tenant gets.
var testProfiles = map[string][]string{
	"default": {"crm_lookup", "refund", "admin_dump", "foreign_tool", "own_tool", "odd_scope", "weather"},
	"support": {"kb_search"},
}

const refundLimit = `forbid (principal, action == Action::"call_tool", resource == Tool::"refund") when { context.amount >= 500 };`

func TestAuthorize(t *testing.T) {
	e := newEngine(t)
	tests := []struct {
		name        string
		tenant      tenant.ID
		profile     string
		user        tenant.UserID
		tool, scope string
		owner       tenant.ID
		args        string // JSON object; "" means none
		source      string // the tenant's uploaded policy
		wantAllow   bool
		wantReasons []string
		wantErr     string // substring of one of Errors; "" means no errors
	}{
		{name: "tool in profile", tenant: "acme", profile: "default", tool: "crm_lookup", scope: ScopeTenant,
			wantAllow: true, wantReasons: []string{"profile/default/crm_lookup"}},
		{name: "global tool in profile", tenant: "acme", profile: "default", tool: "weather", scope: ScopeGlobal,
			wantAllow: true, wantReasons: []string{"profile/default/weather"}},
		{name: "own client tool", tenant: "acme", profile: "support", tool: "client/send_email", scope: ScopeClient, owner: "acme",
			wantAllow: true, wantReasons: []string{"profile/support/client/*"}},
		{name: "client tool of another tenant", tenant: "acme", profile: "default", tool: "client/send_email", scope: ScopeClient, owner: "globex",
			wantReasons: []string{"global/forbid-other-tenants-tools"}},
		{name: "client tool without owner", tenant: "acme", profile: "default", tool: "client/send_email", scope: ScopeClient},
		{name: "client tool forbidden by the tenant", tenant: "acme", profile: "default", tool: "client/send_email", scope: ScopeClient, owner: "acme",
			source: `forbid (principal, action, resource == Tool::"client/send_email");`, wantReasons: []string{"tenant/0"}},
		{name: "every client tool forbidden by the tenant", tenant: "acme", profile: "default", tool: "client/x", scope: ScopeClient, owner: "acme",
			source: `forbid (principal, action, resource) when { resource.scope == "client" };`, wantReasons: []string{"tenant/0"}},
		{name: "tool not in any profile", tenant: "acme", profile: "default", tool: "delete_everything", scope: ScopeTenant},
		{name: "tool in another profile", tenant: "acme", profile: "default", tool: "kb_search", scope: ScopeTenant},
		{name: "profile without the tool", tenant: "acme", profile: "support", tool: "crm_lookup", scope: ScopeTenant},
		{name: "unknown profile", tenant: "acme", profile: "nope", tool: "crm_lookup", scope: ScopeTenant},
		{name: "cross_tenant tool in profile", tenant: "acme", profile: "default", tool: "admin_dump", scope: ScopeCrossTenant,
			wantReasons: []string{"global/forbid-cross-tenant"}},
		{name: "cross_tenant tool owned by own tenant", tenant: "acme", profile: "default", tool: "admin_dump", scope: ScopeCrossTenant, owner: "acme",
			wantReasons: []string{"global/forbid-cross-tenant"}},
		{name: "tool owned by another tenant", tenant: "acme", profile: "default", tool: "foreign_tool", scope: ScopeTenant, owner: "globex",
			wantReasons: []string{"global/forbid-other-tenants-tools"}},
		{name: "own tenant-owned tool", tenant: "acme", profile: "default", tool: "own_tool", scope: ScopeTenant, owner: "acme",
			wantAllow: true, wantReasons: []string{"profile/default/own_tool"}},
		{name: "unknown scope", tenant: "acme", profile: "default", tool: "odd_scope", scope: "everything",
			wantReasons: []string{"global/forbid-unknown-scope"}},
		{name: "empty scope", tenant: "acme", profile: "default", tool: "odd_scope", scope: "",
			wantReasons: []string{"global/forbid-unknown-scope"}},
		{name: "refund below limit", tenant: "acme", profile: "default", tool: "refund", scope: ScopeTenant,
			args: `{"amount": 499}`, source: refundLimit,
			wantAllow: true, wantReasons: []string{"profile/default/refund"}},
		{name: "refund at limit", tenant: "acme", profile: "default", tool: "refund", scope: ScopeTenant,
			args: `{"amount": 500}`, source: refundLimit, wantReasons: []string{"tenant/0"}},
		{name: "refund at limit, float form", tenant: "acme", profile: "default", tool: "refund", scope: ScopeTenant,
			args: `{"amount": 500.0}`, source: refundLimit, wantReasons: []string{"tenant/0"}},
		{name: "refund limit named by @id", tenant: "acme", profile: "default", tool: "refund", scope: ScopeTenant,
			args: `{"amount": 10000}`, source: "@id(\"refund-limit\")\n" + refundLimit, wantReasons: []string{"tenant/refund-limit"}},
		{name: "refund limit does not touch other tools", tenant: "acme", profile: "default", tool: "crm_lookup", scope: ScopeTenant,
			args: `{"amount": 10000}`, source: refundLimit, wantAllow: true, wantReasons: []string{"profile/default/crm_lookup"}},
		{name: "refund without amount errors and denies", tenant: "acme", profile: "default", tool: "refund", scope: ScopeTenant,
			args: `{}`, source: refundLimit, wantErr: "tenant/0:"},
		{name: "fractional amount is a Decimal, compared with a Long it errors", tenant: "acme", profile: "default", tool: "refund", scope: ScopeTenant,
			args: `{"amount": 499.5}`, source: refundLimit, wantErr: "tenant/0:"},
		{name: "string amount errors", tenant: "acme", profile: "default", tool: "refund", scope: ScopeTenant,
			args: `{"amount": "1"}`, source: refundLimit, wantErr: "tenant/0:"},
		{name: "unrepresentable number compared denies", tenant: "acme", profile: "default", tool: "refund", scope: ScopeTenant,
			args: `{"amount": 1e300}`, source: refundLimit, wantErr: "more than 4 decimal places or beyond Cedar's range"},
		{name: "number with 5 places compared denies, never rounded", tenant: "acme", profile: "default", tool: "refund", scope: ScopeTenant,
			args: `{"amount": 1000.00004}`, source: `forbid (principal, action, resource) when { context.amount.greaterThan(decimal("1000.0")) };`,
			wantErr: "tenant/0: type error"},
		{name: "unrepresentable nested number not read passes", tenant: "acme", profile: "default", tool: "crm_lookup", scope: ScopeTenant,
			args: `{"a": {"b": [1, 2e20, 0.00001]}}`, wantAllow: true, wantReasons: []string{"profile/default/crm_lookup"}},
		{name: "forbid wins over permit", tenant: "acme", profile: "default", tool: "crm_lookup", scope: ScopeTenant,
			source: `forbid (principal, action, resource);`, wantReasons: []string{"tenant/0"}},
		{name: "forbid on end user", tenant: "acme", profile: "default", user: "mallory", tool: "crm_lookup", scope: ScopeTenant,
			source: `forbid (principal, action, resource) when { principal.user == "mallory" };`, wantReasons: []string{"tenant/0"}},
		{name: "forbid on other end user", tenant: "acme", profile: "default", user: "alice", tool: "crm_lookup", scope: ScopeTenant,
			source:    `forbid (principal, action, resource) when { principal.user == "mallory" };`,
			wantAllow: true, wantReasons: []string{"profile/default/crm_lookup"}},
		{name: "forbid on principal entity", tenant: "acme", profile: "support", tool: "kb_search", scope: ScopeTenant,
			source: `forbid (principal == Agent::"acme/support", action, resource);`, wantReasons: []string{"tenant/0"}},
		{name: "several forbids all named", tenant: "acme", profile: "default", tool: "admin_dump", scope: ScopeCrossTenant, owner: "globex",
			source:      `@id("b") forbid (principal, action, resource); @id("a") forbid (principal, action, resource);`,
			wantReasons: []string{"global/forbid-cross-tenant", "global/forbid-other-tenants-tools", "tenant/a", "tenant/b"}},
		{name: "string set and nested record conditions", tenant: "acme", profile: "default", tool: "crm_lookup", scope: ScopeTenant,
			args:        `{"tags": ["vip", "eu"], "customer": {"address": {"country": "DE"}}}`,
			source:      `forbid (principal, action, resource) when { context.tags.contains("eu") && context.customer.address.country == "DE" };`,
			wantReasons: []string{"tenant/0"}},
		{name: "has guard with null argument", tenant: "acme", profile: "default", tool: "crm_lookup", scope: ScopeTenant,
			args:      `{"customer": null}`,
			source:    `forbid (principal, action, resource) when { context has customer };`,
			wantAllow: true, wantReasons: []string{"profile/default/crm_lookup"}},
		{name: "like on string argument", tenant: "acme", profile: "default", tool: "crm_lookup", scope: ScopeTenant,
			args:        `{"customer": "internal-7"}`,
			source:      `forbid (principal, action, resource) when { context.customer like "internal-*" };`,
			wantReasons: []string{"tenant/0"}},
		{name: "decimal argument", tenant: "acme", profile: "default", tool: "refund", scope: ScopeTenant,
			args:        `{"rate": 0.25}`,
			source:      `forbid (principal, action, resource) when { context.rate.greaterThan(decimal("0.2")) };`,
			wantReasons: []string{"tenant/0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := e.Compile(tt.tenant, testProfiles, tt.source)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			var args map[string]any
			if tt.args != "" {
				if err := json.Unmarshal([]byte(tt.args), &args); err != nil {
					t.Fatalf("args: %v", err)
				}
			}
			got := s.Authorize(
				Principal{Tenant: tt.tenant, Profile: tt.profile, User: tt.user},
				Resource{Name: tt.tool, Scope: tt.scope, Owner: tt.owner},
				args)
			if got.Allow != tt.wantAllow {
				t.Errorf("Allow = %v, want %v (decision %+v)", got.Allow, tt.wantAllow, got)
			}
			if tt.wantErr == "" {
				if !reflect.DeepEqual(got.Reasons, tt.wantReasons) {
					t.Errorf("Reasons = %q, want %q", got.Reasons, tt.wantReasons)
				}
				if len(got.Errors) != 0 {
					t.Errorf("Errors = %q, want none", got.Errors)
				}
				return
			}
			if got.Allow || !containsSubstring(got.Errors, tt.wantErr) {
				t.Errorf("decision = %+v, want denial with an error containing %q", got, tt.wantErr)
			}
		})
	}
}

func containsSubstring(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func TestListable(t *testing.T) {
	e := newEngine(t)
	source := refundLimit + `
		@id("needs-reason") forbid (principal, action, resource == Tool::"crm_lookup") unless { context.reason != "" };
		@id("no-admin") forbid (principal, action, resource == Tool::"weather") unless { context has approved };`
	s, err := e.Compile("acme", testProfiles, source)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		tool, scope string
		owner       tenant.ID
		want        bool
		wantReasons []string
	}{
		{tool: "refund", scope: ScopeTenant, want: true, wantReasons: []string{"profile/default/refund"}},
		{tool: "crm_lookup", scope: ScopeTenant, want: true, wantReasons: []string{"profile/default/crm_lookup"}},
		{tool: "weather", scope: ScopeGlobal, want: false, wantReasons: []string{"tenant/no-admin"}},
		{tool: "kb_search", scope: ScopeTenant, want: false},
		{tool: "admin_dump", scope: ScopeCrossTenant, want: false, wantReasons: []string{"global/forbid-cross-tenant"}},
		{tool: "foreign_tool", scope: ScopeTenant, owner: "globex", want: false, wantReasons: []string{"global/forbid-other-tenants-tools"}},
	}
	p := Principal{Tenant: "acme", Profile: "default"}
	for _, tt := range tests {
		t.Run(tt.tool, func(t *testing.T) {
			r := Resource{Name: tt.tool, Scope: tt.scope, Owner: tt.owner}
			got, d := s.Listable(p, r)
			if got != tt.want || got != d.Allow {
				t.Errorf("Listable = %v (%+v), want %v", got, d, tt.want)
			}
			if !reflect.DeepEqual(d.Reasons, tt.wantReasons) || len(d.Errors) != 0 {
				t.Errorf("Listable decision = %+v, want reasons %q and no errors", d, tt.wantReasons)
			}
		})
	}
	// The same missing attributes deny at call time.
	for _, tool := range []string{"refund", "crm_lookup"} {
		d := s.Authorize(p, Resource{Name: tool, Scope: ScopeTenant}, nil)
		if d.Allow || len(d.Errors) == 0 {
			t.Errorf("Authorize(%s, no args) = %+v, want denial with errors", tool, d)
		}
	}
}

func TestCompileRejects(t *testing.T) {
	e := newEngine(t)
	many := strings.Repeat("forbid (principal, action, resource);\n", MaxPolicies+1)
	tests := []struct {
		name    string
		id      tenant.ID
		prof    map[string][]string
		source  string
		wantSub []string
	}{
		{name: "permit", source: `permit(principal, action, resource);`, wantSub: []string{"line 1, column 1", "only forbid"}},
		{name: "permit after forbid", source: "forbid (principal, action, resource);\n\n  @id(\"x\")\n  permit (principal, action, resource);",
			wantSub: []string{"line 3, column 3", "only forbid"}},
		{name: "syntax error", source: "forbid (principal, action, resource)\nwhen { context.amount >= };",
			wantSub: []string{"line 2, column"}},
		{name: "unterminated string", source: "forbid (principal, action, resource)\nwhen { context.a == \"x };",
			wantSub: []string{"line 2, column"}},
		{name: "template slot", source: `forbid (principal == ?principal, action, resource);`, wantSub: []string{"line 1, column"}},
		{name: "too large", source: "// " + strings.Repeat("x", MaxSourceBytes), wantSub: []string{"limit is 65536"}},
		{name: "too many", source: many, wantSub: []string{"limit is 1000"}},
		{name: "duplicate id", source: "@id(\"a\") forbid (principal, action, resource);\n@id(\"a\") forbid (principal, action, resource);",
			wantSub: []string{"line 2, column 1", `duplicate policy id "tenant/a"`}},
		{name: "empty id", source: `@id("") forbid (principal, action, resource);`, wantSub: []string{"@id"}},
		{name: "bad tenant", id: "Not A Tenant", wantSub: []string{"tenant id"}},
		{name: "slash in profile", prof: map[string][]string{"a/b": {"t"}}, wantSub: []string{`"a/b"`}},
		{name: "empty profile", prof: map[string][]string{"": {"t"}}, wantSub: []string{"profile name"}},
		{name: "empty tool", prof: map[string][]string{"default": {""}}, wantSub: []string{"empty tool"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := tt.id
			if id == "" {
				id = "acme"
			}
			_, err := e.Compile(id, tt.prof, tt.source)
			if err == nil {
				t.Fatal("Compile succeeded, want error")
			}
			if !errors.Is(err, kind.Invalid) {
				t.Errorf("error %v does not wrap kind.Invalid", err)
			}
			for _, sub := range tt.wantSub {
				if !strings.Contains(err.Error(), sub) {
					t.Errorf("error %q does not contain %q", err, sub)
				}
			}
			if tt.prof == nil && tt.id == "" {
				if verr := e.Validate(id, tt.source); verr == nil || verr.Error() != err.Error() {
					t.Errorf("Validate = %v, want %v", verr, err)
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	e := newEngine(t)
	for _, source := range []string{
		"",
		"  \n// nothing here\n",
		refundLimit,
		`forbid (principal, action, resource) when { context.unknown.deeply.nested == 1 };`,
		`forbid (principal, action, resource) when { decimal("1.5").lessThan(context.x) || ip("10.0.0.1").isLoopback() };`,
		strings.Repeat("forbid (principal, action, resource);\n", MaxPolicies),
	} {
		if err := e.Validate("acme", source); err != nil {
			t.Errorf("Validate(%.60q) = %v, want nil", source, err)
		}
	}
	if err := e.Validate("", refundLimit); !errors.Is(err, kind.Invalid) {
		t.Errorf("Validate with empty tenant = %v, want kind.Invalid", err)
	}
}

// TestTenantIsolation checks that one tenant's upload cannot affect another
// tenant and that a set refuses principals of other tenants.
func TestTenantIsolation(t *testing.T) {
	e := newEngine(t)
	acme, err := e.For("acme", testProfiles, `forbid (principal, action, resource);`)
	if err != nil {
		t.Fatal(err)
	}
	globex, err := e.For("globex", testProfiles, "")
	if err != nil {
		t.Fatal(err)
	}
	r := Resource{Name: "crm_lookup", Scope: ScopeTenant}
	if d := acme.Authorize(Principal{Tenant: "acme", Profile: "default"}, r, nil); d.Allow {
		t.Errorf("acme with forbid-all allowed: %+v", d)
	}
	if d := globex.Authorize(Principal{Tenant: "globex", Profile: "default"}, r, nil); !d.Allow {
		t.Errorf("globex denied by acme's policy: %+v", d)
	}
	if len(globex.own) != 0 {
		t.Errorf("globex set holds tenant policies %v", globex.own)
	}
	// acme's principal presented to globex's set is refused outright, even
	// for a tool globex's own profile grants.
	d := globex.Authorize(Principal{Tenant: "acme", Profile: "default"}, r, nil)
	if d.Allow || !containsSubstring(d.Errors, "does not match") {
		t.Errorf("foreign principal: %+v, want denial naming the mismatch", d)
	}
	if ok, _ := globex.Listable(Principal{Tenant: "acme", Profile: "default"}, r); ok {
		t.Error("foreign principal listable")
	}
	// A generated permit names its own tenant's agent only.
	if d := globex.Authorize(Principal{Tenant: "globex", Profile: "default"}, Resource{Name: "crm_lookup", Scope: ScopeTenant, Owner: "acme"}, nil); d.Allow {
		t.Errorf("globex may call acme-owned tool: %+v", d)
	}
	var nilSet *Set
	if d := nilSet.Authorize(Principal{Tenant: "acme", Profile: "default"}, r, nil); d.Allow || len(d.Errors) == 0 {
		t.Errorf("nil set: %+v, want denial with error", d)
	}
}

// TestArgs feeds every JSON type through Authorize; none may panic, and the
// values must reach Cedar with the documented types.
func TestArgs(t *testing.T) {
	e := newEngine(t)
	source := `
@id("str") forbid (principal, action, resource) when { context has s && context.s == "x" };
@id("bool") forbid (principal, action, resource) when { context has b && context.b == true };
@id("long") forbid (principal, action, resource) when { context has n && context.n == -9007199254740992 };
@id("big") forbid (principal, action, resource) when { context has big && context.big == 1000000000000000000 };
@id("dec") forbid (principal, action, resource) when { context has d && context.d == decimal("-1.2345") };
@id("gt") forbid (principal, action, resource) when { context has g && context.g > 1000 };
@id("hgt") forbid (principal, action, resource) when { context has h && context.h.greaterThan(decimal("1000.0")) };
@id("set") forbid (principal, action, resource) when { context has l && context.l.containsAll([1, "two", [3], {"four": 4}]) };
@id("rec") forbid (principal, action, resource) when { context has r && context.r == {"a": {"b": [true]}} };
`
	s, err := e.Compile("acme", testProfiles, source)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args        string
		wantReasons []string // nil with wantErr false means allowed
		wantErr     bool
	}{
		{args: `{}`},
		{args: `{"s": "x"}`, wantReasons: []string{"tenant/str"}},
		{args: `{"s": "y"}`},
		{args: `{"b": true}`, wantReasons: []string{"tenant/bool"}},
		{args: `{"n": -9007199254740992}`, wantReasons: []string{"tenant/long"}},
		{args: `{"n": -9007199254740991}`},
		{args: `{"big": 1e18}`, wantReasons: []string{"tenant/big"}},
		{args: `{"d": -1.2345}`, wantReasons: []string{"tenant/dec"}},
		{args: `{"d": -1.23450}`, wantReasons: []string{"tenant/dec"}},
		{args: `{"d": -1.23456}`},                  // 5 places: never rounded to -1.2345, and equal to no decimal
		{args: `{"g": 1000.00004}`, wantErr: true}, // never read as 1000.0: the comparison errors
		{args: `{"h": 1000.5}`, wantReasons: []string{"tenant/hgt"}},
		{args: `{"h": 999.9999}`},
		{args: `{"h": 1000.00004}`, wantErr: true},         // never read as 1000.0
		{args: `{"g": 1e19}`, wantErr: true},               // beyond Long and Decimal range
		{args: `{"s": [1000.00004]}`},                      // in a set: nothing compares it
		{args: `{"d": 0.1}`},                               // the digits sent, 0.1, not the float's binary value
		{args: `{"d": 922337203685477.5}`},                 // within Decimal range, exact
		{args: `{"g": -922337203685477.6}`, wantErr: true}, // beyond Decimal range
		{args: `{"l": [1, "two", [3], {"four": 4}, null, 1]}`, wantReasons: []string{"tenant/set"}},
		{args: `{"r": {"a": {"b": [true, true]}, "gone": null}}`, wantReasons: []string{"tenant/rec"}},
		{args: `{"s": null, "b": null}`},
		{args: `{"g": 9223372036854775807}`, wantErr: true},  // parses to 2^63 as float64: out of int64 range
		{args: `{"g": -9223372036854775808}`, wantErr: true}, // sent as -9223372036854776000: out of int64 range
		{args: `{"x": -9223372036854774784}`},                // the next float64 towards zero: within int64
		{args: `{"g": 1000000000000000.5}`, wantErr: true},   // beyond Decimal range
		{args: `{"x": 92233720368547.5}`},
		{args: `{"g": 1e-300}`, wantErr: true}, // not 0: never rounded
		{args: `{"x": 1e-300}`},                // not read: passes
		{args: `{"x": -0}`},
		{args: `{"": "", "\u0000": "\ud800", "k": "\u00e9"}`},
		{args: `{"x": ` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + `}`},
		{args: `{"x": ` + strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1) + `}`, wantErr: true},
		{args: `{"x": ` + strings.Repeat(`{"a":`, maxDepth+1) + "1" + strings.Repeat("}", maxDepth+1) + `}`, wantErr: true},
	}
	p := Principal{Tenant: "acme", Profile: "default"}
	r := Resource{Name: "crm_lookup", Scope: ScopeTenant}
	for _, tt := range tests {
		t.Run(tt.args[:min(len(tt.args), 40)], func(t *testing.T) {
			var args map[string]any
			if err := json.Unmarshal([]byte(tt.args), &args); err != nil {
				t.Fatal(err)
			}
			d := s.Authorize(p, r, args)
			if tt.wantErr {
				if d.Allow || len(d.Errors) == 0 {
					t.Errorf("decision = %+v, want denial with errors", d)
				}
				return
			}
			want := Decision{Allow: tt.wantReasons == nil, Reasons: tt.wantReasons}
			if want.Allow {
				want.Reasons = []string{"profile/default/crm_lookup"}
			}
			if !reflect.DeepEqual(d, want) {
				t.Errorf("decision = %+v, want %+v", d, want)
			}
		})
	}

	// Go values encoding/json never produces must deny, not panic.
	for _, v := range []any{math.NaN(), math.Inf(1), math.Inf(-1), struct{}{}, []string{"x"}, map[string]string{}, json.Number("1e999"), json.Number("nope")} {
		if d := s.Authorize(p, r, map[string]any{"x": v}); d.Allow || len(d.Errors) == 0 {
			t.Errorf("argument %#v: decision %+v, want denial with errors", v, d)
		}
	}
	for _, v := range []any{json.Number("12"), json.Number("1.5"), 7, int64(-7)} {
		if d := s.Authorize(p, r, map[string]any{"x": v}); !d.Allow {
			t.Errorf("argument %#v: decision %+v, want allow", v, d)
		}
	}
}

func FuzzAuthorize(f *testing.F) {
	for _, seed := range []string{
		`{}`, `{"amount": 499}`, `{"amount": 500}`, `{"amount": 1e400}`, `{"amount": -0.00001}`,
		`{"a": [1, [2, [3, {"b": null}]]], "s": "x", "t": true}`, `{"amount": "500"}`,
	} {
		f.Add(seed)
	}
	e := newEngine(f)
	s, err := e.Compile("acme", testProfiles, refundLimit+`
		forbid (principal, action, resource) when { context has a && context.a.contains(1) };
		forbid (principal, action, resource) when { context.s like "*x*" };`)
	if err != nil {
		f.Fatal(err)
	}
	p := Principal{Tenant: "acme", Profile: "default"}
	f.Fuzz(func(t *testing.T, in string) {
		var args map[string]any
		if json.Unmarshal([]byte(in), &args) != nil {
			return
		}
		for _, r := range []Resource{
			{Name: "refund", Scope: ScopeTenant},
			{Name: "admin_dump", Scope: ScopeCrossTenant},
			{Name: "foreign_tool", Scope: ScopeTenant, Owner: "globex"},
		} {
			d := s.Authorize(p, r, args)
			if d.Allow && len(d.Errors) != 0 {
				t.Fatalf("allowed with errors: %+v", d)
			}
			if d.Allow && r.Name != "refund" {
				t.Fatalf("%s allowed: %+v", r.Name, d)
			}
		}
	})
}

func TestForCache(t *testing.T) {
	e := newEngine(t)
	a1, err := e.For("acme", testProfiles, refundLimit)
	if err != nil {
		t.Fatal(err)
	}
	// Same inputs, different map and slice order: a hit.
	reordered := map[string][]string{"support": {"kb_search"}, "default": {"weather", "refund", "own_tool", "odd_scope", "foreign_tool", "crm_lookup", "admin_dump", "refund"}}
	a2, err := e.For("acme", reordered, refundLimit)
	if err != nil {
		t.Fatal(err)
	}
	if a1 != a2 {
		t.Error("For compiled equal inputs twice")
	}
	for _, other := range []struct {
		id       tenant.ID
		profiles map[string][]string
		source   string
	}{
		{"globex", testProfiles, refundLimit},
		{"acme", testProfiles, ""},
		{"acme", map[string][]string{"default": {"a", "b"}}, refundLimit},
		{"acme", map[string][]string{"default": {"a"}, "b": nil}, refundLimit},
		{"acme", map[string][]string{"default": {"ab"}}, refundLimit},
	} {
		s, err := e.For(other.id, other.profiles, other.source)
		if err != nil {
			t.Fatal(err)
		}
		if s == a1 {
			t.Errorf("For(%s, %v, %.20q) returned the cached set of different inputs", other.id, other.profiles, other.source)
		}
	}
	if _, err := e.For("acme", nil, "permit(principal, action, resource);"); !errors.Is(err, kind.Invalid) {
		t.Errorf("For with a permit = %v, want kind.Invalid", err)
	}

	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 200 {
				id := tenant.ID(fmt.Sprintf("t%d", (i+j)%40))
				s, err := e.For(id, testProfiles, refundLimit)
				if err != nil {
					t.Error(err)
					return
				}
				if d := s.Authorize(Principal{Tenant: id, Profile: "default"}, Resource{Name: "refund", Scope: ScopeTenant}, map[string]any{"amount": 1.0}); !d.Allow {
					t.Errorf("decision %+v", d)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestCacheBounds(t *testing.T) {
	c := newCache(3, 100)
	key := func(i int) (k [32]byte) { k[0] = byte(i); return k }
	for i := range 5 {
		c.add(key(i), 10, &Set{tenant: tenant.ID(fmt.Sprint(i))})
		if i == 2 {
			c.get(key(0)) // 0 becomes most recently used; 1 is evicted next
		}
	}
	for i, want := range []bool{true, false, false, true, true} {
		if _, ok := c.get(key(i)); ok != want {
			t.Errorf("entry %d cached = %v, want %v", i, ok, want)
		}
	}
	c.add(key(9), 95, &Set{})
	if c.order.Len() != 1 || c.bytes != 95 {
		t.Errorf("after a large entry: %d entries, %d bytes; want 1 entry, 95 bytes", c.order.Len(), c.bytes)
	}
}

// benchSource returns n tenant forbids of mixed shapes, conditioned on the
// context, none of which forbids benchArgs on tool "tool_0".
func benchSource(n int) string {
	var b strings.Builder
	for i := range n {
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "forbid (principal, action == Action::\"call_tool\", resource == Tool::\"tool_%d\") when { context.amount >= %d };\n", i%10, 500+i)
		case 1:
			fmt.Fprintf(&b, "forbid (principal, action, resource) when { context has region && context.region == \"eu-%d\" };\n", i)
		case 2:
			fmt.Fprintf(&b, "forbid (principal, action, resource == Tool::\"tool_%d\") unless { context.customer like \"cust-*\" };\n", i%10)
		case 3:
			fmt.Fprintf(&b, "@id(\"user-%d\") forbid (principal, action, resource) when { principal.user == \"blocked-%d\" || (context has tags && context.tags.contains(\"t%d\")) };\n", i, i, i)
		}
	}
	return b.String()
}

func benchProfiles() map[string][]string {
	profiles := map[string][]string{}
	for p := range 10 {
		for t := range 10 {
			name := fmt.Sprintf("p%d", p)
			profiles[name] = append(profiles[name], fmt.Sprintf("tool_%d", t))
		}
	}
	return profiles
}

var benchArgs = map[string]any{"amount": 120.0, "region": "us-1", "customer": "cust-42", "tags": []any{"a", "b"}, "note": map[string]any{"x": true}}

func BenchmarkAuthorize(b *testing.B) {
	e := newEngine(b)
	s, err := e.Compile("acme", benchProfiles(), benchSource(100))
	if err != nil {
		b.Fatal(err)
	}
	p := Principal{Tenant: "acme", Profile: "p3", User: "alice"}
	r := Resource{Name: "tool_0", Scope: ScopeTenant, Owner: "acme"}
	if d := s.Authorize(p, r, benchArgs); !d.Allow {
		b.Fatalf("decision %+v, want allow", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		s.Authorize(p, r, benchArgs)
	}
}

func BenchmarkFor(b *testing.B) {
	e := newEngine(b)
	profiles, source := benchProfiles(), benchSource(100)
	if _, err := e.For("acme", profiles, source); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.For("acme", profiles, source); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzPolicyUpload fuzzes the Cedar text a tenant uploads. Whatever it
// holds, Compile and Validate never panic and refuse only as invalid input;
// and an accepted upload only ever narrows: over a grid of principals,
// tools and arguments, every call it allows the profile alone allows too,
// with the profile's permit as the reason; cross-tenant tools, another
// tenant's tools, tools the profile does not name and another tenant's
// principal are never allowed.
func FuzzPolicyUpload(f *testing.F) {
	for _, s := range []string{
		"", refundLimit, `permit (principal, action, resource);`,
		`@id("x") forbid (principal, action, resource) unless { context.amount < 10 };`,
		`forbid (principal, action, resource) when { false };`, `forbid (principal, action, resource) unless { true };`,
		`@id("0") forbid (principal, action, resource == Tool::"admin_dump") when { false }; @id("0") forbid (principal, action, resource);`,
		`forbid (principal == Agent::"globex/default", action, resource);`,
		`forbid (principal, action, resource) when { resource.scope == "cross_tenant" && context has x };`,
		`@id("global/0") forbid (principal, action, resource) when { principal.tenant == "acme" };`,
		`forbid (principal, action in [Action::"call_tool"], resource is Tool) when { context.s like "*" };`,
		`permit (principal, action, resource) when { resource.owner == "globex" };`,
		`forbid (principal, action, resource) when { context.n.lessThan(decimal("1.5")) };`,
	} {
		f.Add(s)
	}
	e := newEngine(f)
	base, err := e.Compile("acme", testProfiles, "")
	if err != nil {
		f.Fatal(err)
	}
	principals := []Principal{{Tenant: "acme", Profile: "default", User: "u1"}, {Tenant: "acme", Profile: "support"}, {Tenant: "globex", Profile: "default"}}
	resources := []Resource{
		{Name: "refund", Scope: ScopeTenant}, {Name: "crm_lookup", Scope: ScopeTenant}, {Name: "weather", Scope: ScopeGlobal},
		{Name: "kb_search", Scope: ScopeTenant}, {Name: "admin_dump", Scope: ScopeCrossTenant},
		{Name: "foreign_tool", Scope: ScopeTenant, Owner: "globex"}, {Name: "unlisted", Scope: ScopeTenant},
		{Name: "odd_scope", Scope: "weird"}, {Name: "client/x", Scope: ScopeClient, Owner: "acme"}, {Name: "client/y", Scope: ScopeClient, Owner: "globex"},
	}
	args := []map[string]any{nil, {"amount": 499.0}, {"amount": 500.0}, {"s": "x", "n": 1.0, "x": true}}
	f.Fuzz(func(t *testing.T, source string) {
		set, err := e.Compile("acme", testProfiles, source)
		if verr := e.Validate("acme", source); verr != nil && !errors.Is(verr, kind.Invalid) {
			t.Fatalf("Validate(%q): %v is not invalid input", source, verr)
		}
		if err != nil {
			if !errors.Is(err, kind.Invalid) {
				t.Fatalf("Compile(%q): %v is not invalid input", source, err)
			}
			return
		}
		for _, p := range principals {
			for _, r := range resources {
				for _, a := range args {
					d := set.Authorize(p, r, a)
					if !d.Allow {
						continue
					}
					if b := base.Authorize(p, r, a); !b.Allow {
						t.Fatalf("upload %q widened: %+v %+v %v allowed (%+v), the profile alone denies", source, p, r, a, d)
					}
					if p.Tenant != "acme" || r.Scope == ScopeCrossTenant || r.Owner != "" && r.Owner != "acme" || r.Name == "unlisted" || r.Scope == "weird" {
						t.Fatalf("upload %q: %+v %+v %v allowed: %+v", source, p, r, a, d)
					}
					for _, id := range d.Reasons {
						if !strings.HasPrefix(id, profilePrefix) {
							t.Fatalf("upload %q: allowed by %q, not a profile permit", source, id)
						}
					}
				}
			}
		}
	})
}

// TestAuthorizeLabeled checks that the turn's label reaches the context
// under names no argument can take.
func TestAuthorizeLabeled(t *testing.T) {
	e := newEngine(t)
	p := Principal{Tenant: "acme", Profile: "default"}
	r := Resource{Name: "crm_lookup", Scope: ScopeTenant, Egress: label.Tenant}
	src := `@id("untrusted-secret") forbid (principal, action, resource) when { context.integrity == "untrusted" && context.confidentiality == "secret" };
@id("egress") forbid (principal, action, resource) when { resource.egress == "public" || !resource.receives.contains("tenant") || resource.consequential };`
	set, err := e.Compile("acme", testProfiles, src)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		args      map[string]any
		read      label.Label
		wantAllow bool
		wantErr   string
	}{
		{"labels below the rule", map[string]any{"customer": "c1"}, label.Label{Integrity: label.Untrusted, Confidentiality: label.EndUser}, true, ""},
		{"labels the rule forbids", map[string]any{"customer": "c1"}, label.Unknown, false, ""},
		// The model names an argument like a label: denied, whatever it says.
		{"argument named integrity", map[string]any{"integrity": "trusted"}, label.Profile, false, `argument "integrity"`},
		{"argument named confidentiality", map[string]any{"confidentiality": "public"}, label.Profile, false, `argument "confidentiality"`},
		// Nested, the name is an ordinary argument: only top-level context
		// attributes are labels.
		{"nested integrity", map[string]any{"filter": map[string]any{"integrity": "trusted"}}, label.Label{Integrity: label.Untrusted}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := set.AuthorizeLabeled(p, r, tt.args, tt.read)
			if d.Allow != tt.wantAllow {
				t.Errorf("allow = %v, want %v (%+v)", d.Allow, tt.wantAllow, d)
			}
			if tt.wantErr != "" && !strings.Contains(strings.Join(d.Errors, "\n"), tt.wantErr) {
				t.Errorf("errors %q do not mention %q", d.Errors, tt.wantErr)
			}
		})
	}
	// The resource's flow attributes are the runtime's: a consequential
	// tool, or one whose egress is public, is forbidden by the second rule.
	for _, r := range []Resource{
		{Name: "crm_lookup", Scope: ScopeTenant, Consequential: true, Egress: label.Tenant},
		{Name: "crm_lookup", Scope: ScopeTenant, Egress: label.Public},
	} {
		if d := set.AuthorizeLabeled(p, r, nil, label.Profile); d.Allow || !reflect.DeepEqual(d.Reasons, []string{"tenant/egress"}) {
			t.Errorf("resource %+v: got %+v, want a denial by tenant/egress", r, d)
		}
	}
}
