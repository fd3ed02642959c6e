package textnorm

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// Minimum pattern lengths, in view bytes. A pattern in the squeezed view
// must have at least MinSqueezed letters and digits: a random value then has
// about 5 bits per character left after case folding (60 bits), and ordinary
// text does not hold it by chance. Shorter values are searched only in the
// exact view, only in their exact forms (not as encoding interiors), with at
// least MinExact bytes. So base64 is matched ignoring case (its folded
// interior of 12 or more characters is still specific enough), and a value
// shorter than about 10 bytes is found inside longer base64 or base32 data
// only where it is encoded on its own.
const (
	MinSqueezed = 12
	MinExact    = 8
	prefixLen   = 8 // bytes the prefilter hashes
	maxTrail    = 8
)

// Options tunes a Matcher.
type Options struct {
	// MaxPattern, if positive, cuts squeezed patterns to their first
	// MaxPattern bytes. A detector (the guard) needs no more to be sure, and
	// a stream holds back less; a redactor must cut the whole form and
	// leaves it 0.
	MaxPattern int
	// Lookahead is the least number of view bytes a Scanner holds after a
	// position before searching it, for a Visit function that reads
	// windows of that length.
	Lookahead int
	// Early makes a Scanner report a match as soon as its text is there,
	// before the text around it is settled (in the next Advance whose
	// segment reaches it), so a detector can stop a stream at once.
	Early bool
}

// A Match is one place a value was found: bytes [Start, End) of the text.
type Match struct {
	Start, End int
	Value      int // index of the value in the list given to NewMatcher
	Form       Form

	trail   string // bytes to take into the match if they follow it
	pending bool   // trail not checked yet: the text may not have reached it
	bare    int    // End before the trail was taken in
}

// Matcher finds a fixed list of values, in all their Encodings and in both
// views of a text. It is immutable and safe for concurrent use.
type Matcher struct {
	exact, squeezed patternSet
	lookahead       int
	early           bool
}

type pattern struct {
	text  string
	trail string
	value int32
	form  Form
	// eaten is the set (bit k) of the numbers k of leading bytes an escape
	// in the text before the form may have swallowed (see eatable): the
	// form is also matched without them.
	eaten uint8
}

// patternSet is the patterns of one view with its prefilter: a bitmap over
// a hash of each pattern's first prefixLen bytes, so that most positions of
// a text cost one load, one multiplication and one bit test.
//
// The set probes only every stride-th position of a view: a pattern of at
// least minLen bytes has a probed position among its first stride ones, and
// the index holds each pattern's prefixLen-grams at offsets 0 to stride-1.
type patternSet struct {
	pats     []pattern
	byPrefix map[uint64][]gram
	filter   []uint64
	shift    uint
	maxLen   int
	stride   int
}

// gram is a pattern whose prefixLen bytes at offset off hash to a key.
type gram struct{ pat, off int32 }

const hashMul = 0x9E3779B97F4A7C15

// NewMatcher returns a Matcher for values. Values too short for either view
// are never found.
func NewMatcher(values []string, opts Options) *Matcher {
	cs := make([]*Compiled, len(values))
	for i, v := range values {
		cs[i] = Compile(v, opts.MaxPattern)
	}
	return NewMatcherOf(cs, opts)
}

// Compiled is one value's patterns, computed once by Compile and shared by
// the Matchers NewMatcherOf builds: computing every form is most of the cost
// of a Matcher. It is immutable.
type Compiled struct {
	exact, squeezed []pattern
}

// Compile computes v's patterns, squeezed ones cut to maxPattern bytes if
// it is positive (see Options.MaxPattern).
func Compile(v string, maxPattern int) *Compiled {
	c := &Compiled{}
	seen := map[string]bool{}
	add := func(list *[]pattern, p pattern) {
		if strings.IndexByte(p.text, breakByte) >= 0 || seen[p.text] {
			return
		}
		seen[p.text] = true
		*list = append(*list, p)
	}
	encs := Encodings(v)
	for i, e := range withEatenStarts(encs) {
		d, q := Views(e.Text)
		switch {
		case len(q) >= MinSqueezed && i >= len(encs):
			// A squeezed form's eaten starts are found by probing its own
			// grams (see probe), not by patterns of their own.
		case len(q) >= MinSqueezed:
			p := pattern{text: q, form: e.Form, eaten: eatable(e.Text)}
			if maxPattern > 0 && len(q) > maxPattern {
				p.text = q[:maxPattern]
			} else {
				p.trail = trail(e.Text)
			}
			add(&c.squeezed, p)
		case !e.Interior && len(d) >= MinExact:
			add(&c.exact, pattern{text: d, form: e.Form})
		}
	}
	return c
}

