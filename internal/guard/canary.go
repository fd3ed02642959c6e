package guard

import (
	"bytes"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/textnorm"
)

// Canary values must be MinCanaryLen to MaxCanaryLen bytes of ASCII letters,
// digits, '-' and '_'. Shorter ones would match ordinary text, and the
// character set keeps a canary from containing markdown syntax.
const (
	MinCanaryLen = 12
	MaxCanaryLen = 128
)

func validCanary(c string) bool {
	if len(c) < MinCanaryLen || len(c) > MaxCanaryLen {
		return false
	}
	for i := 0; i < len(c); i++ {
		if b := c[i]; !(isAlnum(b) || b == '-' || b == '_') {
			return false
		}
	}
	return true
}

// canarySet finds every tenant's canaries in a text, in every form of
// textnorm.Encodings and in both of textnorm's views, and other tenants'
// secrets by their keyed windows. It is immutable.
type canarySet struct {
	m       *textnorm.Matcher
	values  []string      // by value index of m
	owners  [][]tenant.ID // by value index of m: one tenant, unless reused
	secrets *secretSet
	// own is, for each tenant, the beginnings of its own canaries'
	// patterns: what the first pass must hold back for it (see
	// canaryStage). Only the receiver's own canaries, never another
	// tenant's, decide what is held, so how a stream is cut tells a tenant
	// nothing about the others' canaries. Built on a tenant's first
	// stream.
	own    sync.Map // tenant.ID → *textnorm.Prefixes
	compOf map[tenant.ID][]*textnorm.Compiled
}

// ownPrefixes returns the beginnings of id's canaries' patterns.
func (cs *canarySet) ownPrefixes(id tenant.ID) *textnorm.Prefixes {
	if p, ok := cs.own.Load(id); ok {
		return p.(*textnorm.Prefixes)
	}
	p, _ := cs.own.LoadOrStore(id, textnorm.NewPrefixes(cs.compOf[id]))
	return p.(*textnorm.Prefixes)
}

// maxCanaryPattern cuts each form of a canary to its first 32 letters and
// digits: enough to be sure (the shortest cut form, a canary's 32 first hex
// digits, still holds 12 of its random characters, 60 bits), and it bounds
// what a stream holds back.
const maxCanaryPattern = 32

// newCanarySet builds the set. compiled caches each canary's patterns
// across builds (nil: none); it is updated, and entries for canaries no
// longer set are dropped.
func newCanarySet(byTenant map[tenant.ID][]string, secrets *secretSet, compiled map[string]*textnorm.Compiled) *canarySet {
	cs := &canarySet{secrets: secrets}
	ids := slices.Sorted(maps.Keys(byTenant))
	idx := map[string]int{}
	var values []string
	for _, id := range ids {
		for _, c := range byTenant[id] {
			if !validCanary(c) {
				continue
			}
			c = asciiLower(c)
			i, ok := idx[c]
			if !ok {
				i = len(values)
				idx[c] = i
				values = append(values, c)
				cs.owners = append(cs.owners, nil)
			}
			if !slices.Contains(cs.owners[i], id) {
				cs.owners[i] = append(cs.owners[i], id)
			}
		}
	}
	cs.values = values
	comp := make([]*textnorm.Compiled, len(values))
	for i, v := range values {
		c, ok := compiled[v]
		if !ok {
			c = textnorm.Compile(v, maxCanaryPattern)
		}
		comp[i] = c
	}
	if compiled != nil {
		clear(compiled)
		for i, v := range values {
			compiled[v] = comp[i]
		}
	}
	cs.m = textnorm.NewMatcherOf(comp, textnorm.Options{Lookahead: secrets.lookahead(), Early: true})
	cs.compOf = make(map[tenant.ID][]*textnorm.Compiled, len(ids))
	for i, os := range cs.owners {
		for _, o := range os {
			cs.compOf[o] = append(cs.compOf[o], comp[i])
		}
	}
	return cs
}

