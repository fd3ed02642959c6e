package guard

import (
	"maps"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/textnorm"
)

// Inputs is what of other tenants' (their canaries, their tracked secrets)
// a request's own inputs already carry: text its client sent, and what its
// own external tools returned. Found again in what leaves, it is no leak of
// the runtime's (the receiver had it already) and it passes; a canary or
// secret the inputs do not carry still blocks.
//
// Without this, a tenant could make another's answers withheld: it plants
// its own canary (which it can learn from its own model) or its own API
// token in a public page, an email or a ticket, and every answer of another
// tenant whose model quotes that text is blocked, while the planter's audit
// log tells it each time that its "data" was caught. The checks exist to
// catch the runtime leaking a tenant's data (a store, cache or provider
// bug); text the receiver's own client or its own tools handed in did not
// come through the runtime, so it proves nothing of the kind.
//
// Nothing here is an oracle: what passes is exactly what the receiver
// supplied, identified by the canary or secret it matches, so an input
// exempts only that canary or secret in every form, never another of the
// same tenant's. What the runtime reads from its own storage (retrieved
// passages, memories) is never an input: a canary there is the leak the
// check exists for.
type Inputs struct {
	canaries map[string]struct{}
	secrets  map[secretRef]struct{}
}

// Inputs returns base (nil: nothing) with what of other tenants' the texts,
// inputs of a request for tenant id, carry. base is not changed.
func (g *Guard) Inputs(id tenant.ID, base *Inputs, texts ...string) *Inputs {
	in := &Inputs{canaries: map[string]struct{}{}, secrets: map[secretRef]struct{}{}}
	if base != nil {
		in.canaries, in.secrets = maps.Clone(base.canaries), maps.Clone(base.secrets)
	}
	if g == nil || id == "" {
		return in
	}
	cs := g.canarySet()
	for _, text := range texts {
		if text == "" {
			continue
		}
		sc := cs.m.Scanner()
		var hit []secretRef
		if ss := cs.secrets; ss.others(id) {
			sc.Visit = func(buf []byte, _ []int32, from, to int) {
				hit = ss.find(buf, from, to, id, hit)
			}
		}
		// The answer is read with long invisible runs removed (see
		// textnorm.StripInvisibleRuns), so the input is too.
		_, ms := sc.Advance(textnorm.StripInvisibleRuns(text), true)
		for _, m := range append(ms, sc.Pending()...) {
			for _, o := range cs.owners[m.Value] {
				if o != id {
					in.canaries[cs.values[m.Value]] = struct{}{}
				}
			}
		}
		sc.Release()
		for _, h := range hit {
			in.secrets[h] = struct{}{}
		}
	}
	return in
}

// Foreign reports whether text, which tenant id is about to store, carries
// another tenant's canary or tracked secret (see memory.Screen).
func (g *Guard) Foreign(id tenant.ID, text string) bool {
	return !g.Inputs(id, nil, text).Empty()
}

// Empty reports whether the inputs carry nothing of other tenants'.
func (in *Inputs) Empty() bool {
	return in == nil || len(in.canaries) == 0 && len(in.secrets) == 0
}

func (in *Inputs) carriesCanary(value string) bool {
	if in == nil {
		return false
	}
	_, ok := in.canaries[value]
	return ok
}

func (in *Inputs) carries(r secretRef) bool {
	if in == nil {
		return false
	}
	_, ok := in.secrets[r]
	return ok
}