// NewMatcherOf returns a Matcher for the compiled values: a Match's Value
// is an index into cs. Options.MaxPattern is Compile's business here.
func NewMatcherOf(cs []*Compiled, opts Options) *Matcher {
	m := &Matcher{lookahead: opts.Lookahead, early: opts.Early}
	for vi, c := range cs {
		for _, p := range c.exact {
			p.value = int32(vi)
			m.exact.pats = append(m.exact.pats, p)
		}
		for _, p := range c.squeezed {
			p.value = int32(vi)
			m.squeezed.pats = append(m.squeezed.pats, p)
		}
	}
	m.exact.index()
	m.squeezed.index()
	return m
}

// withEatenStarts adds, to each form that starts with characters an escape
// could swallow together with one byte written before it ("ab…" after '%',
// "n…", "x41…" or "u0041…" after a backslash), the form without them: the
// views decode that escape, and the form's first characters are gone from
// them. The same at a form's end (a value ending in "%4" before a "1") is not
// covered: it needs the value itself to end in a partial escape.
func withEatenStarts(es []Encoded) []Encoded {
	out := es
	for _, e := range es {
		for k := 1; k <= maxEaten; k++ {
			if eatable(e.Text)&(1<<k) != 0 {
				out = append(out, Encoded{Form: e.Form, Text: e.Text[k:], Interior: e.Interior})
			}
		}
	}
	return out
}

// maxEaten is the most leading characters of a form an escape can swallow.
const maxEaten = 5

// eatable returns the set (bit k) of the numbers k of leading characters
// of t that an escape begun before it can swallow. Those characters are
// ASCII letters and digits, one view byte each, so the squeezed form loses
// exactly k bytes too.
func eatable(t string) uint8 {
	var set uint8
	// An escape begun before the form ("%", "%4", `\u0`, …) ends in its
	// first one to four hex digits.
	for k := 1; k <= 4 && k <= len(t) && isHex(t[k-1]); k++ {
		set |= 1 << k
	}
	if len(t) >= 1 && strings.IndexByte("nrt", t[0]) >= 0 {
		set |= 1 << 1 // \n and the other one-letter escapes (b and f are hex)
	}
	if len(t) >= 3 && (t[0] == 'x' || t[0] == 'X') && isHex(t[1]) && isHex(t[2]) {
		set |= 1 << 3 // \xXX
	}
	if len(t) >= 5 && (t[0] == 'u' || t[0] == 'U') && isHex(t[1]) && isHex(t[2]) && isHex(t[3]) && isHex(t[4]) {
		set |= 1 << 5 // \uXXXX
	}
	return set
}

func isHex(c byte) bool {
	_, ok := unhex(c)
	return ok
}

// trail returns the ASCII punctuation that ends s (base64 padding, say), to
// be cut with a match of the squeezed form that leaves it out.
func trail(s string) string {
	i := len(s)
	for i > 0 && len(s)-i < maxTrail {
		c := s[i-1]
		if c >= utf8.RuneSelf || asciiSqueezed[c] != "" || unitStart(c) {
			break
		}
		i--
	}
	return s[i:]
}

func (ps *patternSet) index() {
	ps.stride = 1
	if len(ps.pats) == 0 {
		return
	}
	// Longest first, so a position reports its longest match first.
	slices.SortStableFunc(ps.pats, func(a, b pattern) int { return len(b.text) - len(a.text) })
	// The shortest text matched, counting the forms without their eaten
	// starts (no shorter than MinSqueezed, the least those are cut to).
	minLen := len(ps.pats[len(ps.pats)-1].text)
	for _, p := range ps.pats {
		if p.eaten != 0 {
			minLen = min(minLen, max(MinSqueezed, len(p.text)-(bits.Len8(p.eaten)-1)))
		}
	}
	ps.stride = max(1, minLen-prefixLen+1)
	n := max(1<<10, min(1<<22, len(ps.pats)*(ps.stride+2)*16))
	lg := bits.Len(uint(n - 1))
	ps.filter = make([]uint64, (1<<lg)/64)
	ps.shift = uint(64 - lg)
	ps.byPrefix = make(map[uint64][]gram, len(ps.pats)*ps.stride)
	for i, p := range ps.pats {
		span := ps.stride
		if p.eaten != 0 {
			span += bits.Len8(p.eaten) - 1
		}
		for off := range min(span, len(p.text)-prefixLen+1) {
			k := binary.LittleEndian.Uint64([]byte(p.text[off : off+prefixLen]))
			ps.byPrefix[k] = append(ps.byPrefix[k], gram{int32(i), int32(off)})
			h := (k * hashMul) >> ps.shift
			ps.filter[h>>6] |= 1 << (h & 63)
		}
		ps.maxLen = max(ps.maxLen, len(p.text))
	}
}

