package textnorm

import (
	"math"
	"slices"
)

// PrefixMax is the longest beginning of a pattern a Prefixes keeps. A
// stream position whose next PrefixMax view bytes begin a pattern is held
// until the whole pattern could be there; with fewer bytes left in the view,
// it is held while they begin one.
const PrefixMax = 8

// Prefixes is the set of the beginnings (1 to PrefixMax view bytes) of
// some values' patterns, in both views, counting the squeezed forms without
// the leading characters an escape may swallow (see eatable). A Scanner
// uses it (Free) to tell which of the text it has not settled yet can still
// become the start of a match of those values, so a stream need hold back
// only that. It is immutable.
type Prefixes struct {
	exact, squeezed prefixView
}

// prefixView is the beginnings of one view's patterns, each packed into a
// uint64 (byte j at bits 8j: no view byte of a pattern is 0, so the packing
// is unique), sorted, and the bitmap of their first bytes.
type prefixView struct {
	keys []uint64
	// whole is the beginnings at which a match is held until it could be
	// whole (maxLen-1 view bytes later): for NewPrefixes those of
	// PrefixMax bytes.
	whole  []uint64
	first  [4]uint64
	lens   uint16 // bit n: some key of whole has n bytes
	maxLen int
}

// NewPrefixes returns the beginnings of the patterns of cs.
func NewPrefixes(cs []*Compiled) *Prefixes {
	p := &Prefixes{}
	for _, c := range cs {
		for _, pat := range c.exact {
			p.exact.add(pat.text)
		}
		for _, pat := range c.squeezed {
			p.squeezed.add(pat.text)
			for e := 1; pat.eaten>>e != 0; e++ {
				if pat.eaten&(1<<e) != 0 && len(pat.text)-e >= MinSqueezed {
					p.squeezed.add(pat.text[e:])
				}
			}
		}
	}
	for _, v := range []*prefixView{&p.exact, &p.squeezed} {
		v.sort()
		for _, k := range v.keys {
			if k>>(8*(PrefixMax-1)) != 0 {
				v.whole = append(v.whole, k)
				v.lens |= 1 << PrefixMax
			}
		}
	}
	return p
}

func (v *prefixView) sort() {
	slices.Sort(v.keys)
	v.keys = slices.Clip(slices.Compact(v.keys))
}

// CommonPrefixes returns the beginnings that the patterns of every one of
// cs have (with cs compiled from values that share a public structure, the
// beginnings that structure fixes), with those of at least minWhole bytes
// that no longer common one extends held until a match could be whole.
func CommonPrefixes(cs []*Compiled, minWhole int) *Prefixes {
	p := &Prefixes{}
	for i, c := range cs {
		one := NewPrefixes([]*Compiled{c})
		if i == 0 {
			*p = *one
			p.exact.whole, p.squeezed.whole = nil, nil
			continue
		}
		for _, pv := range []struct{ to, from *prefixView }{{&p.exact, &one.exact}, {&p.squeezed, &one.squeezed}} {
			pv.to.keys = slices.DeleteFunc(pv.to.keys, func(k uint64) bool {
				_, ok := slices.BinarySearch(pv.from.keys, k)
				return !ok
			})
			pv.to.maxLen = max(pv.to.maxLen, pv.from.maxLen)
		}
	}
	for _, v := range []*prefixView{&p.exact, &p.squeezed} {
		v.first = [4]uint64{}
		extended := map[uint64]bool{}
		for _, k := range v.keys {
			v.first[byte(k)>>6] |= 1 << (byte(k) & 63)
			n := keyLen(k)
			if n > 1 {
				extended[k&(1<<(8*(n-1))-1)] = true
			}
		}
		for _, k := range v.keys {
			if keyLen(k) >= minWhole && !extended[k] {
				v.whole = append(v.whole, k)
				v.lens |= 1 << keyLen(k)
			}
		}
		slices.Sort(v.whole)
	}
	return p
}

