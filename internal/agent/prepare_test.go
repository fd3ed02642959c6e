package agent_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/agent"
	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/policy"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// definitions is a control plane of fixed tenants.
type definitions map[tenant.ID]control.Tenant

func (d definitions) Tenant(id tenant.ID) (control.Tenant, error) {
	t, ok := d[id]
	if !ok {
		return control.Tenant{}, kind.NotFound
	}
	return t, nil
}

// TestPrepare checks the profile a turn runs with: the tenant from the
// scope only, a model picked from the profile's list (the provider's key
// secret kept to its own provider, the fallbacks after it), a model not on
// the list refused by name, and another tenant's profile not found.
func TestPrepare(t *testing.T) {
	engine, err := policy.NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	defs := definitions{
		"acme": {ID: "acme", Canaries: []string{"canary-acme"}, Limits: control.Limits{RequestsPerMinute: 7}, Profiles: map[string]control.Profile{
			"default": {Model: "primary/a", Fallbacks: []string{"primary/b", "backup/c"}, APIKeySecret: "primary_key",
				Models: []string{"primary/b", "other/d"}},
		}},
		"globex": {ID: "globex", Profiles: map[string]control.Profile{
			"default": {Model: "primary/a", Models: []string{"primary/g"}},
			"private": {Model: "primary/a"},
		}},
	}
	a, err := agent.New(agent.Deps{Guard: agent.NoGuard, Quota: agent.NoQuota, Audit: agent.NoAudit, Definitions: defs, Policies: engine})
	if err != nil {
		t.Fatal(err)
	}
	acme := authtest.Scope(t, "acme", "alice")
	tests := []struct {
		model             string
		wantModel, wantID string
		wantKey           tenant.SecretName
		wantFallbacks     []string
		wantKind          error
		wantMention       string
	}{
		{model: "", wantModel: "primary/a", wantID: "default", wantKey: "primary_key", wantFallbacks: []string{"primary/b", "backup/c"}},
		{model: "default/primary/b", wantModel: "primary/b", wantID: "default/primary/b", wantKey: "primary_key", wantFallbacks: []string{"backup/c"}},
		// The key stays the profile's, for its own provider only (candidateKey).
		{model: "default/other/d", wantModel: "other/d", wantID: "default/other/d", wantKey: "primary_key", wantFallbacks: []string{"primary/b", "backup/c"}},
		{model: "default/primary/g", wantKind: kind.Invalid, wantMention: "primary/g"},
		{model: "default/backup/c", wantKind: kind.Invalid, wantMention: "backup/c"},
		{model: "private", wantKind: kind.NotFound, wantMention: "private"},
		{model: "private/primary/a", wantKind: kind.NotFound, wantMention: "private"},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			p, err := a.Prepare(acme, tt.model, false)
			if tt.wantKind != nil {
				if !errors.Is(err, tt.wantKind) || !strings.Contains(err.Error(), tt.wantMention) {
					t.Fatalf("got %v, want a %v error naming %q", err, tt.wantKind, tt.wantMention)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Model != tt.wantModel || p.ID != tt.wantID || p.Name != "default" || p.KeySecret != tt.wantKey || p.KeyProvider != "primary" || !slices.Equal(p.Fallbacks, tt.wantFallbacks) {
				t.Errorf("got model %q id %q name %q key %q of %q fallbacks %v, want %q %q default %q of primary %v",
					p.Model, p.ID, p.Name, p.KeySecret, p.KeyProvider, p.Fallbacks, tt.wantModel, tt.wantID, tt.wantKey, tt.wantFallbacks)
			}
			if p.Canary != "canary-acme" || p.Limits.RequestsPerMinute != 7 || p.Version == "" {
				t.Errorf("got canary %q limits %+v version %q, want acme's", p.Canary, p.Limits, p.Version)
			}
			if p.Policy != nil {
				t.Errorf("a profile without tools got a policy")
			}
		})
	}
	// Client tools need the compiled policy.
	if p, err := a.Prepare(acme, "default", true); err != nil || p.Policy == nil {
		t.Errorf("with client tools: got policy %v, error %v; want a compiled policy", p.Policy, err)
	}
	// Without definitions the agent cannot prepare a turn: fail closed.
	bare, err := agent.New(agent.Deps{Guard: agent.NoGuard, Quota: agent.NoQuota, Audit: agent.NoAudit})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bare.Prepare(acme, "default", false); err == nil {
		t.Error("Prepare without definitions succeeded")
	}
}
