package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/policy"
	"github.com/bulkhead-ai/bulkhead/internal/quota"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Definitions reads tenants' definitions: profiles, limits, policy, canaries.
type Definitions interface {
	Tenant(id tenant.ID) (control.Tenant, error)
}

// Policies compiles a tenant's Cedar policy with the grants of its profiles.
type Policies interface {
	For(id tenant.ID, profiles map[string][]string, source string) (*policy.Set, error)
}

// Prepare is the profile a turn of scope's tenant runs with, for the model
// the request names: a profile of the tenant ("" is the default), or
// "<profile>/<provider>/<model>" to pick one of the models the profile lists
// (see PickModel). The tenant comes from scope alone; another tenant's
// profile is not found, exactly like one nobody has. With tools (the
// profile's or the request's client tools) the tenant's policy is compiled;
// one that does not compile offers nothing, and fails the turn.
func (a *Agent) Prepare(scope auth.Scope, model string, clientTools bool) (Profile, error) {
	if !scope.Valid() {
		return Profile{}, fmt.Errorf("prepare turn: %w", store.ErrNoScope)
	}
	if a.Definitions == nil || a.Policies == nil {
		return Profile{}, fmt.Errorf("prepare turn: the agent has no tenant definitions or policies")
	}
	t, err := a.Definitions.Tenant(scope.Tenant())
	if err != nil {
		return Profile{}, err
	}
	name, pick, picked := strings.Cut(model, "/")
	if model == "" {
		name = control.DefaultProfile
	}
	p, ok := t.Profile(name)
	if !ok {
		return Profile{}, fmt.Errorf("%w: the model %q does not exist", kind.NotFound, model)
	}
	profile := Profile{Name: name, ID: name, SystemPrompt: p.SystemPrompt, Model: p.Model, Fallbacks: p.Fallbacks,
		KeySecret: tenant.SecretName(p.APIKeySecret), KeyProvider: providerName(p.Model), Tools: p.Tools, Limits: QuotaLimits(t.Limits),
		NoCache: p.NoCache, CacheToolAnswers: p.CacheToolAnswers, Version: definitionVersion(t),
		AllowedHosts: t.AllowedHosts, NoClientTools: p.NoClientTools}
	if picked {
		if profile, err = profile.pickModel(p, pick); err != nil {
			return Profile{}, err
		}
	}
	if len(t.Canaries) > 0 {
		profile.Canary = t.Canaries[0]
	}
	if len(p.Tools) > 0 || clientTools {
		profiles := make(map[string][]string, len(t.Profiles))
		for n, pr := range t.Profiles {
			profiles[n] = pr.Tools
		}
		if profile.Policy, err = a.Policies.For(t.ID, profiles, t.Policy); err != nil {
			return Profile{}, fmt.Errorf("compile policy of tenant %s: %w", t.ID, err)
		}
	}
	return profile, nil
}

// pickModel runs profile with model, which must be the profile's own model
// or one of its Models; any other is refused by name, the same whether or
// not another tenant's profile lists it. The fallbacks still follow it, and
// the profile's api_key_secret goes only to its own model's provider
// (KeyProvider), whichever candidate is on it (candidateKey).
func (profile Profile) pickModel(p control.Profile, model string) (Profile, error) {
	if model != p.Model && !slices.Contains(p.Models, model) {
		return Profile{}, fmt.Errorf("%w: model: %q is not one of the models the profile %q lists", kind.Invalid, model, profile.Name)
	}
	profile.ID = profile.Name + "/" + model
	profile.Model = model
	profile.Fallbacks = slices.DeleteFunc(slices.Clone(p.Fallbacks), func(f string) bool { return f == model })
	return profile, nil
}

// QuotaLimits are a tenant's limits as the quota admits against them.
func QuotaLimits(l control.Limits) quota.Limits {
	return quota.Limits{RequestsPerMinute: l.RequestsPerMinute, TokensPerMinute: l.TokensPerMinute,
		MaxConcurrent: l.MaxConcurrent, TokenBudget: l.TokenBudget, BudgetPeriod: time.Duration(l.BudgetPeriodHours) * time.Hour,
		SpendPerDayMicroUSD: control.MicroUSD(l.SpendPerDayUSD), EndUserSpendPerDayMicroUSD: control.MicroUSD(l.EndUserSpendPerDayUSD)}
}

// definitionVersion changes whenever the tenant's definition or policy
// changes, so no cached answer outlives the configuration that produced it.
func definitionVersion(t control.Tenant) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d\x00%s", t.UpdatedAt.UnixNano(), t.Policy)
	return hex.EncodeToString(h.Sum(nil)[:16])
}
