package guard

import (
	"maps"
	"sync"

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
//
// The texts are scanned only when a check first asks about them, which is
// only when it found another tenant's canary or secret: a turn whose answer
// holds none pays nothing for its inputs.
type Inputs struct {
	g     *Guard
	id    tenant.ID
	base  *Inputs
	texts []string

	once     sync.Once
	canaries map[string]struct{}
	secrets  map[secretRef]struct{}
}

// Inputs returns base (nil: nothing) with what of other tenants' the texts,
// inputs of a request for tenant id, carry. base is not changed.
func (g *Guard) Inputs(id tenant.ID, base *Inputs, texts ...string) *Inputs {
	return &Inputs{g: g, id: id, base: base, texts: texts}
}

// load scans the texts, once.
func (in *Inputs) load() {
	in.once.Do(func() {
		in.canaries, in.secrets = map[string]struct{}{}, map[secretRef]struct{}{}
		if in.base != nil {
			in.base.load()
			in.canaries, in.secrets = maps.Clone(in.base.canaries), maps.Clone(in.base.secrets)
		}
		if in.g == nil || in.id == "" {
			return
		}
		cs := in.g.canarySet()
		for _, text := range in.texts {
			if text != "" {
				in.scan(cs, text)
			}
		}
		in.texts = nil
	})
}

// scan adds what of other tenants' text carries.
func (in *Inputs) scan(cs *canarySet, text string) {
	sc := cs.m.Scanner()
	defer sc.Release()
	var hit []secretRef
	if ss := cs.secrets; ss.others(in.id) {
		sc.Visit = func(buf []byte, _ []int32, from, to int) {
			hit = ss.find(buf, from, to, in.id, hit)
		}
	}
	// The answer is read with long invisible runs removed (see
	// textnorm.StripInvisibleRuns), so the input is too.
	_, ms := sc.Advance(textnorm.StripInvisibleRuns(text), true)
	for _, m := range append(ms, sc.Pending()...) {
		for _, o := range cs.owners[m.Value] {
			if o != in.id {
				in.canaries[cs.values[m.Value]] = struct{}{}
			}
		}
	}
	for _, h := range hit {
		in.secrets[h] = struct{}{}
	}
}

// Foreign reports whether text, which tenant id is about to store, carries
// another tenant's canary or tracked secret (see memory.Screen).
func (g *Guard) Foreign(id tenant.ID, text string) bool {
	return !g.Inputs(id, nil, text).Empty()
}

// Empty reports whether the inputs carry nothing of other tenants'.
func (in *Inputs) Empty() bool {
	if in == nil {
		return true
	}
	in.load()
	return len(in.canaries) == 0 && len(in.secrets) == 0
}

func (in *Inputs) carriesCanary(value string) bool {
	if in == nil {
		return false
	}
	in.load()
	_, ok := in.canaries[value]
	return ok
}

func (in *Inputs) carries(r secretRef) bool {
	if in == nil {
		return false
	}
	in.load()
	_, ok := in.secrets[r]
	return ok
}
