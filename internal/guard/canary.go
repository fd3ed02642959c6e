package guard

import (
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
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

// canarySet finds every tenant's canaries in a text. It is immutable.
type canarySet struct {
	owners map[string][]tenant.ID // lowercase canary → its tenants (one, unless reused)
	sorted []string               // the lowercase canaries, sorted, to find prefixes
	lens   []int                  // distinct canary lengths, longest first
	maxLen int
	firsts string // the bytes a canary can start with, in both cases
	// filter is a bitmap over a hash of each canary's first four bytes, so
	// most candidate positions cost one bit test.
	filter [1 << filterBits / 64]uint64
}

const filterBits = 16

func newCanarySet(byTenant map[tenant.ID][]string) *canarySet {
	cs := &canarySet{owners: map[string][]tenant.ID{}}
	for id, list := range byTenant {
		for _, c := range list {
			if !validCanary(c) {
				continue
			}
			c = asciiLower(c)
			if !slices.Contains(cs.owners[c], id) {
				cs.owners[c] = append(cs.owners[c], id)
			}
		}
	}
	for c := range cs.owners {
		cs.sorted = append(cs.sorted, c)
		if !slices.Contains(cs.lens, len(c)) {
			cs.lens = append(cs.lens, len(c))
		}
		for _, b := range []byte{c[0], asciiUpper(c[0])} {
			if strings.IndexByte(cs.firsts, b) < 0 {
				cs.firsts += string(rune(b))
			}
		}
		h := prefixHash([]byte(c))
		cs.filter[h/64] |= 1 << (h % 64)
		cs.maxLen = max(cs.maxLen, len(c))
	}
	slices.SortFunc(cs.lens, func(a, b int) int { return b - a })
	slices.Sort(cs.sorted)
	return cs
}

// held returns where the tail of s that a canary may still start in
// begins: the first of the last maxLen-1 positions at which the rest of s
// is, ignoring ASCII case, the beginning of some canary. Any other position
// can start no canary whatever follows, so holding back only from there
// keeps a stream's verdict while prose is rarely held at all.
func (cs *canarySet) held(s string) int {
	var buf [MaxCanaryLen]byte
	for i := max(0, len(s)-(cs.maxLen-1)); i < len(s); i++ {
		j := strings.IndexAny(s[i:], cs.firsts)
		if j < 0 {
			break
		}
		i += j
		low := buf[:copy(buf[:], s[i:])]
		for k, b := range low {
			low[k] = b | asciiCase(b)
		}
		at, _ := slices.BinarySearch(cs.sorted, string(low))
		if at < len(cs.sorted) && strings.HasPrefix(cs.sorted[at], string(low)) {
			return i
		}
	}
	return cutRune(s, len(s))
}

func prefixHash(b []byte) uint32 {
	k := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
	return (k * 0x9E3779B1) >> (32 - filterBits)
}

// find reports the longest canary at s[i:], ignoring ASCII case, and its
// owners, or 0.
func (cs *canarySet) find(s string, i int) (int, []tenant.ID) {
	var buf [MaxCanaryLen]byte
	low := buf[:copy(buf[:], s[i:min(len(s), i+cs.maxLen)])]
	if len(low) < MinCanaryLen {
		return 0, nil
	}
	for j, b := range low {
		if 'A' <= b && b <= 'Z' {
			low[j] = b + 'a' - 'A'
		}
	}
	if h := prefixHash(low); cs.filter[h/64]&(1<<(h%64)) == 0 {
		return 0, nil
	}
	for _, n := range cs.lens {
		if n <= len(low) {
			if o, ok := cs.owners[string(low[:n])]; ok {
				return n, o
			}
		}
	}
	return 0, nil
}

// canaryStage is a pass for canaries. With remove set (the first pass) it
// removes the receiver's own canaries; otherwise any canary is one formed by
// an earlier removal and blocks. Another tenant's canary always blocks.
type canaryStage struct {
	set     *canarySet
	self    tenant.ID
	remove  bool
	r       *reasons
	pending string
}

func (c *canaryStage) write(in string, final bool) (string, string) {
	buf := c.pending + in
	// A canary starting at or after safe might still be incomplete.
	safe := len(buf)
	if !final {
		safe = c.set.held(buf)
	}
	if c.set.maxLen == 0 {
		c.pending = buf[safe:]
		return buf[:safe], ""
	}
	var b strings.Builder
	done := 0
	for i := 0; i < safe; {
		j := strings.IndexAny(buf[i:safe], c.set.firsts)
		if j < 0 {
			break
		}
		i += j
		n, owners := c.set.find(buf, i)
		if n == 0 {
			i++
			continue
		}
		switch {
		case slices.ContainsFunc(owners, func(o tenant.ID) bool { return o != c.self }):
			return "", ReasonForeignCanary
		case !c.remove:
			return "", ReasonFormedCanary
		}
		c.r.add(ReasonOwnCanary)
		b.WriteString(buf[done:i])
		done = i + n
		i = done
	}
	end := max(safe, done)
	c.pending = buf[end:]
	if done == 0 {
		return buf[:end], ""
	}
	b.WriteString(buf[done:end])
	return b.String(), ""
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

func asciiUpper(b byte) byte {
	if 'a' <= b && b <= 'z' {
		return b - ('a' - 'A')
	}
	return b
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