// Empty reports whether m finds nothing.
func (m *Matcher) Empty() bool {
	return m == nil || len(m.exact.pats)+len(m.squeezed.pats) == 0
}

// Holdback is the most view bytes a Scanner holds back. Each view byte comes
// from at most maxUnit+maxGap bytes of text, which bounds the text held.
func (m *Matcher) Holdback() int {
	if m == nil {
		return 0
	}
	return max(m.exact.maxLen, m.squeezed.maxLen, m.lookahead) - 1
}

var scanners = sync.Pool{New: func() any { return new(Scanner) }}

// Find returns every match in text, sorted by Start. Matches may overlap.
func (m *Matcher) Find(text string) []Match {
	if m.Empty() {
		return nil
	}
	s := scanners.Get().(*Scanner)
	s.reset(m)
	// In pieces, so the views stay in the processor's cache.
	const piece = 4 << 10
	var found []Match
	for i := 0; i < len(text) || i == 0; i += piece {
		base := s.base
		_, ms := s.advance(text[i:min(len(text), i+piece)], i+piece >= len(text), false)
		for _, x := range ms {
			x.Start += base
			x.End += base
			found = append(found, x)
		}
	}
	s.m = nil
	scanners.Put(s)
	return found
}

// Scanner finds a Matcher's values in a text that arrives in pieces. It is
// not safe for concurrent use.
type Scanner struct {
	m    *Matcher
	base int    // offset in the text of orig[0]
	orig []byte // the text not settled yet
	proc int    // offset up to which units went into the views

	exact, squeezed view
	found           []Match

	// Visit, if set, is called with the squeezed view after each piece is
	// taken in: bytes [from, to) of buf are new (to is len(buf)), and buf
	// still holds the Matcher's Lookahead-1 bytes before from unless a break
	// or the start of the text comes first. So a caller that looks at every
	// window of up to Lookahead bytes ending in [from, to) sees each window
	// once, as soon as its last byte is there, before the text around it
	// is settled. src gives each byte's offset in the text.
	Visit func(buf []byte, src []int32, from, to int)
}

// Scanner returns a new Scanner for m. Release returns its buffers for
// reuse.
func (m *Matcher) Scanner() *Scanner {
	s := scanners.Get().(*Scanner)
	s.reset(m)
	return s
}

// Release gives the Scanner's buffers back for another Scanner to use. The
// Scanner must not be used afterwards.
func (s *Scanner) Release() {
	if s == nil || cap(s.orig) > 1<<20 {
		return
	}
	s.m, s.Visit = nil, nil
	scanners.Put(s)
}

func (s *Scanner) reset(m *Matcher) {
	s.m, s.base, s.proc, s.Visit = m, 0, 0, nil
	s.orig, s.found = s.orig[:0], s.found[:0]
	s.exact.reset()
	s.squeezed.reset()
}

// Advance takes the next piece of the text (final: the last) and returns
// the text now settled, which no later piece can change, and the matches
// inside it, offsets relative to that segment, sorted by Start. With final
// the whole rest is settled. With Options.Early, Pending reports matches in
// the part not settled yet.
//
// What is held back: the text behind the last Holdback view bytes, a unit
// not complete yet (an escape or a UTF-8 sequence cut by the piece's end),
// and a match that a later piece may lengthen (padding).
func (s *Scanner) Advance(piece string, final bool) (string, []Match) {
	if s.m == nil || s.m.Empty() && s.Visit == nil {
		return piece, nil
	}
	return s.advance(piece, final, true)
}

