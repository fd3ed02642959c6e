package textnorm

import (
	"bytes"
	"html"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Views. A matcher does not search the text itself but two views of it, each
// built unit by unit, where a unit is one UTF-8 rune or one escape that a
// lenient reader decodes: %XX (and runs of them forming one UTF-8 sequence),
// \uXXXX (with surrogate pairs), \xXX, the JSON escapes \" \/ \\ \b \f \n
// \r \t, and what an HTML or markdown renderer shows differently from its
// source: character references (&#98; &#x62; &amp;, with the semicolon
// CommonMark requires) decode to their rune, and a tag without attributes or
// a comment (<b>, </span>, <br/>, <!---->) of at most maxUnit bytes shows
// nothing. Each decoded rune is replaced by its skeleton.
//
//   - The exact view is that skeleton text: a value is found in it whatever
//     its letters look like and however much of it is escaped.
//   - The squeezed view keeps only the letters and digits of the exact view,
//     so a value spaced out ("s k - 1 2"), split by punctuation, or written
//     as hex with separators ("de:ad:be:ef", "de ad", "\xde\xad") is one run
//     of characters there.
//
// A view stops joining across long gaps: when more than maxGap bytes of the
// text produce nothing in a view (separators in the squeezed view, ignorable
// code points, tags and comments in both), the view gets a break byte (0)
// that no pattern contains. So a match in a view spans at most
// maxUnit+maxGap bytes of text per view byte, which bounds what a stream must
// hold back, and a value is not found when more than maxGap bytes that
// produce nothing lie between two of its letters or digits: that is the
// documented limit of the spaced-out form.
//
// The gap is counted in the squeezed view, where a value's own punctuation
// produces nothing too, so padding of MaxPad bytes on each side of a
// punctuation character of the value ("b..k..c..-..s", where the gap
// around '-' is pad, '-', pad) must fit: maxGap is 2*MaxPad+1. A value is
// therefore found with up to MaxPad bytes of padding between every two of
// its characters when its punctuation comes one character at a time (a
// canary's '-', the '/' and '+' of most base64); two punctuation
// characters in a row allow (2*MaxPad+1-2)/3 = 10 bytes. (The views are
// built once for every value, so the gap cannot leave out the punctuation
// of the value being matched; doubling the gap instead costs little: a
// stream holds at most maxUnit+maxGap bytes of text per view byte, and a
// pattern of 12 random letters and digits does not occur by chance in
// text that is joined across 33 bytes rather than 16.)

// MaxPad is the padding, in bytes of text that shows nothing or only
// separators, that a value may have between every two of its characters and
// still be found (see the comment on views).
const MaxPad = 16

const (
	// maxGap is the most bytes of text that may produce nothing in a view
	// between two letters or digits of one match.
	maxGap = 2*MaxPad + 1
	// maxUnit is the longest unit: a surrogate pair "\uD83D\uDE00", or four
	// %XX or \xXX escapes of one UTF-8 sequence.
	maxUnit   = 16
	breakByte = 0
)

// view is one view of a text being scanned: its bytes and, for each, the
// offset in the text of the unit it came from.
type view struct {
	buf       []byte
	src       []int32
	lastOut   int  // text offset just after the last unit that wrote a byte
	broken    bool // a break was written since then
	lastBreak int  // index just after the last break byte in buf, or 0
	scanned   int  // buf positions before this were probed
	settled   int  // every match starting before this was found
	dropped   int  // bytes dropped from the front of buf so far
	visited   int  // buf positions before this were given to a Visit
}

func (v *view) add(out string, start, end int) {
	if out == "" {
		if !v.broken && end-v.lastOut > maxGap {
			v.buf = append(v.buf, breakByte)
			v.src = append(v.src, int32(start))
			v.broken = true
			v.lastBreak = len(v.buf)
		}
		return
	}
	for k := 0; k < len(out); k++ {
		v.buf = append(v.buf, out[k])
		v.src = append(v.src, int32(start))
	}
	v.lastOut, v.broken = end, false
}

// drop forgets the settled part of the view.
func (v *view) drop() {
	n := v.settled
	if n == 0 {
		return
	}
	v.buf = v.buf[:copy(v.buf, v.buf[n:])]
	v.src = v.src[:copy(v.src, v.src[n:])]
	v.lastBreak = max(0, v.lastBreak-n)
	v.scanned -= n
	v.visited = max(0, v.visited-n)
	v.settled = 0
	v.dropped += n
}

func (v *view) reset() {
	*v = view{buf: v.buf[:0], src: v.src[:0]}
}

// noRune is the rune of a unit that shows nothing (an HTML tag or comment).
const noRune rune = -1

// unitStart reports whether an ASCII byte may begin a unit longer than itself.
func unitStart(c byte) bool { return c == '%' || c == '\\' || c == '&' || c == '<' }

// unit decodes the unit at the start of s. ok is false when s may hold the
// start of a longer unit than it has (only when !final): the caller waits.
// r is noRune for a unit that shows nothing.
func unit(s []byte, final bool) (r rune, n int, ok bool) {
	c := s[0]
	switch {
	case c == '&':
		return charRef(s, final)
	case c == '<':
		return markup(s, final)
	case c == '%':
		return escapedBytes(s, '%', 3, final)
	case c == '\\':
		if len(s) < 2 {
			return '\\', 1, final
		}
		switch s[1] {
		case 'u', 'U':
			return unicodeEscape(s, final)
		case 'x', 'X':
			return escapedBytes(s, '\\', 4, final)
		case '"', '/', '\\', '\'':
			return rune(s[1]), 2, true
		case 'b':
			return '\b', 2, true
		case 'f':
			return '\f', 2, true
		case 'n':
			return '\n', 2, true
		case 'r':
			return '\r', 2, true
		case 't':
			return '\t', 2, true
		}
		return '\\', 1, true
	case c < utf8.RuneSelf:
		return rune(c), 1, true
	}
	if !final && !utf8.FullRune(s) {
		return 0, 0, false
	}
	r, n = utf8.DecodeRune(s)
	return r, n, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// hexByte decodes the escape of width w at s[0:] ("%XX" or "\xXX"), whose
// first byte is lead. more reports that s ends before the escape could.
func hexByte(s []byte, lead byte, w int) (b byte, ok, more bool) {
	if len(s) == 0 {
		return 0, false, true
	}
	if s[0] != lead {
		return 0, false, false
	}
	if lead == '\\' {
		if len(s) < 2 {
			return 0, false, true
		}
		if s[1] != 'x' && s[1] != 'X' {
			return 0, false, false
		}
	}
	hi := w - 2
	if len(s) <= hi {
		return 0, false, true
	}
	h, ok1 := unhex(s[hi])
	if !ok1 {
		return 0, false, false
	}
	if len(s) <= hi+1 {
		return 0, false, true
	}
	l, ok2 := unhex(s[hi+1])
	if !ok2 {
		return 0, false, false
	}
	return h<<4 | l, true, false
}

// escapedBytes decodes a run of w-byte escapes of one UTF-8 sequence.
func escapedBytes(s []byte, lead byte, w int, final bool) (rune, int, bool) {
	b, ok, more := hexByte(s, lead, w)
	switch {
	case more && !final:
		return 0, 0, false
	case !ok:
		return rune(lead), 1, true
	case b < utf8.RuneSelf:
		return rune(b), w, true
	}
	var seq [utf8.UTFMax]byte
	seq[0] = b
	n := 1
	for n < utf8.UTFMax && !utf8.FullRune(seq[:n]) {
		c, ok, more := hexByte(s[min(len(s), n*w):], lead, w)
		if more && !final {
			return 0, 0, false
		}
		if !ok || utf8.RuneStart(c) {
			break
		}
		seq[n] = c
		n++
	}
	r, size := utf8.DecodeRune(seq[:n])
	if r == utf8.RuneError && size <= 1 {
		return rune(lead), 1, true
	}
	return r, size * w, true
}

// unicodeEscape decodes \uXXXX at s[0:], with a following low surrogate.
func unicodeEscape(s []byte, final bool) (rune, int, bool) {
	r, ok, more := hex4(s)
	switch {
	case more && !final:
		return 0, 0, false
	case !ok:
		return '\\', 1, true
	case !utf16.IsSurrogate(r):
		return r, 6, true
	case r >= 0xDC00:
		return utf8.RuneError, 6, true
	}
	lo, ok, more := hex4(s[6:])
	switch {
	case more && !final:
		return 0, 0, false
	case ok && 0xDC00 <= lo && lo < 0xE000:
		return utf16.DecodeRune(r, lo), 12, true
	}
	return utf8.RuneError, 6, true
}

func hex4(s []byte) (rune, bool, bool) {
	if len(s) == 0 {
		return 0, false, true
	}
	if s[0] != '\\' {
		return 0, false, false
	}
	if len(s) < 2 {
		return 0, false, true
	}
	if s[1] != 'u' && s[1] != 'U' {
		return 0, false, false
	}
	var r rune
	for i := 2; i < 6; i++ {
		if i >= len(s) {
			return 0, false, true
		}
		h, ok := unhex(s[i])
		if !ok {
			return 0, false, false
		}
		r = r<<4 | rune(h)
	}
	return r, true, false
}

// unitEnd returns the end of the unit starting at s[0:], all of which is
// present.
func unitEnd(s []byte) int {
	if c := s[0]; c < utf8.RuneSelf && !unitStart(c) {
		return 1
	}
	_, n, _ := unit(s, true)
	return n
}

// Views returns the exact and squeezed views of s (see the comment on
// views above), for tests and for computing the forms of a value.
func Views(s string) (exact, squeezed string) {
	var d, q formView
	d.buf = make([]byte, 0, 2*len(s))
	q.buf = make([]byte, 0, 2*len(s))
	b := []byte(s)
	for i := 0; i < len(b); {
		ds, qs, n := unitViews(b[i:], true)
		d.add(ds, i+n)
		q.add(qs, i+n)
		i += n
	}
	return string(d.buf), string(q.buf)
}

// formView is a view without offsets, built the same way (view.add).
type formView struct {
	buf     []byte
	lastOut int
	broken  bool
}

func (v *formView) add(out string, end int) {
	if out == "" {
		if !v.broken && end-v.lastOut > maxGap {
			v.buf = append(v.buf, breakByte)
			v.broken = true
		}
		return
	}
	v.buf = append(v.buf, out...)
	v.lastOut, v.broken = end, false
}

// unitViews returns what the unit at s[0:] adds to each view and its length,
// or n = 0 to wait for more.
func unitViews(s []byte, final bool) (exact, squeezed string, n int) {
	c := s[0]
	if c < utf8.RuneSelf && !unitStart(c) {
		return asciiSkeleton[c], asciiSqueezed[c], 1
	}
	r, n, ok := unit(s, final)
	if !ok {
		return "", "", 0
	}
	if r == noRune {
		return "", "", n
	}
	if 0 <= r && r < utf8.RuneSelf {
		return asciiSkeleton[r], asciiSqueezed[r], n
	}
	in := info(r)
	return in.skel, in.squeezed, n
}

// charRef decodes an HTML character reference at s[0:] ('&'): &#DDD;,
// &#xHHH; or a named one that stands for one rune, of at most maxUnit bytes.
// Anything else is a plain '&'.
func charRef(s []byte, final bool) (rune, int, bool) {
	end := -1
	for i := 1; i < len(s) && i < maxUnit; i++ {
		c := s[i]
		if c == ';' {
			end = i + 1
			break
		}
		if !(c == '#' && i == 1) && !isAlnum(c) {
			break
		}
	}
	if end < 0 {
		if !final && len(s) < maxUnit && refPrefix(s) {
			return 0, 0, false
		}
		return '&', 1, true
	}
	body := string(s[1 : end-1])
	if strings.HasPrefix(body, "#") {
		r, ok := numericRef(body[1:])
		if !ok {
			return '&', 1, true
		}
		return r, end, true
	}
	decoded := html.UnescapeString(string(s[:end]))
	r, size := utf8.DecodeRuneInString(decoded)
	if decoded == string(s[:end]) || size != len(decoded) {
		return '&', 1, true
	}
	return r, end, true
}

// refPrefix reports whether all of s could still begin a character reference.
func refPrefix(s []byte) bool {
	for i := 1; i < len(s); i++ {
		if !(s[i] == '#' && i == 1) && !isAlnum(s[i]) {
			return false
		}
	}
	return true
}

// numericRef decodes the digits of &#…; (CommonMark: 1–7 decimal digits, or
// x and 1–6 hex digits). Invalid code points read as U+FFFD, as renderers do.
func numericRef(d string) (rune, bool) {
	base, digits := 10, 7
	if d != "" && (d[0] == 'x' || d[0] == 'X') {
		base, digits, d = 16, 6, d[1:]
	}
	if d == "" || len(d) > digits {
		return 0, false
	}
	var r rune
	for i := 0; i < len(d); i++ {
		h, ok := unhex(d[i])
		if !ok || int(h) >= base {
			return 0, false
		}
		r = r*rune(base) + rune(h)
	}
	if r == 0 || !utf8.ValidRune(r) {
		return utf8.RuneError, true
	}
	return r, true
}

// markup recognises, at s[0:] ('<'), a comment or a tag without attributes
// of at most maxUnit bytes: a renderer shows nothing of either, so text split
// by one ("sk<b></b>-live") reads joined. Anything else is a plain '<'.
func markup(s []byte, final bool) (rune, int, bool) {
	n := min(len(s), maxUnit)
	if end := markupEnd(s[:n]); end > 0 {
		return noRune, end, true
	} else if end < 0 && !final && len(s) < maxUnit {
		return 0, 0, false
	}
	return '<', 1, true
}

// markupEnd returns the length of the tag or comment that s begins, 0 if it
// begins none, or -1 if more bytes could make it begin one.
func markupEnd(s []byte) int {
	open, closing := []byte("<!--"), []byte("-->")
	if len(s) < len(open) && bytes.HasPrefix(open, s) {
		return -1
	}
	if bytes.HasPrefix(s, open) {
		if i := bytes.Index(s[len(open):], closing); i >= 0 {
			return len(open) + i + len(closing)
		}
		return -1
	}
	i := 1
	if i < len(s) && s[i] == '/' {
		i++
	}
	if i == len(s) {
		return -1
	}
	if !isLetter(s[i]) {
		return 0
	}
	for i < len(s) && isAlnum(s[i]) {
		i++
	}
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n') {
		i++
	}
	if i < len(s) && s[i] == '/' && (s[1] != '/') {
		i++
	}
	switch {
	case i == len(s):
		return -1
	case s[i] == '>':
		return i + 1
	}
	return 0
}

func isLetter(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }

func isAlnum(c byte) bool { return isLetter(c) || '0' <= c && c <= '9' }
