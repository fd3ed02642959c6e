package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/label"
)

func templateSource(t *testing.T, names ...string) string {
	t.Helper()
	var b strings.Builder
	for _, n := range names {
		tmpl, err := TemplateNamed(n)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(tmpl.Source)
	}
	return b.String()
}

func TestTemplates(t *testing.T) {
	e := newEngine(t)
	src := templateSource(t, "trusted-action", "permitted-flow")
	if err := e.Validate("acme", src); err != nil {
		t.Fatalf("the shipped templates do not validate: %v", err)
	}
	set, err := e.Compile("acme", map[string][]string{"default": {"send_email", "search", "post"}}, src)
	if err != nil {
		t.Fatal(err)
	}
	p := Principal{Tenant: "acme", Profile: "default", User: "alice"}
	sendEmail := Resource{Name: "send_email", Scope: ScopeTenant, Consequential: true, Egress: label.EndUser}
	search := Resource{Name: "search", Scope: ScopeTenant, Consequential: false, Egress: label.EndUser}
	post := Resource{Name: "post", Scope: ScopeGlobal, Consequential: true, Egress: label.Public}
	tests := []struct {
		name        string
		r           Resource
		read        label.Label
		wantAllow   bool
		wantReasons []string
	}{
		{"consequential after trusted input only", sendEmail, label.Profile, true, []string{"profile/default/send_email"}},
		{"consequential after end-user text", sendEmail, label.Of(label.Profile, label.Client), false, []string{"tenant/trusted-action"}},
		{"consequential after a tool result", sendEmail, label.Of(label.Profile, label.Result(label.Public)), false, []string{"tenant/trusted-action"}},
		{"inconsequential after untrusted input", search, label.Of(label.Profile, label.Client, label.Result(label.Tenant)), true, []string{"profile/default/search"}},
		{"egress at the turn's confidentiality", search, label.Label{Integrity: label.Untrusted, Confidentiality: label.EndUser}, true, []string{"profile/default/search"}},
		{"egress below the turn's confidentiality", search, label.Label{Integrity: label.Untrusted, Confidentiality: label.Secret}, false, []string{"tenant/permitted-flow"}},
		{"public egress after tenant data", post, label.Label{Confidentiality: label.Tenant}, false, []string{"tenant/permitted-flow"}},
		{"public egress after public data only", post, label.Label{}, true, []string{"profile/default/post"}},
		{"both templates forbid", post, label.Of(label.Client), false, []string{"tenant/permitted-flow", "tenant/trusted-action"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := set.AuthorizeLabeled(p, tt.r, map[string]any{"to": "bob@example.com"}, tt.read)
			if d.Allow != tt.wantAllow || strings.Join(d.Reasons, ",") != strings.Join(tt.wantReasons, ",") || len(d.Errors) > 0 {
				t.Errorf("got allow=%v reasons=%v errors=%v, want allow=%v reasons=%v", d.Allow, d.Reasons, d.Errors, tt.wantAllow, tt.wantReasons)
			}
		})
	}
	// Without labels (Authorize), the most restrictive label applies.
	if d := set.Authorize(p, search, nil); d.Allow {
		t.Errorf("Authorize without labels allowed a call the templates would forbid for a secret turn: %+v", d)
	}
	// Offering is decided without labels: the templates do not hide tools
	// (each call is decided on the labels it is made with).
	for _, r := range []Resource{sendEmail, search, post} {
		if ok, d := set.Listable(p, r); !ok {
			t.Errorf("Listable(%s) = false (%+v), want the call-time check to decide", r.Name, d)
		}
	}
}

func TestTemplateNamed(t *testing.T) {
	if _, err := TemplateNamed("allow-everything"); !errors.Is(err, kind.NotFound) {
		t.Errorf("TemplateNamed(unknown) = %v, want kind.NotFound", err)
	}
	all := Templates()
	if len(all) != 2 {
		t.Fatalf("got %d templates, want 2", len(all))
	}
	all[0].Source = "changed"
	if tmpl, _ := TemplateNamed(all[0].Name); tmpl.Source == "changed" {
		t.Error("Templates returned the package's own slice")
	}
}

// BenchmarkLabels measures what label tracking adds to one decision: the
// same 100-policy set and arguments as BenchmarkAuthorize, decided on the
// arguments alone (no label attributes, as before labels) and with the
// turn's labels in the context, the resource's flow attributes and both
// templates in the set.
func BenchmarkLabels(b *testing.B) {
	e := newEngine(b)
	p := Principal{Tenant: "acme", Profile: "p3", User: "alice"}
	r := Resource{Name: "tool_0", Scope: ScopeTenant, Owner: "acme", Egress: label.EndUser}
	b.Run("unlabeled", func(b *testing.B) {
		s, err := e.Compile("acme", benchProfiles(), benchSource(100))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			var inexact bool
			ctx, err := record(benchArgs, 0, &inexact)
			if err != nil {
				b.Fatal(err)
			}
			if d := s.decide(p, r, ctx, false); !d.Allow {
				b.Fatalf("decision %+v, want allow", d)
			}
		}
	})
	b.Run("labeled", func(b *testing.B) {
		var src strings.Builder
		src.WriteString(benchSource(100))
		for _, t := range Templates() {
			src.WriteString(t.Source)
		}
		s, err := e.Compile("acme", benchProfiles(), src.String())
		if err != nil {
			b.Fatal(err)
		}
		read := label.Of(label.Profile, label.Client)
		b.ReportAllocs()
		for b.Loop() {
			if d := s.AuthorizeLabeled(p, r, benchArgs, read); !d.Allow {
				b.Fatalf("decision %+v, want allow", d)
			}
		}
	})
}
