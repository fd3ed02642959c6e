package guard

import (
	"hash/maphash"
	"slices"
	"unicode"
	"unicode/utf8"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// MaxOwners is the most tenants a fingerprint records. A fingerprint stored
// by more tenants is common text, marked as such and ignored.
const MaxOwners = 8

// words is a text split into lowercase words: runs of letters, digits and
// marks. Format characters (zero-width space, soft hyphen, …) are ignored, so
// they cannot split a word; anything else separates words.
type words struct {
	start []int  // byte offset in the text of each word
	norm  []byte // the words, lowercased, each followed by one space
	end   []int  // offset in norm just past each word
}

// split splits s. Unless final, a word touching the end of s is not complete
// and is left out, as is an incomplete UTF-8 sequence there.
func split(s string, final bool) words {
	ws := words{
		start: make([]int, 0, len(s)/4+1),
		norm:  make([]byte, 0, len(s)+1),
		end:   make([]int, 0, len(s)/4+1),
	}
	in := false // in a word
	for i := 0; i < len(s); {
		var word, ignored bool
		r, size := rune(s[i]), 1
		if r < utf8.RuneSelf {
			word = isAlnum(s[i])
		} else {
			if !final && !utf8.FullRuneInString(s[i:]) {
				break
			}
			r, size = utf8.DecodeRuneInString(s[i:])
			word, ignored = wordRune(r)
		}
		switch {
		case word:
			if !in {
				ws.start = append(ws.start, i)
				in = true
			}
			if size == 1 {
				ws.norm = append(ws.norm, s[i]|asciiCase(s[i]))
			} else {
				ws.norm = utf8.AppendRune(ws.norm, unicode.ToLower(r))
			}
		case in && !ignored:
			ws.norm = append(ws.norm, ' ')
			ws.end = append(ws.end, len(ws.norm)-1)
			in = false
		}
		i += size
	}
	if in && final {
		ws.norm = append(ws.norm, ' ')
		ws.end = append(ws.end, len(ws.norm)-1)
		in = false
	}
	if in {
		ws.start = ws.start[:len(ws.start)-1]
	}
	return ws
}

// wordRune reports whether r is part of a word, or else ignored.
func wordRune(r rune) (word, ignored bool) {
	if r < utf8.RuneSelf {
		return isAlnum(byte(r)), false
	}
	if unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) {
		return true, false
	}
	return false, unicode.Is(unicode.Cf, r)
}

// endsWord reports whether appending in to pending may complete a word: in
// holds a rune that separates words or is not complete, or pending ends in
// an incomplete rune.
func endsWord(pending, in string) bool {
	if cutRune(pending, len(pending)) < len(pending) {
		return true
	}
	for i := 0; i < len(in); {
		r, size := utf8.DecodeRuneInString(in[i:])
		if word, ignored := wordRune(r); r == utf8.RuneError || !word && !ignored {
			return true
		}
		i += size
	}
	return false
}

// shingles returns the hash of each run of k consecutive words.
func (ws words) shingles(seed maphash.Seed) []uint64 {
	n := len(ws.end) - k + 1
	if n <= 0 {
		return nil
	}
	hs := make([]uint64, n)
	for j := range hs {
		from := 0
		if j > 0 {
			from = ws.end[j-1] + 1
		}
		hs[j] = maphash.Bytes(seed, ws.norm[from:ws.end[j+k-1]])
	}
	return hs
}

// windowMins returns the minimum of each window of w consecutive hashes: the
// fingerprints winnowing selects. With fewer than w hashes and short set, it
// returns the minimum of all of them, so a short text still has one.
func windowMins(hs []uint64, short bool) []uint64 {
	if len(hs) < w {
		if short && len(hs) > 0 {
			return []uint64{slices.Min(hs)}
		}
		return nil
	}
	mins := make([]uint64, len(hs)-w+1)
	for j := range mins {
		mins[j] = slices.Min(hs[j : j+w])
	}
	return mins
}

// fingerprints returns the distinct fingerprints winnowing selects from text
// and the hashes of all its shingles.
func fingerprints(seed maphash.Seed, text string) (selected, all []uint64) {
	all = split(text, true).shingles(seed)
	selected = windowMins(all, true)
	slices.Sort(selected)
	return slices.Compact(selected), all
}

