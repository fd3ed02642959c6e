package agent

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/label"
)

func TestRefs(t *testing.T) {
	var r refs
	secret := label.Result(label.Secret)
	view := r.hold(`{"balance": 12}`, secret, true)
	if view != `held as $r1 (json, 15 bytes): the value is not shown to you; pass "$r1" as an argument to use it` {
		t.Fatalf("hold = %q", view)
	}
	if strings.Contains(view, "balance") {
		t.Fatal("the model's view holds the value")
	}
	r.hold("page text", label.Result(label.Public), true)

	tests := []struct {
		name     string
		in       any
		want     any
		wantUsed label.Label
		wantErr  bool
	}{
		{"whole string", map[string]any{"text": "$r1"}, map[string]any{"text": `{"balance": 12}`}, secret, false},
		{"nested and in arrays", map[string]any{"a": []any{"$r2", map[string]any{"b": "$r1"}}},
			map[string]any{"a": []any{"page text", map[string]any{"b": `{"balance": 12}`}}}, secret, false},
		{"inside other text is no reference", map[string]any{"text": "see $r1"}, map[string]any{"text": "see $r1"}, label.Label{}, false},
		{"keys are never replaced", map[string]any{"$r1": "x"}, map[string]any{"$r1": "x"}, label.Label{}, false},
		{"no references", map[string]any{"n": 1.5, "ok": true}, map[string]any{"n": 1.5, "ok": true}, label.Label{}, false},
		{"unknown reference", map[string]any{"text": "$r3"}, nil, label.Label{}, true},
		{"unknown reference deep", map[string]any{"a": []any{"$r1", "$r99"}}, nil, label.Label{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, used, err := r.resolve(tt.in)
			var unknown errUnknownRef
			if tt.wantErr {
				if !errors.As(err, &unknown) {
					t.Fatalf("resolve = %v, %v; want an unknown reference", got, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) || used != tt.wantUsed {
				t.Errorf("resolve = %v, %v, %v; want %v, %v", got, used, err, tt.want, tt.wantUsed)
			}
		})
	}
	// Another turn's refs know none of these.
	var other refs
	if _, _, err := other.resolve(map[string]any{"text": "$r1"}); err == nil {
		t.Error("a reference resolved in another turn's refs")
	}
}

func TestRefsBounded(t *testing.T) {
	var r refs
	for range maxRefs {
		if v := r.hold("x", label.Label{}, false); !strings.HasPrefix(v, "held as ") {
			t.Fatalf("hold = %q", v)
		}
	}
	if v := r.hold("x", label.Label{}, false); !strings.HasPrefix(v, "error: ") {
		t.Fatalf("hold beyond %d = %q, want an error", maxRefs, v)
	}
}

func TestPending(t *testing.T) {
	var p pending
	p.note(label.Result(label.Tenant))
	p.note(label.Result(label.Public))
	if got := p.take(); got != label.Result(label.Tenant) {
		t.Errorf("take = %v, want untrusted/tenant", got)
	}
	if got := p.take(); got != (label.Label{}) {
		t.Errorf("second take = %v, want nothing", got)
	}
}

func TestShowHeld(t *testing.T) {
	a, err := New(Deps{Guard: NoGuard, Quota: NoQuota, Audit: NoAudit})
	if err != nil {
		t.Fatal(err)
	}
	var r refs
	r.hold("the board meets Tuesday", label.Result(label.EndUser), true)
	r.hold("card 4242", label.Result(label.Secret), false)
	tests := []struct {
		in, want  string
		wantShown bool
	}{
		{"Next: $r1.", "Next: the board meets Tuesday.", true},
		{"Card: $r2", "Card: [$r2 is secret and is not shown]", false},
		{"Unknown $r3 and $r10x stay", "Unknown $r3 and $r10x stay", false},
		{"none", "none", false},
	}
	for _, tt := range tests {
		got, shown := a.showHeld(t.Context(), authtest.Scope(t, "acme", "alice"), Profile{}, nil, &r, tt.in)
		if got != tt.want || shown != tt.wantShown {
			t.Errorf("showHeld(%q) = %q, %v; want %q, %v", tt.in, got, shown, tt.want, tt.wantShown)
		}
	}
}

func TestRefsTakeInputs(t *testing.T) {
	var r refs
	r.hold("page", label.Result(label.Public), true)
	r.hold("passages", label.Result(label.Tenant), false)
	if got := r.takeInputs(); len(got) != 1 || got[0] != "page" {
		t.Fatalf("takeInputs = %q, want the external tool's value only", got)
	}
	if got := r.takeInputs(); len(got) != 0 {
		t.Fatalf("takeInputs again = %q, want nothing new", got)
	}
}