func (s *Scanner) advance(piece string, final, wantText bool) (string, []Match) {
	s.orig = append(s.orig, piece...)
	s.build(final)
	if len(s.m.exact.pats) > 0 {
		s.search(&s.exact, &s.m.exact, final, nil)
	}
	s.search(&s.squeezed, &s.m.squeezed, final, s.Visit)
	b := s.settle(final)
	n := b - s.base
	var seg string
	if wantText {
		seg = string(s.orig[:n])
	}
	var out []Match
	keep := s.found[:0]
	for _, m := range s.found {
		if m.End <= b {
			m.Start -= s.base
			m.End -= s.base
			out = append(out, m)
		} else {
			keep = append(keep, m)
		}
	}
	s.found = keep
	// By start, the longest first, whichever search found them first.
	slices.SortStableFunc(out, func(a, b Match) int { return cmp.Or(a.Start-b.Start, b.End-a.End) })
	s.orig = s.orig[:copy(s.orig, s.orig[n:])]
	s.base = b
	s.exact.drop()
	s.squeezed.drop()
	return seg, out
}

// build adds to the views the units of the text not in them yet. Most text
// is ASCII without escapes, whose bytes each give one byte, none or "rn" in
// each view: those runs go through the tight loops exactASCII and
// squeezeASCII, written straight into the views' buffers, and only the
// other units (escapes, non-ASCII runes) through unitViews and view.add.
func (s *Scanner) build(final bool) {
	if len(s.m.exact.pats) == 0 {
		s.buildSqueezed(final)
		return
	}
	d, q := &s.exact, &s.squeezed
	end := s.base + len(s.orig)
	p, base, orig := s.proc, s.base, s.orig
	dbuf, dsrc, dn := grown(d.buf, d.src, 2*(end-p)+2)
	qbuf, qsrc, qn := grown(q.buf, q.src, 2*(end-p)+2)
	dLast, dBroken := d.lastOut, d.broken
	qGap := gapOf(q, p)
	for p < end {
		// Cut to the room of both views, so that both loops stop at the
		// same byte: the one that needs the slow path.
		in := fastRoom(fastRoom(orig[p-base:end-base], dbuf, dsrc, dn), qbuf, qsrc, qn)
		var r int
		r, dn = exactASCII(in, p, dbuf, dsrc, dn)
		_, qn, qGap = squeezeASCII(q, in[:r], p, qbuf, qsrc, qn, qGap)
		if r > 0 {
			p += r
			dLast, dBroken = p, false
			if p >= end {
				break
			}
		}
		ds, qs, u := unitViews(orig[p-base:], final)
		if u == 0 {
			break
		}
		start := p
		p += u
		d.buf, d.src, d.lastOut, d.broken = dbuf[:dn], dsrc[:dn], dLast, dBroken
		d.add(ds, start, p)
		q.buf, q.src = qbuf[:qn], qsrc[:qn]
		setGap(q, start, qGap)
		q.add(qs, start, p)
		dbuf, dsrc, dn = grown(d.buf, d.src, 2*(end-p)+2)
		qbuf, qsrc, qn = grown(q.buf, q.src, 2*(end-p)+2)
		dLast, dBroken = d.lastOut, d.broken
		qGap = gapOf(q, p)
	}
	d.buf, d.src, d.lastOut, d.broken = dbuf[:dn], dsrc[:dn], dLast, dBroken
	q.buf, q.src = qbuf[:qn], qsrc[:qn]
	setGap(q, p, qGap)
	s.proc = p
}

// buildSqueezed is build for the squeezed view alone.
func (s *Scanner) buildSqueezed(final bool) {
	v := &s.squeezed
	end := s.base + len(s.orig)
	p, base, orig := s.proc, s.base, s.orig
	buf, src, n := grown(v.buf, v.src, 2*(end-p)+2)
	gap := gapOf(v, p)
	for p < end {
		var j int
		j, n, gap = squeezeASCII(v, orig[p-base:end-base], p, buf, src, n, gap)
		p += j
		if p >= end {
			break
		}
		_, q, u := unitViews(orig[p-base:], final)
		if u == 0 {
			break
		}
		start := p
		p += u
		v.buf, v.src = buf[:n], src[:n]
		setGap(v, start, gap)
		v.add(q, start, p)
		buf, src, n = grown(v.buf, v.src, 2*(end-p)+2)
		gap = gapOf(v, p)
	}
	v.buf, v.src = buf[:n], src[:n]
	setGap(v, p, gap)
	s.proc = p
}

// grown returns buf and src with room for n more bytes, resliced to their
// capacity, and their length before. Each text byte gives at most two view
// bytes in the fast paths ("rn"); the slow path grows the buffers itself.
func grown(buf []byte, src []int32, n int) ([]byte, []int32, int) {
	l := len(buf)
	buf, src = slices.Grow(buf, n), slices.Grow(src, n)
	return buf[:cap(buf)], src[:cap(src)], l
}

