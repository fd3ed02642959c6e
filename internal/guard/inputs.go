package guard

import (
	"maps"
	"strconv"
	"strings"
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
			for _, r := range readings(text) {
				in.scan(cs, r)
			}
		}
		in.texts = nil
	})
}

// readings returns text as the checks of what leaves may come to read it:
// as it is, and with every link and image removed, since a removal joins
// what was around it (a page can split a canary around an empty link, and
// the answer quoting it then holds the canary whole once the link is gone).
// No host is allowed here, so every removal an answer's check may make is
// made: a value found only this way is still one the input held.
//
// Text that holds JSON escapes is read unescaped too: a client pasting a
// page into a message as a JSON string (a tool call's arguments, say) sends
// "\n" and "\u003c" for the newlines and tags that the decoded argument
// has, and only the decoded form lets a removal join the value.
func readings(text string) []string {
	if text == "" {
		return nil
	}
	out := []string{text}
	if u := jsonUnescape(text); u != text {
		out = append(out, u)
	}
	for _, r := range out {
		ls := &linkStage{hosts: newHostList(nil), r: &reasons{}, lineStart: true}
		if stripped, blocked := ls.write(r, true); blocked == "" && stripped != r {
			out = append(out, stripped)
		}
	}
	return out
}

// jsonUnescape decodes the JSON string escapes in s wherever they are,
// leniently: a malformed one is left as it is.
func jsonUnescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch c := s[i+1]; c {
		case '"', '\\', '/':
			b.WriteByte(c)
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'b', 'f':
			b.WriteByte(' ')
		case 'u':
			if i+6 <= len(s) {
				if n, err := strconv.ParseUint(s[i+2:i+6], 16, 16); err == nil {
					b.WriteRune(rune(n))
					i += 5
					continue
				}
			}
			b.WriteString(s[i : i+2])
		default:
			b.WriteString(s[i : i+2])
		}
		i++
	}
	return b.String()
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
