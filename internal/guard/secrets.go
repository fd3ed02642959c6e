package guard

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"math"
	"math/bits"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/textnorm"
)

// Other tenants' secrets.
//
// The guard must recognize tenant B's secret in tenant A's answer without
// holding B's plaintext, and without letting B's secrets make A's answers
// be withheld (B could store a credential whose beginning is public
// boilerplate: a PEM header, a JWT header, a licence) or letting A confirm
// a guess of B's secret. So a secret is matched only as a whole, and only
// if it is random enough that a guess of the whole is infeasible.
//
// What is matched. A value of at most maxWhole (96) bytes is one unit; a
// longer one is cut into units of maxWhole bytes at offsets 0, 96, 192, …,
// the last unit being the value's final 96 bytes (of a value that encodes
// text, a unit may be shorter: it begins where its information does, see
// secretUnits). For each unit that is random enough (below), the guard keeps keyed hashes (HMAC-SHA256 with a
// key made at process start, cut to 128 bits) of the squeezed view of each
// of the unit's forms as a whole (textnorm.Encodings: plain, reversed,
// rot13, hex, query, base64 and base32, with the base64 and base32
// interiors at every alignment, which are the whole value but for a
// character or two). An answer's squeezed view is hashed at every position
// for exactly those lengths (a rolling hash picks the candidates, HMAC
// confirms them); a whole unit form of another tenant's secret blocks it.
// A quote of public text therefore never matches unless it holds a whole
// unit, random part included; a leak of a long value is caught if it holds
// at least one whole unit (2×96-1 consecutive bytes always do). Each window
// is looked at as soon as its last byte arrives (find); the scanner keeps
// as many view bytes as the longest window (at most a few hundred; at least
// minLookahead), but a stream sends ahead of it and holds back only where
// a window may begin (hold).
//
// What is random enough (randomEnough, and encodedText for a value that
// encodes text: see "Encoded text" below). A unit is tracked only if it has
// at least minSecretLen (20) bytes, at least two character classes (lower,
// upper, digit, other), at most half its bytes in word-shaped letter runs
// (4 or more letters: lowercase, capitalized or all capitals), and an
// estimated entropy of at least minSecretBits (80) bits. The estimate
// parses the unit LZ-style: a repeat of 4 or more bytes seen before costs
// 8 bits, whatever its length; a literal costs the unit's empirical
// per-character Shannon entropy (Miller–Madow corrected, capped by the
// alphabet its classes span), or 2 bits after the first letter of a
// word-shaped run. So "Summer2024!Summer2024!" (a repeat), a sentence (words),
// "correct7horse9battery3staple" (words) and a PIN are not tracked, while a
// random 20-character token (~100 bits estimated) and a hex or base64 key
// are. The check cannot confirm a guess: a guess confirms only by matching
// a whole unit, which takes at least ~2^80 guesses for a tracked one, and
// nothing smaller than a unit is ever matched, so a unit cannot be found a
// few characters at a time. (A stream is held, not blocked, at the keyed
// hash of a window's first startLen bytes; see hold for why that confirms
// no more than a guess of those bytes would; a unit of a value that encodes
// text begins past its predictable bytes, so no window begins with a JWT's
// header.) A secret that is not tracked is the redactor's job for its own
// tenant only.
//
// The limit: a unit that is itself public but looks random (the jwt.io
// example token, a published certificate) stored by B blocks A's answers
// quoting it whole; being random-looking and public is not something the
// guard can tell.
const (
	minSecretLen  = 20
	minSecretBits = 80
	maxWhole      = 96 // bytes of a value matched as one unit
	minWindow     = 16 // fewer view bytes than this: the form is not tracked
	// minLookahead is the canary matcher's own, kept when no secret needs
	// more: past a canary's 32 view bytes, so that it is found (and the
	// stream holds the text before it) before the startLen-1 view bytes
	// before it settle (see canaryStage.secretHold).
	minLookahead = maxCanaryPattern + startLen + 8
)