// index maps fingerprints to the tenants that stored them, and records every
// shingle each tenant stored.
//
// Why both: winnowing picks a shingle by comparing it with its neighbours, so
// near the edge of boilerplate two tenants store, one tenant's text may
// select a shingle of the boilerplate that the other's does not. An answer
// quoting the boilerplate could then hit a fingerprint of the first tenant
// that the receiver, who stored the same words, does not own. So "owned by
// the receiver" is decided by whether the receiver stored the shingle at
// all, and the winnowed fingerprints only say who else did. The shingles
// also let a hit be confirmed: the owner must have stored the whole window,
// 12 words, so a shorter phrase that happens to match never blocks.
//
// Memory, per distinct fingerprint (about 2/(w+1) of the shingles, one per
// three stored words): one entry in a Go map from uint64 to uint32, a
// 16-byte slot plus control bytes and spare capacity, 20 to 40 bytes (30
// measured); a fingerprint with 2 to MaxOwners owners adds a slice of them
// (24 + 4 per owner bytes). Per shingle a tenant stored (about one per
// word): 4 bytes in its sorted set. About 15 bytes per stored word in all,
// three quarters of the stored text's size; BenchmarkCheck reports it.
type index struct {
	m    map[uint64]uint32 // fingerprint → owner number, setRef|i, or common
	sets [][]uint32        // owners of fingerprints stored by 2..MaxOwners tenants; nil when free
	free []uint32          // free slots of sets
	ids  map[tenant.ID]uint32
	next uint32 // next owner number; numbers are never reused
	// stored holds, per owner number, the low 32 bits of every shingle the
	// tenant stored. A collision (about n/2^32 for n shingles) makes one
	// window of a leak look like the receiver's own text.
	stored map[uint32]*shingleSet
}

// Values in index.m: an owner number (1..maxNum), setRef|i for the owners in
// sets[i], or common. A tenant that stored nothing has number 0.
const (
	setRef = 1 << 31
	common = ^uint32(0)
	maxNum = setRef - 1
)

func newIndex() index {
	return index{
		m:      map[uint64]uint32{},
		ids:    map[tenant.ID]uint32{},
		next:   1,
		stored: map[uint32]*shingleSet{},
	}
}

// add records id as an owner of each fingerprint in selected and as having
// stored each shingle in all.
func (x *index) add(id tenant.ID, selected, all []uint64) {
	o, ok := x.ids[id]
	if !ok {
		if x.next > maxNum {
			// Unreachable in practice (2^31 tenants); never share a number.
			return
		}
		o = x.next
		x.next++
		x.ids[id] = o
		x.stored[o] = &shingleSet{}
	}
	x.stored[o].add(all)
	for _, h := range selected {
		v, ok := x.m[h]
		switch {
		case !ok:
			x.m[h] = o
		case v == common || v == o:
		case v&setRef == 0:
			x.m[h] = x.newSet(v, o)
		default:
			s := &x.sets[v&^setRef]
			switch {
			case slices.Contains(*s, o):
			case len(*s) < MaxOwners:
				*s = append(*s, o)
			default:
				x.freeSet(v)
				x.m[h] = common
			}
		}
	}
}

func (x *index) newSet(a, b uint32) uint32 {
	set := make([]uint32, 2, 4)
	set[0], set[1] = a, b
	if n := len(x.free); n > 0 {
		i := x.free[n-1]
		x.free = x.free[:n-1]
		x.sets[i] = set
		return setRef | i
	}
	x.sets = append(x.sets, set)
	return setRef | uint32(len(x.sets)-1)
}

func (x *index) freeSet(v uint32) {
	i := v &^ setRef
	x.sets[i] = nil
	x.free = append(x.free, i)
}

// remove forgets id as an owner everywhere. Common fingerprints stay common.
func (x *index) remove(id tenant.ID) {
	o, ok := x.ids[id]
	if !ok {
		return
	}
	delete(x.ids, id)
	delete(x.stored, o)
	for h, v := range x.m {
		switch {
		case v == o:
			delete(x.m, h)
		case v == common || v&setRef == 0:
		default:
			s := &x.sets[v&^setRef]
			if i := slices.Index(*s, o); i >= 0 {
				*s = slices.Delete(*s, i, i+1)
				if len(*s) == 1 {
					x.m[h] = (*s)[0]
					x.freeSet(v)
				}
			}
		}
	}
}

