package textnorm

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// referenceViews builds both views of text unit by unit with unitViews and
// view.add, fed in pieces as a Scanner is: the definition the fast paths of
// Scanner.build must agree with.
func referenceViews(ps []string) (exact, squeezed view) {
	var orig []byte
	proc := 0
	for i, p := range ps {
		orig = append(orig, p...)
		final := i == len(ps)-1
		for proc < len(orig) {
			d, q, n := unitViews(orig[proc:], final)
			if n == 0 {
				break
			}
			exact.add(d, proc, proc+n)
			squeezed.add(q, proc, proc+n)
			proc += n
		}
	}
	return exact, squeezed
}

// viewText is text made to exercise every path of building a view: runs of
// letters and digits, separators longer and shorter than maxGap, the
// letters whose skeleton is "rn", escapes (whole, cut and malformed),
// ignorable and non-ASCII runes, and invalid UTF-8.
func viewText(r *rand.Rand) string {
	parts := []string{
		"abc", "XyZ", "0123456789", "m", "M", "mm", "rn", " ", ", ", "|", "I",
		strings.Repeat(" ", maxGap), strings.Repeat(" ", maxGap+1), strings.Repeat(".-", maxGap),
		"%41", "%4", "%", "%e2%82%ac", "%zz", `\u0041`, `\ud83d\ude00`, `\u12`, `\x41`, `\x`,
		`\n`, `\\`, `\"`, `\`, "\u200d", "\u00ad", "\u200b\u200b\u200b\u200b\u200b\u200b",
		"é", "Ａ", "ß", "😀", "\xff", "\xe2\x82",
		"&#98;", "&#x6b;", "&amp;", "&", "&#", "&#9", "&lt", "&nosuch;", "<b>", "</b>", "<!---->", "<!--", "<", "<br/>", "<a href=x>",
	}
	var b strings.Builder
	for range r.IntN(80) {
		b.WriteString(parts[r.IntN(len(parts))])
	}
	return b.String()
}

// TestBuildMatchesUnitByUnit checks that a Scanner's views, built with the
// fast paths for ASCII runs, are byte for byte and offset for offset the
// views built unit by unit, with and without exact patterns (the two ways
// build goes), for text fed in random pieces.
func TestBuildMatchesUnitByUnit(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	matchers := map[string]*Matcher{
		"squeezed only":      NewMatcher([]string{"sk-live-0123456789abcdef"}, Options{}),
		"exact and squeezed": NewMatcher([]string{"sk-live-0123456789abcdef", "hunter22"}, Options{}),
	}
	for name, m := range matchers {
		if name == "exact and squeezed" && len(m.exact.pats) == 0 {
			t.Fatalf("%s: no exact patterns", name)
		}
		for range 3000 {
			text := viewText(r)
			ps := pieces(r, text)
			if len(ps) == 0 {
				ps = []string{""}
			}
			s := &Scanner{}
			s.reset(m)
			for i, p := range ps {
				s.orig = append(s.orig, p...)
				s.build(i == len(ps)-1)
			}
			d, q := referenceViews(ps)
			check := func(which string, got, want *view) {
				t.Helper()
				if !slices.Equal(got.buf, want.buf) || !slices.Equal(got.src, want.src) ||
					got.lastBreak != want.lastBreak || got.broken != want.broken ||
					got.lastOut != want.lastOut {
					t.Fatalf("%s, %s view of %q in pieces %q:\ngot  %q %v break %d broken %v lastOut %d\nwant %q %v break %d broken %v lastOut %d",
						name, which, text, ps, got.buf, got.src, got.lastBreak, got.broken, got.lastOut,
						want.buf, want.src, want.lastBreak, want.broken, want.lastOut)
				}
			}
			if len(m.exact.pats) > 0 {
				check("exact", &s.exact, &d)
			}
			check("squeezed", &s.squeezed, &q)
		}
	}
}