// secretTile is one window of one secret: the MAC of a whole unit form's
// squeezed view, its filter key (the top bits of its rolling hash, all the
// filter keeps) and its length, and the same for its first startLen bytes
// (see hold).
type secretTile struct {
	unit uint16 // which of the value's random-enough units (secretUnits)
	mac  [16]byte
	roll uint64 // truncated to filterKeep bits
	n    uint16

	start     [16]byte // MAC of the first startLen view bytes
	startRoll uint64   // their startMix, truncated to filterKeep bits
}

const filterKeep = 26 // bits of a window's rolling hash kept

// startLen is how many view bytes begin a window for hold: the stream holds
// back from a place whose next startLen bytes begin another tenant's window,
// and always its last startLen-1 bytes. Eight random characters of a
// case-folded view are about 40 bits: confirming that a guessed string
// begins some window, from where a stream is cut, costs that many guesses.
const startLen = 8

// secretKeys are the guard's per-process keys for secrets.
type secretKeys struct {
	mac  []byte
	base uint64 // odd multiplier of the rolling hash
	mix  uint64 // odd multiplier of startMix
}

func (k *secretKeys) init(mac []byte, base uint64) {
	k.mac, k.base = mac, base|1
	k.mix = (base*0x9E3779B97F4A7C15)>>1<<1 | 1
}

// startMix is the filter hash of startLen view bytes, read as one
// little-endian word.
func (k *secretKeys) startMix(w uint64) uint64 {
	return (w ^ k.base) * k.mix
}

// roll is the rolling hash of w.
func (k *secretKeys) roll(w []byte) uint64 {
	var h uint64
	for _, c := range w {
		h = h*k.base + uint64(c) + 1
	}
	return h
}

// pow is base^n.
func (k *secretKeys) pow(n int) uint64 {
	p := uint64(1)
	for range n {
		p *= k.base
	}
	return p
}

func (k *secretKeys) sum(h hash.Hash, w []byte) (out [16]byte) {
	h.Reset()
	h.Write(w)
	var full [sha256.Size]byte
	copy(out[:], h.Sum(full[:0]))
	return out
}

// charClasses reports which of lower, upper, digit and other v uses.
func charClasses(v []byte) (classes [4]bool) {
	for _, c := range v {
		switch {
		case 'a' <= c && c <= 'z':
			classes[0] = true
		case 'A' <= c && c <= 'Z':
			classes[1] = true
		case '0' <= c && c <= '9':
			classes[2] = true
		default:
			classes[3] = true
		}
	}
	return classes
}

