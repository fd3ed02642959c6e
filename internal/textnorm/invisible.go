package textnorm

import (
	"strings"
	"unicode/utf8"
)

// MaxInvisibleRun is the longest run of invisible code points (default
// ignorables and combining marks) that text keeps; a longer run is removed
// whole. A match in a view may not span more than maxGap bytes that add
// nothing to it, so padding the characters of a secret or canary with long
// invisible runs would hide it from every matcher; removing such runs before
// matching closes that, and costs ordinary text nothing: no script needs more
// than three of them in a row (emoji sequences use one joiner at a time).
// An HTML character reference to an invisible code point (&NoBreak;,
// &#x2060;, &zwj;) counts as one, since a renderer shows it as that code
// point: a run of them is a run of invisible code points.
const MaxInvisibleRun = 3

// StripInvisibleRuns returns s without its runs of more than
// MaxInvisibleRun invisible code points.
func StripInvisibleRuns(s string) string {
	var f InvisibleFilter
	return f.Write(s) + f.Flush()
}

// InvisibleFilter removes long invisible runs from a stream of text pieces,
// holding back at most MaxInvisibleRun invisible code points (or character
// references to them) and a unit not complete yet (a UTF-8 sequence, a
// character reference). The zero value is ready to use.
type InvisibleFilter struct {
	pending string // bytes not yet decided: an invisible run, a partial unit
	run     int    // invisible code points in pending (or seen, if dropping)
	drop    bool   // the current run is too long and is being removed
}

// Write takes the next piece and returns what can be sent.
func (f *InvisibleFilter) Write(piece string) string {
	return f.process(f.pending+piece, false)
}

// Flush returns what is left at the end of the stream: a short invisible
// run is kept, a partial unit passes as it is.
func (f *InvisibleFilter) Flush() string {
	out := f.process(f.pending, true)
	f.pending, f.run, f.drop = "", 0, false
	return out
}

func (f *InvisibleFilter) process(in string, final bool) string {
	f.pending = ""
	var out strings.Builder
	runStart := -1 // start in `in` of the undecided invisible run
	i := 0
	for i < len(in) {
		r, n, ok := invisibleUnit(in[i:], final)
		if !ok {
			break // a unit not complete yet: wait for the rest
		}
		if !invisible(r) {
			if runStart >= 0 && !f.drop {
				out.WriteString(in[runStart:i])
			}
			runStart, f.run, f.drop = -1, 0, false
			out.WriteString(in[i : i+n])
			i += n
			continue
		}
		if runStart < 0 && !f.drop {
			runStart = i
		}
		f.run++
		if f.run > MaxInvisibleRun {
			f.drop, runStart = true, -1
		}
		i += n
	}
	switch {
	case final:
		if runStart >= 0 && !f.drop {
			out.WriteString(in[runStart:])
		}
	case runStart >= 0:
		// The run's code points are counted again when pending is rescanned.
		f.pending, f.run = in[runStart:], 0
	default:
		f.pending = in[i:]
	}
	return out.String()
}

// invisibleUnit decodes the rune or HTML character reference at the start
// of s. ok is false when s may hold the start of a longer unit than it has
// (only when !final).
func invisibleUnit(s string, final bool) (r rune, n int, ok bool) {
	if s[0] == '&' {
		return charRef([]byte(s[:min(len(s), maxUnit)]), final)
	}
	r, n = utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && n <= 1 && !final && !utf8.FullRuneInString(s) {
		return 0, 0, false
	}
	return r, n, true
}

// invisible reports whether r shows nothing by itself: a default-ignorable
// code point or a combining mark.
func invisible(r rune) bool { return Ignorable(r) }
