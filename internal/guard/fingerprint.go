package guard

import (
	"context"
	"encoding/binary"
	"errors"
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
// 12 words, so a shorter phrase that happens to match is never reported.
//
// Memory, per distinct fingerprint (about 2/(w+1) of the shingles, one per
// three stored words): one entry in a Go map from uint64 to uint32, a
// 16-byte slot plus control bytes and spare capacity, 20 to 40 bytes (30
// measured); a fingerprint with 2 to MaxOwners owners adds a slice of them
// (24 + 4 per owner bytes). Per shingle a tenant stored (about one per
// word): 4 bytes in its sorted set. About 15 bytes per stored word in all,
// three quarters of the stored text's size; BenchmarkCheck reports it.
type index struct {
	m     map[uint64]uint32 // fingerprint → owner number, setRef|i, or common
	sets  [][]uint32        // owners of fingerprints stored by 2..MaxOwners tenants; nil when free
	free  []uint32          // free slots of sets
	ids   map[tenant.ID]uint32
	names map[uint32]tenant.ID // the inverse of ids, to name owners in a report
	next  uint32               // next owner number; numbers are never reused
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
		names:  map[uint32]tenant.ID{},
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
		x.names[o] = id
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
	delete(x.names, o)
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

// leaks returns the owner numbers of the tenants whose stored text leaks to
// the tenant numbered self (0 if it has stored nothing), and in how many
// windows of w consecutive shingles of hs (or in all of hs, if short and
// there are fewer). A window leaks a tenant's text when its winnowed
// fingerprint was selected by that tenant, the receiver never stored that
// shingle, and the tenant stored every shingle of the window, so the text
// shares a run of at least w+k-1 words with it. Checking the whole window,
// not only its fingerprint, keeps shorter phrases that happen to match from
// counting.
func (x *index) leaks(hs []uint64, short bool, self uint32) (owners []uint32, windows int) {
	check := func(win []uint64) {
		found := x.leakWindow(win, self)
		if len(found) == 0 {
			return
		}
		windows++
		for _, o := range found {
			if !slices.Contains(owners, o) {
				owners = append(owners, o)
			}
		}
	}
	if len(hs) < w {
		if short && len(hs) > 0 {
			check(hs)
		}
		return owners, windows
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
		if !missed {
			check(win)
		}
	}
	return owners, windows
}

// leakWindow returns the owners whose text the window win leaks, if any.
func (x *index) leakWindow(win []uint64, self uint32) []uint32 {
	h := slices.Min(win)
	v, ok := x.m[h]
	if !ok || v == common {
		return nil
	}
	owners := []uint32{v}
	if v&setRef != 0 {
		owners = x.sets[v&^setRef]
	}
	if slices.Contains(owners, self) || x.stored[self].has(uint32(h)) {
		return nil
	}
	var found []uint32
	for _, o := range owners {
		if x.stored[o].hasAll(win) {
			found = append(found, o)
		}
	}
	return found
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

// fingerprintTap hashes the shingles of the text a stream lets through,
// without holding any of it back: it keeps only the last k-1 complete words
// and the word in progress, to form the shingles the next piece completes.
// The hashes go to the guard's silent check (see Run) in batches of at most
// maxBatch shingles, the last when the stream is flushed.
type fingerprintTap struct {
	g        *Guard
	self     tenant.ID
	pending  string
	hs       []uint64
	shingles int // shingles in earlier batches
}

// maxBatch bounds the shingles (8 bytes each) one check holds. Successive
// batches overlap by w-1 shingles, so every window is checked.
const maxBatch = 8192

func (f *fingerprintTap) write(in string, final bool) (string, string) {
	f.observe(in, final)
	return in, ""
}

func (f *fingerprintTap) observe(in string, final bool) {
	if !final && f.pending != "" && !endsWord(f.pending, in) {
		// No word is completed, so nothing changes: skip splitting the
		// pending text again, which could make one long word quadratic.
		f.pending += in
		return
	}
	buf := f.pending + in
	ws := split(buf, final)
	for _, h := range ws.shingles(f.g.seed) {
		if len(f.hs) == maxBatch {
			f.g.submit(textCheck{receiver: f.self, hs: f.hs})
			f.shingles += len(f.hs) - (w - 1)
			f.hs = append(make([]uint64, 0, min(2*w, maxBatch)), f.hs[len(f.hs)-(w-1):]...)
		}
		f.hs = append(f.hs, h)
	}
	if final {
		// A text with fewer than w shingles in all is checked whole.
		f.g.submit(textCheck{receiver: f.self, hs: f.hs, short: f.shingles == 0})
		f.pending, f.hs = "", nil
		return
	}
	// The next shingle starts at word n-k+1 of the n complete ones.
	if n := len(ws.start); n >= k {
		f.pending = buf[ws.start[n-k+1]:]
	} else {
		f.pending = buf
	}
}

// TextMatch is what the silent check found in one text that left for a
// tenant: a run of at least 12 words that other tenants stored and the
// receiver did not. It is for the operator only.
type TextMatch struct {
	Receiver tenant.ID   // the tenant the text was sent to
	Owners   []tenant.ID // the tenants that stored the run, sorted
	Windows  int         // windows of 12 words that matched: about how much
	Total    uint64      // matches reported since the guard started, this one included
}

// TextStats counts the silent check's work since the guard started.
type TextStats struct {
	Checked uint64 // texts (or batches of a long one) checked
	Matches uint64 // texts reported as carrying another tenant's text
	Dropped uint64 // texts not checked because the queue was full
}

// textCheck is one text waiting for the silent check: the hashes of its
// shingles, in order.
type textCheck struct {
	receiver tenant.ID
	hs       []uint64
	short    bool
}

// queueLen bounds the texts waiting for the silent check: at most
// queueLen*maxBatch*8 bytes (16 MiB).
const queueLen = 256

// submit queues c for the silent check without ever waiting: a full queue
// drops it and counts the drop.
func (g *Guard) submit(c textCheck) {
	if len(c.hs) == 0 {
		return
	}
	select {
	case g.checks <- c:
	default:
		g.dropped.Add(1)
	}
}

// Stats reports the silent check's counters.
func (g *Guard) Stats() TextStats {
	return TextStats{Checked: g.checked.Load(), Matches: g.matches.Load(), Dropped: g.dropped.Load()}
}

// Run performs the silent cross-tenant text check of every text Check and
// Stream let through, after it has left, and calls report for each one
// that carries another tenant's stored text. report runs on Run's
// goroutine; what it does (a line in the operator's log) must never reach
// either tenant. Until Run is called, and after it returns, texts wait in a
// bounded queue and are dropped when it is full. Run returns nil when ctx
// is cancelled.
//
// A repeat of the same text to the same tenant among the last dedupWindow
// checks is not reported again: the agent checks a streamed answer twice,
// as a stream and then whole.
func (g *Guard) Run(ctx context.Context, report func(TextMatch)) error {
	if !g.running.CompareAndSwap(false, true) {
		return errors.New("guard: Run called twice")
	}
	defer g.running.Store(false)
	var recent dedup
	for {
		select {
		case <-ctx.Done():
			return nil
		case c := <-g.checks:
			m, ok := g.match(c)
			if ok && recent.first(g.digest(c)) && report != nil {
				m.Total = g.matches.Add(1)
				report(m)
			}
		}
	}
}

// match runs the check on c.
func (g *Guard) match(c textCheck) (TextMatch, bool) {
	g.checked.Add(1)
	g.mu.RLock()
	defer g.mu.RUnlock()
	nums, windows := g.idx.leaks(c.hs, c.short, g.idx.ids[c.receiver])
	if windows == 0 {
		return TextMatch{}, false
	}
	m := TextMatch{Receiver: c.receiver, Windows: windows}
	for _, o := range nums {
		if id, ok := g.idx.names[o]; ok {
			m.Owners = append(m.Owners, id)
		}
	}
	slices.Sort(m.Owners)
	return m, true
}

// digest identifies a check's text and receiver.
func (g *Guard) digest(c textCheck) uint64 {
	var h maphash.Hash
	h.SetSeed(g.seed)
	h.WriteString(string(c.receiver))
	var b [8]byte
	for _, x := range c.hs {
		binary.LittleEndian.PutUint64(b[:], x)
		h.Write(b[:])
	}
	return h.Sum64()
}

const dedupWindow = 64

// dedup remembers the last dedupWindow digests.
type dedup struct {
	ring [dedupWindow]uint64
	n    int
}

// first reports whether d is not among the remembered digests, and
// remembers it.
func (r *dedup) first(d uint64) bool {
	if slices.Contains(r.ring[:min(r.n, dedupWindow)], d) {
		return false
	}
	r.ring[r.n%dedupWindow] = d
	r.n++
	return true
}