// wordRuns marks the bytes of v in word-shaped letter runs: 4 or more
// ASCII letters, all lowercase, all capitals, or one capital then
// lowercase.
func wordRuns(v []byte) []bool {
	in := make([]bool, len(v))
	isLetter := func(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
	isUpper := func(c byte) bool { return 'A' <= c && c <= 'Z' }
	for i := 0; i < len(v); {
		if !isLetter(v[i]) {
			i++
			continue
		}
		j := i
		for j < len(v) && isLetter(v[j]) {
			j++
		}
		upper := 0
		for _, c := range v[i+1 : j] {
			if isUpper(c) {
				upper++
			}
		}
		if j-i >= 4 && (upper == 0 || upper == j-i-1 && isUpper(v[i])) {
			for p := i; p < j; p++ {
				in[p] = true
			}
		}
		i = j
	}
	return in
}

// secretBits estimates the entropy of v in bits (see the package comment
// on secrets): an LZ-style parse where a repeat of 4 or more earlier bytes
// costs 8 bits and a literal its per-character entropy, or 2 bits inside a
// word-shaped run past its first letter.
func secretBits(v []byte) float64 {
	if len(v) == 0 {
		return 0
	}
	alphabet := 0
	for i, c := range charClasses(v) {
		if c {
			alphabet += []int{26, 26, 10, 33}[i]
		}
	}
	var counts [256]int
	distinct := 0
	for _, c := range v {
		if counts[c] == 0 {
			distinct++
		}
		counts[c]++
	}
	n := float64(len(v))
	var h float64
	for _, k := range counts {
		if k > 0 {
			p := float64(k) / n
			h -= p * math.Log2(p)
		}
	}
	h += float64(distinct-1) / (2 * n * math.Ln2)
	h = min(h, math.Log2(float64(alphabet)))

	words := wordRuns(v)
	var total float64
	for i := 0; i < len(v); {
		best := 0
		for j := range i { // overlapping repeats count too ("-----")
			l := 0
			for i+l < len(v) && v[j+l] == v[i+l] {
				l++
			}
			best = max(best, l)
		}
		if best >= 4 {
			total += 8
			i += best
			continue
		}
		if words[i] && i > 0 && words[i-1] {
			total += min(h, 2)
		} else {
			total += h
		}
		i++
	}
	return total
}

// randomEnough reports whether a unit is random enough for the guard to
// look for it in other tenants' answers (see the package comment on
// secrets).
func randomEnough(u []byte) bool {
	if len(u) < minSecretLen {
		return false
	}
	kinds := 0
	for _, c := range charClasses(u) {
		if c {
			kinds++
		}
	}
	if kinds < 2 {
		return false // one class: a word, a number
	}
	inWords := 0
	for _, w := range wordRuns(u) {
		if w {
			inWords++
		}
	}
	if 2*inWords > len(u) {
		return false // mostly words: prose, a passphrase, boilerplate
	}
	return secretBits(u) >= minSecretBits
}

// secretUnits returns the units of v that are random enough to track.
// Where v encodes text (see encodedText), a unit must also carry
// minSecretBits of information as decoded, and it begins where its
// information does: its leading bytes that encode predictable text (a JWT's
// header and claims, the base64 of a JSON key file's first members) are
// left out, so no window begins with bytes a tenant can write without
// knowing the secret.
func secretUnits(v []byte) [][]byte {
	costs := encodedText(v)
	keep := func(off, end int) []byte {
		u := v[off:end]
		if !randomEnough(u) {
			return nil
		}
		if costs == nil {
			return u
		}
		c := costs[off:end]
		if unitInfo(u, c) < minSecretBits {
			return nil
		}
		i := 0
		for i < len(u) && (c[i] == 0 || math.IsNaN(c[i]) && !isAlnum(u[i])) {
			i++
		}
		if len(u)-i < minSecretLen {
			return nil
		}
		return u[i:]
	}
	if len(v) <= maxWhole {
		if u := keep(0, len(v)); u != nil {
			return [][]byte{u}
		}
		return nil
	}
	var out [][]byte
	for off := 0; off < len(v); off += maxWhole {
		end := min(off+maxWhole, len(v))
		if end-off < maxWhole {
			off = len(v) - maxWhole // the last unit: the final maxWhole bytes
		}
		if u := keep(off, end); u != nil {
			out = append(out, u)
		}
	}
	return out
}

// Encoded text. A credential is often an encoding of structured text, only
// part of which is random: a JWT is base64url of a JSON header and claims,
// then a signature; a cloud key file is JSON whose first members name the
// account. Base64 or hex of text looks random on its surface, so a unit
// estimated there would be tracked although a tenant can write it from a
// guess of the text (and learn from the verdict whether the guess was
// right). So a run of v that decodes cleanly to text is estimated as the
// text: only its tokens that are themselves hard to guess count
// (randomToken), words, numbers, identifiers ("private_key_id",
// "my-project-123") and punctuation count nothing, and a run
// that again decodes to text is read the same way, up to maxDecodeDepth
// encodings deep. A run that decodes to bytes that are not text (key
// material, a signature) is estimated on its surface, as before.
const (
	maxDecodeDepth = 3
	minEncodedRun  = 8  // shorter runs are not decoded
	minTokenLen    = 12 // shorter tokens of decoded text count nothing
	minTokenBits   = 40
)

// encodedText returns, for each byte of v, the information it carries as
// part of a run that encodes text, or NaN where it is in no such run; nil
// if v has none.
func encodedText(v []byte) []float64 {
	var costs []float64
	encodedRuns(v, func(i, j int) {
		d, ok := decodeText(v[i:j])
		if !ok {
			return
		}
		if costs == nil {
			costs = make([]float64, len(v))
			for k := range costs {
				costs[k] = math.NaN()
			}
		}
		clear(costs[i:j])
		spread(costs[i:j], textInfo(d, maxDecodeDepth-1))
	})
	return costs
}

// textInfo returns the information of each byte of the text d (see
// encodedText).
func textInfo(d []byte, depth int) []float64 {
	out := make([]float64, len(d))
	encodedRuns(d, func(i, j int) {
		run := d[i:j]
		if depth > 0 {
			if dd, ok := decodeText(run); ok {
				spread(out[i:j], textInfo(dd, depth-1))
				return
			}
		}
		if randomToken(run) {
			b := secretBits(run) / float64(len(run))
			for k := i; k < j; k++ {
				out[k] = b
			}
		}
	})
	return out
}

// spread adds the information of each decoded byte to the encoded byte
// it begins in.
func spread(enc, dec []float64) {
	for i, c := range dec {
		enc[i*len(enc)/len(dec)] += c
	}
}

// unitInfo estimates the information of the unit u whose bytes carry c
// (encodedText): its bytes in no encoded text are estimated together, on
// their surface.
func unitInfo(u []byte, c []float64) float64 {
	var rest []byte
	var in float64
	for i, x := range c {
		if math.IsNaN(x) {
			rest = append(rest, u[i])
		} else {
			in += x
		}
	}
	return secretBits(rest) + in
}

// randomToken reports whether a token of decoded text is itself hard to
// guess: long enough, two of lower, upper and digit (an identifier's
// separators do not count), less than half in words, and minTokenBits
// estimated.
func randomToken(t []byte) bool {
	if len(t) < minTokenLen {
		return false
	}
	c := charClasses(t)
	kinds := 0
	for _, k := range c[:3] {
		if k {
			kinds++
		}
	}
	inWords := 0
	for _, w := range wordRuns(t) {
		if w {
			inWords++
		}
	}
	return kinds >= 2 && 2*inWords < len(t) && secretBits(t) >= minTokenBits
}

// encodedRuns calls f for each maximal run of v, of at least minEncodedRun
// bytes, of the characters of hex, base64 and base64url.
func encodedRuns(v []byte, f func(i, j int)) {
	isEnc := func(c byte) bool {
		return isAlnum(c) || c == '+' || c == '/' || c == '-' || c == '_' || c == '='
	}
	for i := 0; i < len(v); {
		if !isEnc(v[i]) {
			i++
			continue
		}
		j := i
		for j < len(v) && isEnc(v[j]) {
			j++
		}
		if j-i >= minEncodedRun {
			f(i, j)
		}
		i = j
	}
}

// decodeText decodes run as hex, base64 or base64url (padded or not) and
// reports whether it decoded cleanly to text: valid UTF-8 without control
// characters but tab and line breaks.
func decodeText(run []byte) ([]byte, bool) {
	s := string(run)
	var d []byte
	var err error
	if len(s)%2 == 0 && strings.Trim(s, "0123456789abcdefABCDEF") == "" {
		d, err = hex.DecodeString(s)
	} else {
		t := strings.TrimRight(s, "=")
		enc := base64.RawStdEncoding
		if strings.ContainsAny(t, "-_") {
			enc = base64.RawURLEncoding
		}
		d, err = enc.DecodeString(t)
	}
	if err != nil || len(d) == 0 || !utf8.Valid(d) {
		return nil, false
	}
	for _, c := range d {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
			return nil, false
		}
	}
	return d, true
}