// leak reports whether some window of w consecutive shingles in hs (or all
// of hs, if short and there are fewer) is a leak to the tenant numbered self
// (0 if it has stored nothing): its winnowed fingerprint was selected by
// another tenant, the receiver never stored that shingle, and that other
// tenant stored every shingle of the window, so the text shares a run of at
// least w+k-1 words with it. Checking the whole window, not only its
// fingerprint, keeps shorter phrases that happen to match from blocking.
func (x *index) leak(hs []uint64, short bool, self uint32) bool {
	if len(hs) < w {
		return short && len(hs) > 0 && x.leakWindow(hs, self)
	}
	var last uint64
	missed := false // last is no fingerprint anyone owns
	for j := 0; j+w <= len(hs); j++ {
		win := hs[j : j+w]
		h := slices.Min(win)
		if missed && h == last {
			continue // neighbouring windows often share their minimum
		}
		v, ok := x.m[h]
		last, missed = h, !ok || v == common
		if !missed && x.leakWindow(win, self) {
			return true
		}
	}
	return false
}

// leakWindow reports whether the window win is a leak.
func (x *index) leakWindow(win []uint64, self uint32) bool {
	h := slices.Min(win)
	v, ok := x.m[h]
	if !ok || v == common {
		return false
	}
	owners := []uint32{v}
	if v&setRef != 0 {
		owners = x.sets[v&^setRef]
	}
	if slices.Contains(owners, self) || x.stored[self].has(uint32(h)) {
		return false
	}
	for _, o := range owners {
		if x.stored[o].hasAll(win) {
			return true
		}
	}
	return false
}

// shingleSet is a set of 32-bit shingle hashes kept in sorted runs, each at
// least twice as long as the next: 4 bytes a shingle, adding costs amortized
// O(log n) a shingle, and a lookup is a binary search per run.
type shingleSet struct{ runs [][]uint32 }

func (s *shingleSet) add(hs []uint64) {
	run := make([]uint32, len(hs))
	for i, h := range hs {
		run[i] = uint32(h)
	}
	slices.Sort(run)
	s.runs = append(s.runs, slices.Clip(slices.Compact(run)))
	for n := len(s.runs); n > 1 && len(s.runs[n-2]) <= 2*len(s.runs[n-1]); n = len(s.runs) {
		s.runs = append(s.runs[:n-2], merge(s.runs[n-2], s.runs[n-1]))
	}
}

func merge(a, b []uint32) []uint32 {
	out := make([]uint32, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		switch {
		case a[0] < b[0]:
			out, a = append(out, a[0]), a[1:]
		case a[0] > b[0]:
			out, b = append(out, b[0]), b[1:]
		default:
			out, a, b = append(out, a[0]), a[1:], b[1:]
		}
	}
	return slices.Clip(append(append(out, a...), b...))
}

// has reports whether s (which may be nil) holds h.
func (s *shingleSet) has(h uint32) bool {
	if s == nil {
		return false
	}
	for _, r := range s.runs {
		if _, ok := slices.BinarySearch(r, h); ok {
			return true
		}
	}
	return false
}

func (s *shingleSet) hasAll(hs []uint64) bool {
	for _, h := range hs {
		if !s.has(uint32(h)) {
			return false
		}
	}
	return true
}

func (s *shingleSet) len() int {
	n := 0
	for _, r := range s.runs {
		n += len(r)
	}
	return n
}

// fingerprintStage blocks text that leaks another tenant's stored text. It
// holds back the last heldWords complete words and the word in progress (see
// the package comment), so every window is checked once, with all its words.
type fingerprintStage struct {
	g       *Guard
	self    tenant.ID
	pending string
	checked bool // a full window has been checked, so the text is not short
}

func (f *fingerprintStage) write(in string, final bool) (string, string) {
	if !final && f.pending != "" && !endsWord(f.pending, in) {
		// No word is completed, so nothing changes: skip splitting the
		// pending text again, which could make one long word quadratic.
		f.pending += in
		return "", ""
	}
	buf := f.pending + in
	ws := split(buf, final)
	if hs := ws.shingles(f.g.seed); len(hs) > 0 {
		short := final && !f.checked
		f.checked = f.checked || len(hs) >= w
		f.g.mu.RLock()
		leak := f.g.idx.leak(hs, short, f.g.idx.ids[f.self])
		f.g.mu.RUnlock()
		if leak {
			return "", ReasonForeignText
		}
	}
	if final {
		f.pending = ""
		return buf, ""
	}
	n := len(ws.start)
	if n < minWords {
		f.pending = buf
		return "", ""
	}
	cut := ws.start[n-heldWords]
	f.pending = buf[cut:]
	return buf[:cut], ""
}