// The fast paths keep a view's lastOut and broken (see view.add) as one
// gap: the bytes of text since the last one that wrote to the view, or
// brokenGap, far below zero, once a break is written.
const brokenGap = -1 << 40

// gapOf returns v's gap at text offset p.
func gapOf(v *view, p int) int {
	if v.broken {
		return brokenGap
	}
	return p - v.lastOut
}

// setGap sets v's lastOut and broken from its gap at text offset p. A
// broken view's lastOut was set when the break was written.
func setGap(v *view, p, gap int) {
	if gap < 0 {
		v.broken = true
		return
	}
	v.lastOut, v.broken = p-gap, false
}

// fastRoom cuts in to the bytes whose view fits in buf and src from
// index n: two view bytes each, and one more.
func fastRoom(in []byte, buf []byte, src []int32, n int) []byte {
	room := (min(len(buf), len(src)) - n - 1) / 2
	return in[:max(0, min(len(in), room))]
}

// exactASCII writes into buf and src, from index n, the exact view of the
// leading bytes of in that are units of their own with an ASCII skeleton,
// in[j] being at text offset p+j. It returns how many bytes of in it took
// and the new n, and stops early only at a byte that needs the slow path or
// when buf or src is full.
//
// Every byte writes two view bytes, of which it keeps asciiExact's count:
// the loop does not branch on the "rn" of m.
func exactASCII(in []byte, p int, buf []byte, src []int32, n int) (int, int) {
	in = fastRoom(in, buf, src, n)
	at := int32(p)
	for j, c := range in {
		e := asciiExact[c]
		if e == 0 {
			return j, n
		}
		buf[n+1], buf[n] = 'n', byte(e)
		src[n+1], src[n] = at, at
		n += int(e >> 8)
		at++
	}
	return len(in), n
}

// squeezeASCII is exactASCII for the squeezed view, which it breaks as
// view.add does: it takes the gap before in and returns the gap after
// the bytes it took.
//
// A separator is written too and then overwritten, so the loop branches
// neither on whether a byte is kept nor on the "rn" of m.
func squeezeASCII(v *view, in []byte, p int, buf []byte, src []int32, n, gap int) (int, int, int) {
	in = fastRoom(in, buf, src, n)
	at := int32(p)
	for j, c := range in {
		e := asciiSqueezedView[c]
		if e == 0 {
			return j, n, gap
		}
		buf[n+1], buf[n] = 'n', byte(e)
		src[n+1], src[n] = at, at
		k := int(e >> 8)
		n += k
		// 0 after a byte kept (k is 1 or 2), one more after a separator.
		gap = (gap + 1) &^ -((k + 1) >> 1)
		if gap > maxGap {
			buf[n], src[n] = breakByte, at
			n++
			v.lastBreak = n
			v.lastOut = p + j + 1 - gap
			gap = brokenGap
		}
		at++
	}
	return len(in), n, gap
}

// asciiExact and asciiSqueezedView give, for each byte that is a unit of
// its own with an ASCII skeleton, how its skeleton goes into the exact and
// the squeezed view: the low byte is the skeleton's first byte (or 1 when
// it is empty), the high byte the skeleton's length, and when that is 2 the
// second byte is 'n' (the "rn" of m). A byte that needs the slow path (an
// escape starter, a non-ASCII byte, any other skeleton) has 0.
var asciiExact, asciiSqueezedView [256]uint16

// initASCIIClass is called by init once asciiSkeleton and asciiSqueezed
// are set.
func initASCIIClass() {
	enc := func(s string) (uint16, bool) {
		switch {
		case s == "":
			return 1, true
		case len(s) == 1 && s[0] != 0:
			return uint16(s[0]) | 1<<8, true
		case len(s) == 2 && s[0] != 0 && s[1] == 'n':
			return uint16(s[0]) | 2<<8, true
		}
		return 0, false
	}
	for c := range utf8.RuneSelf {
		if unitStart(byte(c)) {
			continue
		}
		d, dok := enc(asciiSkeleton[c])
		q, qok := enc(asciiSqueezed[c])
		if dok && qok && d != 1 {
			asciiExact[c], asciiSqueezedView[c] = d, q
		}
	}
}