// tracked reports whether the guard looks for v in other tenants' answers.
func tracked(v []byte) bool {
	return len(secretUnits(v)) > 0
}

// tiles returns the windows of v: each tracked unit's forms, whole.
func (k *secretKeys) tiles(v []byte) []secretTile {
	h := hmac.New(sha256.New, k.mac)
	var out []secretTile
	seen := map[[16]byte]bool{}
	for ui, u := range secretUnits(v) {
		for _, e := range textnorm.Encodings(string(u)) {
			_, q := textnorm.Views(e.Text)
			if len(q) < minWindow || len(q) > math.MaxUint16 {
				continue
			}
			w := []byte(q)
			t := secretTile{unit: uint16(min(ui, math.MaxUint16)), mac: k.sum(h, w), roll: k.roll(w) >> (64 - filterKeep), n: uint16(len(w)),
				start: k.sum(h, w[:startLen]), startRoll: k.startMix(binary.LittleEndian.Uint64(w)) >> (64 - filterKeep)}
			if !seen[t.mac] {
				seen[t.mac] = true
				out = append(out, t)
			}
		}
	}
	return out
}

// secretSet is every tenant's windows, indexed. It is immutable.
type secretSet struct {
	keys   *secretKeys
	owners map[[16]byte][]secretRef
	filter []uint64
	lens   []int       // the windows' lengths
	tops   []uint64    // base^(n-1) for each of lens
	ids    []tenant.ID // tenants with windows

	// The windows' beginnings (see hold): by MAC, and a filter over their
	// startMix.
	starts      map[[16]byte][]windowStart
	startFilter []uint64
}