// canaryStage is a pass for canaries and secrets. With remove set (the
// first pass) it removes the receiver's own canaries; otherwise any canary
// is one formed by an earlier removal and blocks. Another tenant's canary or
// secret always blocks.
//
// The scanner settles text only once no match can begin in it, which for
// every tenant's canaries and the secrets' windows means the last 31 letters
// and digits. The stage sends more than that, ahead of the scanner: all the
// text in which no match it would act on by rewriting can begin. That is,
// in the first pass, the text before the first position whose next view
// bytes could begin a form of one of the receiver's own canaries (see
// textnorm.Prefixes), and in the second pass, where every match blocks,
// all of it. A match of another tenant's canary or secret is still found by
// the scanner, which keeps the text it needs, and blocks the stream as soon
// as it is whole; only a match to remove must be held whole, so that the
// removal cuts the same text as Check's. What is held therefore never
// depends on other tenants' canaries or secrets: holding the beginnings of
// those would tell the receiver, from where its stream is cut, which
// strings begin another tenant's canary, one character at a time.
type canaryStage struct {
	set    *canarySet
	self   tenant.ID
	remove bool
	r      *reasons
	leaks  *leaks
	// inputs is what of other tenants' the request's own inputs carry
	// (nil: nothing): found again, it passes and is noted in carried.
	inputs  *Inputs
	carried *leaks
	sc      *textnorm.Scanner
	hit     []secretRef // secrets found by the scanner's Visit
	// sent is how many bytes of the scanner's unsettled text were sent
	// already.
	sent int

	// In the first pass: removed records that the stage removed a canary,
	// cutAhead that text it has not let through holds a canary found or a
	// link construct, which it or the next pass may remove.
	removed, cutAhead bool
	// seams (the second pass) reports whether an earlier pass holds back
	// text it may remove or has removed some: only then can removals join
	// text into a secret this pass sees and the first did not (see
	// secretHold).
	seams func() bool
}

func (c *canaryStage) write(in string, final bool) (string, string) {
	if c.sc == nil {
		c.sc = c.set.m.Scanner()
		// Visit is set with no other tenant's secret too: the scanner then
		// still keeps the text the fixed holds hold back (see secretHold).
		ss := c.set.secrets
		others := ss.others(c.self)
		c.sc.Visit = func(buf []byte, _ []int32, from, to int) {
			if others {
				c.hit = ss.find(buf, from, to, c.self, c.hit)
			}
		}
	}
	seg, ms := c.sc.Advance(in, final)
	out, blocked := c.rewrite(seg, ms)
	if final || blocked != "" {
		// Nothing follows: the scanner's buffers can serve another stream.
		c.sc.Release()
		c.sc = nil
		return out, blocked
	}
	var n int
	if c.remove {
		own := c.set.ownPrefixes(c.self)
		n = c.sc.Free(c.sent, own, publicPrefixes())
		// Where text may be removed later: a canary of the receiver's own
		// that may begin, or a link construct (the next pass's).
		cut := c.sc.Free(c.sent, own)
		if i := bytes.IndexAny(c.sc.Unsettled()[c.sent:], "[!]<"); i >= 0 {
			cut = min(cut, c.sent+i)
		}
		n = min(n, c.secretHold(cut))
		c.cutAhead = len(c.sc.Pending()) > 0 || bytes.ContainsAny(c.sc.Unsettled()[max(n, c.sent):], "[!]<")
	} else {
		// The second pass needs the public beginnings of canaries only
		// where removals may join text (see secretHold): elsewhere the
		// first pass saw what follows each place it let through and held
		// every such beginning there.
		n = c.sc.Free(c.sent)
		if c.seams != nil && c.seams() {
			n = c.sc.Free(c.sent, publicPrefixes())
		}
		n = min(n, c.secretHold(len(c.sc.Unsettled())))
	}
	if n > c.sent {
		out += string(c.sc.Unsettled()[c.sent:n])
		c.sent = n
	}
	return out, ""
}

