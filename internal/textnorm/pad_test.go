package textnorm

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// pads are what a reader does not see, or sees as a separator, between two
// characters: separators, ignorable code points as runes and as character
// references, empty tags and comments.
var pads = []string{".", " ", "-", "_", "*", "\u2060", "\u200b", "&NoBreak;", "&#x2060;", "&#8288;", "&zwj;", "<b>", "</i>", "<!---->", "<br/>"}

// pad returns up to n bytes of padding.
func pad(r *rand.Rand, n int) string {
	var b strings.Builder
	for b.Len() < n {
		p := pads[r.IntN(len(pads))]
		if b.Len()+len(p) > n {
			break
		}
		b.WriteString(p)
	}
	return b.String()
}

// singleSeparators reports whether, in e, the units that add to the
// squeezed view are apart by at most one byte that adds nothing: the shape
// the documented limit (MaxPad) promises padding for.
func singleSeparators(e string) bool {
	b := []byte(e)
	run, seen := 0, false
	for i := 0; i < len(b); {
		_, q, n := unitViews(b[i:], true)
		if q != "" {
			if seen && run > 1 {
				return false
			}
			run, seen = 0, true
		} else {
			run += n
		}
		i += n
	}
	return true
}

// padUnits puts up to MaxPad bytes of padding between every two units of e.
func padUnits(r *rand.Rand, e string) string {
	b := []byte(e)
	var out strings.Builder
	for i := 0; i < len(b); {
		n := unitEnd(b[i:])
		if i > 0 {
			out.WriteString(pad(r, MaxPad-r.IntN(3)))
		}
		out.Write(b[i : i+n])
		i += n
	}
	return out.String()
}

// TestPaddingBetweenEveryCharacter: a value in any encoding whose
// punctuation comes one character at a time is found, whole text and
// streamed, with up to MaxPad bytes of padding between every two of its
// units, as the views' comment promises.
func TestPaddingBetweenEveryCharacter(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 16))
	tried := map[string]int{}
	for range 1500 {
		v := randomValue(r)
		if _, q := Views(v); len(q) < 20 {
			continue
		}
		e := encoders[r.IntN(len(encoders))]
		form := e.enc(r, v)
		if !singleSeparators(form) {
			continue
		}
		tried[e.name]++
		text := "Here it is: " + padUnits(r, form) + " and more."
		m := NewMatcher([]string{v}, Options{})
		if len(m.Find(text)) == 0 {
			t.Fatalf("%s form of %q, padded between every unit, not found in %q", e.name, v, text)
		}
		if _, ms := stream(m, pieces(r, text)); len(ms) == 0 {
			t.Fatalf("%s form of %q, padded between every unit, not found by a stream in %q", e.name, v, text)
		}
	}
	// These put a separator of more than one byte between every two
	// characters themselves: the limit does not promise more padding.
	multi := map[string]bool{"zwj": true, "soft hyphen": true, "dotted": true, "empty tags": true}
	for _, e := range encoders {
		if tried[e.name] == 0 && !multi[e.name] {
			t.Errorf("encoding %s never tried", e.name)
		}
	}
}

// TestPaddingBeyondTheLimit is the limit's other side: one gap of more than
// maxGap bytes that add nothing hides a value.
func TestPaddingBeyondTheLimit(t *testing.T) {
	v := "k7Qz9Wx2Rt5Mv8Np3Lb6"
	m := NewMatcher([]string{v}, Options{})
	at := func(n int) string { return v[:10] + strings.Repeat(".", n) + v[10:] }
	if len(m.Find(at(maxGap))) == 0 {
		t.Fatalf("%d bytes in one gap: not found", maxGap)
	}
	if len(m.Find(at(maxGap+1))) != 0 {
		t.Fatalf("%d bytes in one gap: found", maxGap+1)
	}
}