// windowStart is one tenant's windows that begin with some startLen bytes:
// the owner and the longest of them.
type windowStart struct {
	owner tenant.ID
	n     int
}

func newSecretSet(keys *secretKeys, byTenant map[tenant.ID]map[string][]secretTile) *secretSet {
	ss := &secretSet{keys: keys, owners: map[[16]byte][]secretRef{}}
	var total int
	for _, byName := range byTenant {
		for _, ts := range byName {
			total += len(ts)
		}
	}
	if total == 0 {
		return ss
	}
	lg := min(filterKeep, max(12, bits.Len(uint(total*256))))
	ss.filter = make([]uint64, (1<<lg)/64)
	ss.startFilter = make([]uint64, (1<<lg)/64)
	ss.starts = map[[16]byte][]windowStart{}
	for id, byName := range byTenant {
		ss.ids = append(ss.ids, id)
		for name, ts := range byName {
			for _, t := range ts {
				ref := secretRef{owner: id, name: name, unit: t.unit}
				if !slices.Contains(ss.owners[t.mac], ref) {
					ss.owners[t.mac] = append(ss.owners[t.mac], ref)
				}
				b := t.roll >> (filterKeep - lg)
				ss.filter[b>>6] |= 1 << (b & 63)
				b = t.startRoll >> (filterKeep - lg)
				ss.startFilter[b>>6] |= 1 << (b & 63)
				ws := ss.starts[t.start]
				if i := slices.IndexFunc(ws, func(w windowStart) bool { return w.owner == id }); i >= 0 {
					ws[i].n = max(ws[i].n, int(t.n))
				} else {
					ss.starts[t.start] = append(ws, windowStart{owner: id, n: int(t.n)})
				}
				if !slices.Contains(ss.lens, int(t.n)) {
					ss.lens = append(ss.lens, int(t.n))
				}
			}
		}
	}
	slices.Sort(ss.lens)
	for _, n := range ss.lens {
		ss.tops = append(ss.tops, keys.pow(n-1))
	}
	return ss
}

// lookahead is how many view bytes the scanner must hold after a position
// for find to see every window starting there.
func (ss *secretSet) lookahead() int {
	if ss == nil || len(ss.lens) == 0 {
		return minLookahead
	}
	return max(minLookahead, ss.lens[len(ss.lens)-1])
}

// others reports whether the set holds secrets of a tenant other than self.
func (ss *secretSet) others(self tenant.ID) bool {
	return ss != nil && slices.ContainsFunc(ss.ids, func(id tenant.ID) bool { return id != self })
}