// secretHold returns how many bytes of the scanner's unsettled text may be
// sent as far as other tenants' secrets go: none from the first place where
// a window of one may begin that is not whole yet (secretSet.hold), so that
// a stream blocks before any byte of a whole form leaves; find sees each
// window as soon as its last byte arrives.
//
// The first pass always holds the last startLen-1 view bytes, whose
// beginnings are not known yet, and the startLen-1 view bytes before cut,
// where a later removal may begin. The second pass sees what the first let
// through, which the first pass's view followed with startLen-1 more bytes
// at least, none of them removed yet: a window beginning in it had its
// first startLen bytes there too, and was held by the first pass. Only a
// removal can join text into a window the first pass did not see. The
// first pass holds the startLen-1 view bytes before where one may begin,
// and the windows that reach it; but the text its scanner settles goes
// through whatever follows, and a canary is found before the text
// startLen-1 view bytes before it settles (minLookahead). So the second
// pass holds its own last bytes, and its windows until they are whole,
// while the first pass holds a canary found or a link construct, while
// the link pass holds an open one and, once either removed text, for the
// rest of the stream.
//
// The two fixed rules apply whether or not any other tenant has a secret
// tracked: were they switched on by the first one, where a stream is cut
// would tell the receiver when some other tenant first stored a credential.
func (c *canaryStage) secretHold(cut int) int {
	tail := c.remove || c.seams != nil && c.seams()
	ss := c.set.secrets
	view, at := c.sc.Squeezed()
	// The first view byte from text at or after off.
	index := func(off int) int {
		return sort.Search(len(view), func(i int) bool { return at(i) >= off })
	}
	from := index(c.sent)
	u := c.sc.Unsettled()
	cutAt := len(view)
	if cut < len(u) {
		cutAt = index(cut)
	}
	end := ss.hold(view, from, cutAt, c.self, tail)
	if cut < len(u) {
		end = min(end, max(from, cutAt-(startLen-1)))
	}
	switch {
	case end >= len(view):
		return len(u)
	case end > 0 && at(end-1) < len(u) && isAlnum(u[at(end-1)]):
		// Hold the separators before the held byte too: they may be the
		// form's own ("/8Qp…" reversed).
		return at(end-1) + 1
	}
	return at(end)
}

// publicPrefixes returns the beginnings of the forms that every canary
// NewCanary makes has, because they are fixed by its "bkc-" prefix (in the
// squeezed view "bkc", rot13 "oxp", hex "626b632d", the first characters
// of its base64 and base32): found in a stream, they are held until a
// canary could be whole, so that no byte of those forms of another tenant's
// canary is sent before the stream blocks. They are the same for every
// tenant, so holding them tells no one anything. (The reversed form begins
// with random characters and cannot be held so: it is caught, and blocks,
// once whole.)
var publicPrefixes = sync.OnceValue(func() *textnorm.Prefixes {
	// The beginnings every sample shares are those "bkc-" fixes only if no
	// random bit is the same in all samples. Random samples alone do not
	// ensure it (with 4, a character of the base32 and base64 forms that
	// mixes the class of the first random character, letter or digit, was
	// shared in about a third of processes, and a canary of the other class
	// was not held), so the samples are every character of the alphabet
	// repeated, which varies every bit a random character can vary, and a
	// few random canaries, which vary neighbours independently.
	var values []string
	for _, ch := range canaryAlphabet {
		values = append(values, canaryPrefix+strings.Repeat(string(ch), canaryRandomChars))
	}
	for range 8 {
		c, err := NewCanary()
		if err != nil {
			panic(err) // crypto/rand does not fail on supported systems
		}
		values = append(values, c)
	}
	cs := make([]*textnorm.Compiled, len(values))
	for i, v := range values {
		cs[i] = textnorm.Compile(v, maxCanaryPattern)
	}
	// Three bytes at least: the two a form keeps after an escape swallows
	// its first ("kc") are common in prose.
	return textnorm.CommonPrefixes(cs, 3)
})

