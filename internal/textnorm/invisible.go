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
const MaxInvisibleRun = 3

// StripInvisibleRuns returns s without its runs of more than
// MaxInvisibleRun invisible code points.
func StripInvisibleRuns(s string) string {
	var f InvisibleFilter
	return f.Write(s) + f.Flush()
}

// InvisibleFilter removes long invisible runs from a stream of text pieces,
// holding back at most MaxInvisibleRun invisible code points and an
// incomplete UTF-8 sequence. The zero value is ready to use.
type InvisibleFilter struct {
	pending string // bytes not yet decided: an invisible run, a partial rune
	run     int    // invisible code points in pending (or seen, if dropping)
	drop    bool   // the current run is too long and is being removed
}

// Write takes the next piece and returns what can be sent.
func (f *InvisibleFilter) Write(piece string) string {
	in := f.pending + piece
	f.pending = ""
	var out strings.Builder
	runStart := -1 // start in `in` of the undecided invisible run
	for i := 0; i < len(in); {
		r, n := utf8.DecodeRuneInString(in[i:])
		if r == utf8.RuneError && n <= 1 && !utf8.FullRuneInString(in[i:]) {
			break // an incomplete sequence: wait for the rest
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
	// Keep the undecided run and any partial rune for the next piece.
	rest := len(in)
	for j := len(in); j > 0 && j > len(in)-utf8.UTFMax; j-- {
		if utf8.RuneStart(in[j-1]) {
			if !utf8.FullRuneInString(in[j-1:]) {
				rest = j - 1
			}
			break
		}
	}
	if runStart >= 0 {
		f.pending = in[runStart:rest] + in[rest:]
		// The run's code points are counted again when pending is rescanned.
		f.run = 0
	} else {
		f.pending = in[rest:]
	}
	return out.String()
}

// Flush returns what is left at the end of the stream: a short invisible
// run is kept, a partial rune passes as it is.
func (f *InvisibleFilter) Flush() string {
	out := ""
	if !f.drop {
		out = f.pending
	}
	f.pending, f.run, f.drop = "", 0, false
	return out
}

// invisible reports whether r shows nothing by itself: a default-ignorable
// code point or a combining mark.
func invisible(r rune) bool { return Ignorable(r) }