func (s *Scanner) search(v *view, ps *patternSet, final bool, visit func([]byte, []int32, int, int)) {
	la := max(ps.maxLen, s.m.lookahead)
	limit := max(len(v.buf)-(la-1), v.lastBreak)
	if final {
		limit = len(v.buf)
	}
	from := v.scanned
	if s.m.early && !final && len(ps.pats) > 0 {
		s.probe(v, ps, max(limit, from), len(v.buf)-prefixLen+1, final, true)
	}
	if limit > from {
		s.search1(v, ps, from, limit, final)
	}
	if visit != nil && v.visited < len(v.buf) {
		visit(v.buf, v.src, v.visited, len(v.buf))
		v.visited = len(v.buf)
	}
}

// search1 probes [from, limit) and moves scanned and settled on.
func (s *Scanner) search1(v *view, ps *patternSet, from, limit int, final bool) {
	if len(ps.pats) > 0 {
		s.probe(v, ps, from, min(limit, len(v.buf)-prefixLen+1), final, false)
	}
	v.scanned = limit
	// Every match starting before settled is found: its probed position is
	// before limit, or it ends before a break, or the text ended.
	v.settled = max(limit-(ps.stride-1), v.lastBreak, v.settled)
	if final {
		v.settled = len(v.buf)
	}
}

// probe looks for patterns at the probed positions in [from, end). With
// early set, it skips matches it has found already.
func (s *Scanner) probe(v *view, ps *patternSet, from, end int, final, early bool) {
	buf := v.buf
	st := ps.stride
	i := from
	if r := (v.dropped + i) % st; r != 0 {
		i += st - r
	}
	for ; i < end; i += st {
		k := binary.LittleEndian.Uint64(buf[i:])
		h := (k * hashMul) >> ps.shift
		if ps.filter[h>>6]&(1<<(h&63)) == 0 {
			continue
		}
		for _, g := range ps.byPrefix[k] {
			p := &ps.pats[g.pat]
			at := i - int(g.off)
			if int(g.off) < ps.stride && at >= 0 && len(buf)-at >= len(p.text) && string(buf[at:at+len(p.text)]) == p.text {
				s.addMatch(v, at, p, p.text, final)
			}
			// The form without its first e bytes, swallowed by an escape:
			// found at the probe among its own first stride positions.
			for e := 1; p.eaten>>e != 0; e++ {
				off := int(g.off) - e
				if p.eaten&(1<<e) == 0 || off < 0 || off >= ps.stride || len(p.text)-e < MinSqueezed {
					continue
				}
				rest := p.text[e:]
				if at := i - off; at >= 0 && len(buf)-at >= len(rest) && string(buf[at:at+len(rest)]) == rest {
					s.addMatch(v, at, p, rest, final)
				}
			}
		}
	}
}

func (s *Scanner) addMatch(v *view, i int, p *pattern, text string, final bool) {
	last := int(v.src[i+len(text)-1])
	end := last + unitEnd(s.orig[last-s.base:])
	m := Match{Start: int(v.src[i]), End: end, Value: int(p.value), Form: p.form, trail: p.trail, bare: end}
	if m.trail != "" {
		s.resolveTrail(&m, final)
	}
	if s.m.early && slices.ContainsFunc(s.found, func(f Match) bool {
		// An early search sees a place again as more text arrives.
		return f.Start == m.Start && f.bare == m.bare && f.Value == m.Value && f.Form == m.Form
	}) {
		return
	}
	s.found = append(s.found, m)
}

func (s *Scanner) resolveTrail(m *Match, final bool) {
	rest := s.orig[m.End-s.base:]
	if len(rest) < len(m.trail) && !final {
		m.pending = true
		return
	}
	if bytes.HasPrefix(rest, []byte(m.trail)) {
		m.End += len(m.trail)
	}
	m.trail, m.pending = "", false
}

// Pending returns the matches found that Advance has not returned yet,
// offsets relative to the next segment. The caller must not keep it.
func (s *Scanner) Pending() []Match { return s.found }

// settle returns the offset before which the text is settled.
func (s *Scanner) settle(final bool) int {
	b := s.proc
	for _, v := range []*view{&s.exact, &s.squeezed} {
		if v.settled < len(v.buf) {
			b = min(b, int(v.src[v.settled]))
		}
	}
	for i := range s.found {
		if s.found[i].pending {
			s.resolveTrail(&s.found[i], final)
		}
	}
	for changed := true; changed; {
		changed = false
		for _, m := range s.found {
			if m.Start < b && (m.End > b || m.pending) {
				b, changed = m.Start, true
			}
		}
	}
	return b
}