// rewrite acts on the matches of a settled segment and on those already
// found in the held tail. The first c.sent bytes of seg were sent already.
func (c *canaryStage) rewrite(seg string, ms []textnorm.Match) (string, string) {
	sent := min(c.sent, len(seg))
	c.sent -= sent
	// A foreign canary complete in the held tail blocks at once, and in
	// the second pass any canary of the receiver's own does.
	early := ""
	for _, m := range c.sc.Pending() {
		foreign, own := c.classify(m.Value)
		switch {
		case foreign:
			early = ReasonForeignCanary
		case !c.remove && own && early == "":
			early = ReasonFormedCanary
		}
	}
	secret := false
	for _, h := range c.hit {
		if c.inputs.carries(h) {
			c.carried.add(h.owner, LeakSecret)
			continue
		}
		secret = true
		c.leaks.add(h.owner, LeakSecret)
	}
	switch {
	case secret:
		return "", ReasonForeignSecret
	case early != "":
		return "", early
	}
	var b strings.Builder
	done := 0
	blocked := ""
	for i := 0; i < len(ms); {
		start, end := ms[i].Start, ms[i].End
		foreign, own := false, false
		j := i
		for ; j < len(ms) && (j == i || ms[j].Start < end); j++ {
			end = max(end, ms[j].End)
			f, o := c.classify(ms[j].Value)
			foreign, own = foreign || f, own || o
		}
		i = j
		switch {
		case foreign:
			blocked = ReasonForeignCanary
		case !own:
			// Only canaries the request's own inputs carry: text as any.
			continue
		case !c.remove && blocked == "":
			blocked = ReasonFormedCanary
		case start < sent && blocked == "":
			// A canary to remove begins in text already sent, which
			// Free rules out: fail closed.
			blocked = ReasonFormedCanary
		}
		if blocked != "" {
			continue
		}
		c.r.add(ReasonOwnCanary)
		c.removed = true
		b.WriteString(seg[done:start])
		done = end
	}
	if blocked != "" {
		return "", blocked
	}
	if done == 0 {
		return seg[sent:], ""
	}
	b.WriteString(seg[done:])
	// No removal begins before sent, so the output begins with seg[:sent].
	return b.String()[sent:], ""
}

// classify reports whether the canary with value index v is another
// tenant's that the request's inputs do not carry (recording the leak), and
// whether it is the receiver's own. Another tenant's that the inputs carry
// is recorded in carried and is neither.
func (c *canaryStage) classify(v int) (foreign, own bool) {
	for _, o := range c.set.owners[v] {
		switch {
		case o == c.self:
			own = true
		case c.inputs.carriesCanary(c.set.values[v]):
			c.carried.add(o, LeakCanary)
		default:
			foreign = true
			c.leaks.add(o, LeakCanary)
		}
	}
	return foreign, own
}

// cutRune moves the cut n of s back to the start of a rune, and before a
// trailing rune that is not complete yet.
func cutRune(s string, n int) int {
	n = max(0, min(n, len(s)))
	for n > 0 && n < len(s) && !utf8.RuneStart(s[n]) {
		n--
	}
	if n == len(s) && n > 0 {
		j := n - 1
		for j > 0 && n-j < utf8.UTFMax && !utf8.RuneStart(s[j]) {
			j--
		}
		if !utf8.FullRuneInString(s[j:]) {
			n = j
		}
	}
	return n
}

// asciiLower lowercases ASCII letters only, so offsets do not move.
func asciiLower(s string) string {
	i := 0
	for i < len(s) && !('A' <= s[i] && s[i] <= 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if 'A' <= b[i] && b[i] <= 'Z' {
			b[i] += 'a' - 'A'
		}
	}
	return string(b)
}

// asciiCase is the bit to set to lowercase b, if b is an ASCII capital.
func asciiCase(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return 'a' - 'A'
	}
	return 0
}

func isAlpha(b byte) bool { return 'a' <= b|0x20 && b|0x20 <= 'z' }
func isDigit(b byte) bool { return '0' <= b && b <= '9' }
func isAlnum(b byte) bool { return isAlpha(b) || isDigit(b) }
