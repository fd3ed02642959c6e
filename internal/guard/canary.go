package guard

import (
	"maps"
	"slices"
	"strings"
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
	owners  [][]tenant.ID // by value index of m: one tenant, unless reused
	secrets *secretSet
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
	return cs
}

// canaryStage is a pass for canaries and secrets. With remove set (the
// first pass) it removes the receiver's own canaries; otherwise any canary
// is one formed by an earlier removal and blocks. Another tenant's canary or
// secret always blocks.
type canaryStage struct {
	set    *canarySet
	self   tenant.ID
	remove bool
	r      *reasons
	leaks  *leaks
	sc     *textnorm.Scanner
	hit    []tenant.ID // owners of secrets found by the scanner's Visit
}

func (c *canaryStage) write(in string, final bool) (string, string) {
	if c.sc == nil {
		c.sc = c.set.m.Scanner()
		if ss := c.set.secrets; ss.others(c.self) {
			c.sc.Visit = func(buf []byte, _ []int32, from, to int) {
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
	}
	return out, blocked
}

// rewrite acts on the matches of a settled segment and on those already
// found in the held tail.
func (c *canaryStage) rewrite(seg string, ms []textnorm.Match) (string, string) {
	// A foreign canary complete in the held tail blocks at once.
	early := false
	for _, m := range c.sc.Pending() {
		for _, o := range c.set.owners[m.Value] {
			if o != c.self {
				early = true
				c.leaks.add(o, LeakCanary)
			}
		}
	}
	for _, o := range c.hit {
		c.leaks.add(o, LeakSecret)
	}
	switch {
	case len(c.hit) > 0:
		return "", ReasonForeignSecret
	case early:
		return "", ReasonForeignCanary
	}
	var b strings.Builder
	done := 0
	blocked := ""
	for i := 0; i < len(ms); {
		start, end := ms[i].Start, ms[i].End
		foreign := false
		j := i
		for ; j < len(ms) && (j == i || ms[j].Start < end); j++ {
			end = max(end, ms[j].End)
			for _, o := range c.set.owners[ms[j].Value] {
				if o != c.self {
					foreign = true
					c.leaks.add(o, LeakCanary)
				}
			}
		}
		i = j
		switch {
		case foreign:
			blocked = ReasonForeignCanary
		case !c.remove && blocked == "":
			blocked = ReasonFormedCanary
		}
		if blocked != "" {
			continue
		}
		c.r.add(ReasonOwnCanary)
		b.WriteString(seg[done:start])
		done = end
	}
	if blocked != "" {
		return "", blocked
	}
	if done == 0 {
		return seg, ""
	}
	b.WriteString(seg[done:])
	return b.String(), ""
}

func (c *canaryStage) foreign(m textnorm.Match) bool {
	return slices.ContainsFunc(c.set.owners[m.Value], func(o tenant.ID) bool { return o != c.self })
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
