// Package chunk cuts text into overlapping pieces of about a given size for
// embedding and retrieval.
//
// Sizes count bytes of UTF-8 (for ASCII text, characters). Bytes rather than
// code points keep a chunk's storage bounded and, across scripts, track model
// tokens more closely: a 1,000-byte chunk of Chinese is about 330 characters
// and fits a small embedding model's context, 1,000 characters would not.
//
// A chunk is cut at the best boundary that keeps it within Size: the end of
// a paragraph (a blank line), else a line, a sentence, a word. A chunk is not
// ended right after a Markdown ATX heading ("# Title") or inside one, so a
// heading stays with the text that follows it. A word is cut only when it is
// longer than Size, and then only between runes. Each chunk after the first
// starts with up to Overlap bytes from the end of the previous one, starting
// at a sentence boundary when one is close enough, else at a word boundary.
//
// Text inside a chunk is kept as written (line breaks, indentation), except
// that a run of 256 or more whitespace bytes becomes a paragraph break
// ("\n\n"). Whitespace is ASCII whitespace; invalid UTF-8 passes through
// unchanged.
package chunk

import (
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Defaults for zero Options.
const (
	DefaultSize    = 1000
	DefaultOverlap = 150
)

// maxGap is the longest whitespace run kept as written; a longer one becomes
// "\n\n". It bounds how far the splitter looks ahead.
const maxGap = 256

// readSize is how much is read from the input at a time.
const readSize = 32 << 10

// Options tunes Split.
type Options struct {
	// Size is the target size of a chunk in bytes, not counting the overlap;
	// 0 means 1000. No chunk is longer than Size+Overlap, except that a word
	// longer than Size is cut at the rune boundary at or before Size, or
	// after its first rune if Size is shorter than that rune.
	Size int
	// Overlap is the most bytes of the previous chunk's end that start the
	// next chunk; 0 means 150 (but at most Size/2), negative means none.
	Overlap int
}

func (o Options) norm() Options {
	if o.Size <= 0 {
		o.Size = DefaultSize
	}
	switch {
	case o.Overlap == 0:
		o.Overlap = min(DefaultOverlap, o.Size/2)
	case o.Overlap < 0:
		o.Overlap = 0
	}
	return o
}

// Chunk is one piece of a text.
type Chunk struct {
	Ordinal int // 0, 1, 2, … in text order
	Text    string
}

// Split cuts text into chunks of about Size characters on paragraph
// boundaries, then sentence boundaries, then words (never mid-word unless a
// single word is longer than Size), each chunk starting with up to Overlap
// characters of the previous chunk's end (aligned to a sentence or word
// boundary). Markdown headings stay with the text that follows. Empty or
// whitespace-only text has no chunks.
func Split(text string, opts Options) []Chunk {
	var out []Chunk
	s := newSplitter(strings.NewReader(text), opts, min(readSize, len(text)+1))
	// A strings.Reader never fails and this emit function never does either.
	_ = s.run(func(p piece) error {
		out = append(out, p.Chunk)
		return nil
	})
	return out
}

// SplitReader does what Split does over a reader, emitting chunks as it goes,
// so a large input is never held whole in memory: it keeps about Size bytes
// plus a 32 KiB read buffer. Its chunks are exactly Split's for the same text,
// however r delivers it. An error from r (other than io.EOF) or from emit
// stops it and is returned.
func SplitReader(r io.Reader, opts Options, emit func(Chunk) error) error {
	return newSplitter(r, opts, readSize).run(func(p piece) error { return emit(p.Chunk) })
}

// piece is a chunk, the length of its overlap prefix and the overlap taken
// from the previous chunk (which the prefix ends with a separator after).
type piece struct {
	Chunk
	prefix int
	tail   string
}

// Break levels, weakest first.
const (
	levelMidWord   = -1 // no boundary: a word longer than Size was cut
	levelWord      = 1
	levelLine      = 2
	levelSentence  = 3
	levelParagraph = 4
	levelEnd       = 5 // end of the input
)

// brk is a place where a chunk may end: after the text ending at end, with
// the next text starting at next.
type brk struct {
	end   int64
	next  int64 // -1 until the whitespace after end is scanned
	level int8
	glue  bool // in or right after a heading line: the last resort
}

// prio ranks a break as a place to end a chunk.
func (b brk) prio() int8 {
	switch {
	case b.level == levelEnd:
		return levelEnd
	case b.glue:
		return 0
	}
	return b.level
}

type splitter struct {
	r       io.Reader
	size    int64
	overlap int
	minFill int64 // prefer breaks at least this far into a chunk

	// Input. buf holds the (whitespace-normalized) input from offset base;
	// ws holds back a whitespace run until its end is seen, so that a long
	// run can be replaced by "\n\n" before anything scans it.
	rbuf       []byte
	buf        []byte
	base       int64
	ws         []byte
	wsOverflow bool
	eof        bool
	empty      int // consecutive reads that returned nothing

	// Scanner, over buf from pos.
	pos         int64
	done        bool // scanned to the end of the input
	inWord      bool
	sentEnd     bool // the current word ends a sentence so far
	cjkStop     bool // the last rune was a CJK full stop inside a word
	gapOpen     bool // in whitespace after a word whose break is not yet pushed
	gapStart    int64
	gapLines    int
	gapSentence bool
	gapGlue     bool
	lineStart   bool // no non-space yet on this line
	lineIndent  int
	hashes      int   // leading '#'s of this line; -1: not a heading
	heading     bool  // this line is an ATX heading
	breaks      []brk // breaks[bh:] are the breaks after start, in order
	bh          int

	// Chunker.
	start        int64 // where the next chunk's own text starts
	startPending bool  // start is the next non-space to be scanned
	prevLevel    int8  // the break the current chunk starts after
	tail         string
	joiner       string
	ordinal      int
}

func newSplitter(r io.Reader, opts Options, bufSize int) *splitter {
	opts = opts.norm()
	return &splitter{
		r:            r,
		size:         int64(opts.Size),
		overlap:      opts.Overlap,
		minFill:      int64(opts.Size / 4),
		rbuf:         make([]byte, bufSize),
		lineStart:    true,
		startPending: true,
		prevLevel:    levelParagraph,
	}
}

func (s *splitter) run(emit func(piece) error) error {
	for {
		for !s.ready() {
			if err := s.scan(); err != nil {
				return err
			}
		}
		if s.startPending { // only whitespace is left
			return nil
		}
		p, final := s.cut()
		if err := emit(p); err != nil {
			return err
		}
		if final {
			return nil
		}
	}
}

// ready reports whether everything that decides where the current chunk
// ends has been scanned: every break up to start+size, with its level and
// whether text follows it. What is decided never depends on how the input
// was delivered.
func (s *splitter) ready() bool {
	if s.done {
		return true
	}
	if s.startPending {
		return false
	}
	limit := s.start + s.size
	if s.pos <= limit || (s.gapOpen && s.gapStart <= limit) {
		return false
	}
	if n := len(s.breaks); n > s.bh && s.breaks[n-1].next < 0 && s.breaks[n-1].end <= limit {
		return false
	}
	return true
}

// scan scans what is buffered, reading more first if all of it is scanned.
func (s *splitter) scan() error {
	if s.pos == s.base+int64(len(s.buf)) || !s.scanBuffered() {
		if s.eof {
			s.scanBuffered()
			s.finish()
			return nil
		}
		return s.fill()
	}
	return nil
}

// fill reads once from the input into buf, dropping what is no longer needed.
func (s *splitter) fill() error {
	keep := s.start
	if s.startPending {
		keep = s.pos
	}
	if off := int(keep - s.base); off > 0 && off >= len(s.buf)/2 {
		n := copy(s.buf, s.buf[off:])
		s.buf = s.buf[:n]
		s.base = keep
	}
	n, err := s.r.Read(s.rbuf)
	s.appendInput(s.rbuf[:n])
	switch {
	case err == io.EOF:
		s.buf = append(s.buf, s.ws...)
		s.ws = s.ws[:0]
		s.eof = true
	case err != nil:
		return fmt.Errorf("chunk: read: %w", err)
	case n == 0:
		// A reader may return 0, nil now and then, but not forever.
		if s.empty++; s.empty >= 100 {
			return fmt.Errorf("chunk: read: %w", io.ErrNoProgress)
		}
		return nil
	}
	s.empty = 0
	return nil
}

// appendInput adds p to buf, holding back whitespace runs until they end and
// turning runs of maxGap bytes or more into "\n\n".
func (s *splitter) appendInput(p []byte) {
	for len(p) > 0 {
		i := 0
		for i < len(p) && !isSpace(p[i]) {
			i++
		}
		if i > 0 {
			if len(s.ws) > 0 {
				s.buf = append(s.buf, s.ws...)
				s.ws = s.ws[:0]
			}
			s.wsOverflow = false
			s.buf = append(s.buf, p[:i]...)
			p = p[i:]
		}
		for len(p) > 0 && isSpace(p[0]) {
			if !s.wsOverflow {
				s.ws = append(s.ws, p[0])
				if len(s.ws) >= maxGap {
					s.buf = append(s.buf, '\n', '\n')
					s.ws = s.ws[:0]
					s.wsOverflow = true
				}
			}
			p = p[1:]
		}
	}
}

func isSpace(c byte) bool { return spaces[c] }

var spaces = [256]bool{' ': true, '\n': true, '\t': true, '\r': true, '\f': true, '\v': true}

// scanBuffered scans buf from pos and reports whether it made progress.
func (s *splitter) scanBuffered() bool {
	b := s.buf[s.pos-s.base:]
	i := 0
	for i < len(b) {
		c := b[i]
		// Fast path: ASCII letters and digits inside a word of an ordinary line.
		if s.inWord && !s.cjkStop && s.hashes < 0 &&
			('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			s.sentEnd = false
			i++
			continue
		}
		if isSpace(c) {
			s.space(s.pos+int64(i), c)
			i++
			continue
		}
		r, w := rune(c), 1
		if c >= utf8.RuneSelf {
			if !s.eof && !utf8.FullRune(b[i:]) {
				break // the rest of the rune is still to be read
			}
			r, w = utf8.DecodeRune(b[i:])
		}
		s.word(s.pos+int64(i), r)
		i += w
	}
	s.pos += int64(i)
	return i > 0
}

// space handles whitespace byte c at p.
func (s *splitter) space(p int64, c byte) {
	if s.hashes > 0 && (c == ' ' || c == '\t') {
		s.heading = s.hashes <= 6
		s.hashes = -1
	}
	if s.inWord {
		s.inWord, s.cjkStop = false, false
		s.gapOpen, s.gapStart, s.gapLines = true, p, 0
		s.gapSentence, s.gapGlue = s.sentEnd, s.heading
	}
	switch {
	case c == '\n':
		s.gapLines++
		s.lineStart, s.lineIndent, s.hashes, s.heading = true, 0, 0, false
	case s.lineStart && c == ' ':
		if s.lineIndent++; s.lineIndent > 3 {
			s.hashes = -1 // indented code, not a heading
		}
	case s.lineStart:
		s.hashes = -1
	}
	if s.gapOpen && s.gapLines >= 2 {
		s.breaks = append(s.breaks, brk{end: s.gapStart, next: -1, level: levelParagraph, glue: s.gapGlue})
		s.gapOpen = false
	}
}

// word handles non-space rune r at p.
func (s *splitter) word(p int64, r rune) {
	switch {
	case s.lineStart && s.hashes == 0 && r == '#':
		s.hashes = 1
	case s.lineStart:
		s.hashes = -1
	case s.hashes > 0 && r == '#':
		s.hashes++
	case s.hashes > 0:
		s.hashes = -1
	}
	s.lineStart = false
	if !s.inWord {
		if s.gapOpen {
			level := int8(levelWord)
			if s.gapLines == 1 {
				level = levelLine
			}
			if s.gapSentence && !unicode.IsLower(r) {
				level = levelSentence
			}
			s.breaks = append(s.breaks, brk{end: s.gapStart, next: p, level: level, glue: s.gapGlue})
			s.gapOpen = false
		}
		if n := len(s.breaks); n > s.bh && s.breaks[n-1].next < 0 {
			s.breaks[n-1].next = p
		}
		if s.startPending {
			s.start, s.startPending = p, false
		}
		s.inWord = true
	} else if s.cjkStop && !isCloser(r) {
		s.breaks = append(s.breaks, brk{end: p, next: p, level: levelSentence, glue: s.heading})
		s.cjkStop = false
	}
	switch {
	case r == '.' || r == '!' || r == '?' || r == '…':
		s.sentEnd = true
	case r == '。' || r == '！' || r == '？':
		s.sentEnd, s.cjkStop = true, true
	case isCloser(r):
	default:
		s.sentEnd = false
	}
}

// isCloser reports whether r may follow a sentence's final punctuation.
func isCloser(r rune) bool {
	switch r {
	case '"', '\'', ')', ']', '*', '_', '”', '’', '»', '」', '』', '）':
		return true
	}
	return false
}

// finish records the end of the input.
func (s *splitter) finish() {
	n := len(s.breaks)
	switch {
	case s.inWord:
		s.breaks = append(s.breaks, brk{end: s.pos, next: -1, level: levelEnd})
	case s.gapOpen:
		s.breaks = append(s.breaks, brk{end: s.gapStart, next: -1, level: levelEnd})
	case n > s.bh && s.breaks[n-1].next < 0:
		s.breaks[n-1].level = levelEnd
	}
	s.inWord, s.gapOpen, s.done = false, false, true
}

// cut ends the current chunk and prepares the next one.
func (s *splitter) cut() (piece, bool) {
	limit := s.start + s.size
	live := s.breaks[s.bh:]
	best := -1
	for pass := 0; pass < 2 && best < 0; pass++ {
		for i, b := range live {
			if b.end > limit {
				break
			}
			if pass == 0 && b.end-s.start < s.minFill {
				continue
			}
			if best < 0 || b.prio() >= live[best].prio() {
				best = i // ties go to the later break
			}
		}
	}
	var cut brk
	if best >= 0 {
		cut = live[best]
	} else {
		cut = brk{end: s.midWord(limit), level: levelMidWord}
		cut.next = cut.end
	}

	body := s.buf[s.start-s.base : cut.end-s.base]
	p := piece{Chunk: Chunk{Ordinal: s.ordinal}}
	if s.tail == "" {
		p.Text = string(body)
	} else {
		var b strings.Builder
		b.Grow(len(s.tail) + len(s.joiner) + len(body))
		b.WriteString(s.tail)
		b.WriteString(s.joiner)
		b.Write(body)
		p.Text = b.String()
		p.prefix, p.tail = len(s.tail)+len(s.joiner), s.tail
	}
	s.ordinal++
	if cut.level == levelEnd {
		return p, true
	}

	s.joiner = joiner(cut)
	s.tail = ""
	if budget := int64(s.overlap - len(s.joiner)); budget > 0 {
		if from := s.tailStart(cut.end-budget, live[:max(best, 0)]); from >= 0 {
			s.tail = p.Text[len(p.Text)-int(cut.end-from):] // shares p.Text's memory
		}
	}

	// Drop the breaks up to the cut, compacting now and then.
	s.bh += best + 1
	switch {
	case s.bh == len(s.breaks):
		s.breaks, s.bh = s.breaks[:0], 0
	case s.bh >= 1024 && s.bh >= len(s.breaks)/2:
		n := copy(s.breaks, s.breaks[s.bh:])
		s.breaks, s.bh = s.breaks[:n], 0
	}
	s.prevLevel = cut.level
	if cut.next < 0 {
		s.startPending = true
	} else {
		s.start = cut.next
	}
	return p, false
}

// midWord returns where to cut a word that runs past limit: at the last rune
// boundary at or before limit, or after the first rune if there is none.
func (s *splitter) midWord(limit int64) int64 {
	b := s.buf[s.start-s.base:]
	i := int(limit - s.start)
	for j := i; j > 0 && i-j < utf8.UTFMax; j-- {
		if utf8.RuneStart(b[j]) {
			return s.start + int64(j)
		}
	}
	_, w := utf8.DecodeRune(b)
	return s.start + int64(w)
}

// joiner returns what separates the overlap from the text after cut.
func joiner(cut brk) string {
	switch {
	case cut.next == cut.end:
		return ""
	case cut.level >= levelParagraph:
		return "\n\n"
	case cut.level == levelLine:
		return "\n"
	}
	return " "
}

// tailStart returns where the overlap taken from the current chunk starts:
// the earliest sentence boundary at or after from, else the earliest word
// boundary, else -1. inside are the breaks inside the chunk.
func (s *splitter) tailStart(from int64, inside []brk) int64 {
	word, sentence := int64(-1), int64(-1)
	consider := func(at int64, level int8) {
		if at < from || level < levelWord {
			return
		}
		if word < 0 {
			word = at
		}
		if sentence < 0 && level >= levelLine {
			sentence = at
		}
	}
	consider(s.start, s.prevLevel)
	for _, b := range inside {
		consider(b.next, b.level)
	}
	if sentence >= 0 {
		return sentence
	}
	return word
}