// keyLen returns the number of bytes packed in k.
func keyLen(k uint64) int {
	n := 0
	for ; k != 0; k >>= 8 {
		n++
	}
	return n
}

// Size returns the number of beginnings kept (8 bytes each).
func (p *Prefixes) Size() int {
	if p == nil {
		return 0
	}
	return len(p.exact.keys) + len(p.squeezed.keys)
}

func (v *prefixView) add(t string) {
	if t == "" {
		return
	}
	v.maxLen = max(v.maxLen, len(t))
	v.first[t[0]>>6] |= 1 << (t[0] & 63)
	var k uint64
	for j := 0; j < len(t) && j < PrefixMax; j++ {
		k |= uint64(t[j]) << (8 * j)
		v.keys = append(v.keys, k)
	}
}

// hold returns the offset in the text of the first position of the view at
// which a pattern of pv may begin that is not all there yet, or MaxInt.
// Before the view's last maxLen-1 bytes every pattern that begins is
// whole, and the Scanner has found it. Positions from text before free
// are not looked at: they were free before, and the text that followed
// cannot have made them begin a pattern (a view only grows, and every
// beginning of a whole one is a beginning too).
func (pv *prefixView) hold(v *view, free int) int {
	n := len(v.buf)
	if pv.maxLen == 0 {
		return math.MaxInt
	}
	from := max(0, n-(pv.maxLen-1))
	i := n
	for i > from && int(v.src[i-1]) >= free {
		i--
	}
	for ; i < n; i++ {
		c := v.buf[i]
		if pv.first[c>>6]&(1<<(c&63)) == 0 {
			continue
		}
		var k uint64
		j := 0
		for ; j < PrefixMax && i+j < n; j++ {
			b := v.buf[i+j]
			if b == breakByte {
				// A pattern begun at i ends before the break or not at
				// all: whole, it has been found.
				break
			}
			k |= uint64(b) << (8 * j)
			if pv.lens&(1<<(j+1)) != 0 {
				if _, ok := slices.BinarySearch(pv.whole, k); ok {
					return int(v.src[i])
				}
			}
		}
		if j < PrefixMax && i+j == n {
			// The view ends within PrefixMax bytes: held while they begin
			// a pattern.
			if _, ok := slices.BinarySearch(pv.keys, k); ok {
				return int(v.src[i])
			}
		}
	}
	return math.MaxInt
}

// Unsettled returns the text Advance has taken but not returned yet. The
// caller must not keep or change it.
func (s *Scanner) Unsettled() []byte { return s.orig }

// Free returns how many bytes at the start of Unsettled no later text can
// make part of a match of the patterns of ps, given that the first free of
// them are known to be (returned by an earlier Free): they end before the
// first unit not
// complete yet, before the first match found that Advance has not returned,
// and before the first position of either view at which a pattern of one
// of ps may begin that is not whole yet. With no ps only the first two
// bounds apply.
//
// The patterns of ps must be among the Matcher's, so that a match of them
// that is whole is found.
func (s *Scanner) Free(free int, ps ...*Prefixes) int {
	if s.m == nil {
		return 0
	}
	end := s.proc
	for _, m := range s.found {
		end = min(end, m.Start)
	}
	for _, p := range ps {
		if p == nil {
			continue
		}
		end = min(end, p.squeezed.hold(&s.squeezed, s.base+free))
		if len(s.m.exact.pats) > 0 {
			end = min(end, p.exact.hold(&s.exact, s.base+free))
		}
	}
	return max(0, min(end-s.base, len(s.orig)))
}

// Squeezed returns the squeezed view of the text Unsettled holds, as far
// as its units are complete, and for each view byte the offset in Unsettled
// of the unit it came from (ascending). A view byte 0 is a break: no match
// spans it. The caller must not keep or change either.
func (s *Scanner) Squeezed() (view []byte, at func(i int) int) {
	v := &s.squeezed
	return v.buf, func(i int) int { return int(v.src[i]) - s.base }
}