// secretRef names one unit of one tenant's secret (a value over 96 bytes
// has several, see secretUnits): what a request's inputs may carry (see
// Inputs). An input carrying one unit carries only that one: a public half
// of a long secret exempts nothing of the rest.
type secretRef struct {
	owner tenant.ID
	name  string
	unit  uint16
}

// find appends to hit the secrets of owners other than self among the windows of the
// squeezed view buf that end at positions [from, to): the Scanner's Visit
// gives each byte once, as it arrives, so each window is looked at once,
// as soon as it is whole.
func (ss *secretSet) find(buf []byte, from, to int, self tenant.ID, hit []secretRef) []secretRef {
	k := ss.keys
	lg := uint(bits.Len(uint(len(ss.filter)*64)) - 1)
	var h hash.Hash
	for li, n := range ss.lens {
		start := max(0, from-n+1)
		end := min(to, len(buf)) - n + 1 // windows start in [start, end)
		if start >= end {
			continue
		}
		top := ss.tops[li]
		r := k.roll(buf[start : start+n])
		for i := start; ; i++ {
			b := (r >> (64 - filterKeep)) >> (filterKeep - lg)
			if ss.filter[b>>6]&(1<<(b&63)) != 0 {
				if h == nil {
					h = hmac.New(sha256.New, k.mac)
				}
				for _, r := range ss.owners[k.sum(h, buf[i:i+n])] {
					if r.owner != self && !slices.Contains(hit, r) {
						hit = append(hit, r)
					}
				}
			}
			if i+1 >= end {
				break
			}
			r = (r-(uint64(buf[i])+1)*top)*k.base + uint64(buf[i+n]) + 1
		}
	}
	return hit
}

// hold returns the first index, at or after from, of the squeezed view buf
// that a stream to self must hold back from so that no byte of a whole form
// of another tenant's secret is sent before find has seen it whole: the
// first position whose next startLen bytes begin such a window that is not
// all there yet, or that reaches cut (where an earlier pass may remove text
// later, joining what is on either side: until then the window cannot be
// seen whole), and, with tail, the last startLen-1 bytes (a window's
// beginning is not known before its startLen-th byte). It returns len(buf)
// when nothing needs holding.
//
// Why this is no oracle. The tail held is the same for every text, tenant
// and state (the caller holds it whether or not any other tenant has a
// secret tracked). A beginning held is found by a keyed hash of startLen view bytes
// (about 40 bits when they are random), never by shorter ones, so from
// where its stream is cut a tenant can learn that a string begins another
// tenant's window only by producing those startLen bytes whole: as costly
// as guessing them, and it learns nothing more of the window, since bytes
// past the startLen-th never change what is held.
func (ss *secretSet) hold(buf []byte, from, cut int, self tenant.ID, tail bool) int {
	n := len(buf)
	end := n
	if tail {
		end = max(from, n-(startLen-1))
		// A window begun before a break ends before it: it is whole.
		for j := n - 1; j >= end; j-- {
			if buf[j] == 0 {
				end = j + 1
				break
			}
		}
	}
	if ss == nil || len(ss.startFilter) == 0 {
		return end
	}
	k := ss.keys
	lg := uint(bits.Len(uint(len(ss.startFilter)*64)) - 1)
	var h hash.Hash
	for i := from; i < end && i+startLen <= n; i++ {
		b := k.startMix(binary.LittleEndian.Uint64(buf[i:])) >> (64 - lg)
		if ss.startFilter[b>>6]&(1<<(b&63)) == 0 {
			continue
		}
		if h == nil {
			h = hmac.New(sha256.New, k.mac)
		}
		for _, w := range ss.starts[k.sum(h, buf[i:i+startLen])] {
			if w.owner != self && (n-i < w.n || i+w.n > cut) {
				return i
			}
		}
	}
	return end
}

// newSecretKeys makes the per-process keys from 40 random bytes.
func newSecretKeys(random []byte) *secretKeys {
	k := &secretKeys{}
	k.init(random[:32], binary.LittleEndian.Uint64(random[32:40]))
	return k
}
