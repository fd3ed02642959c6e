package guard

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/textnorm"
)

// prose is ordinary text, with no public beginning of a canary in it.
const prose = "Your order shipped on Monday and should arrive by Thursday at the latest. " +
	"If it does not, write to us with the order number and we will look into it " +
	"at once; most parcels arrive early, and a few take a day or two longer."

// crowdedGuard returns a guard where acme has a canary and many other
// tenants have canaries and tracked secrets, so that every pass and the
// secrets' windows are on.
func crowdedGuard(t testing.TB, others int) *Guard {
	g := New()
	g.SetCanaries(acme, []string{newCanary(t)})
	for i := range others {
		id := tenant.ID(fmt.Sprintf("t%04d", i))
		g.SetCanaries(id, []string{newCanary(t)})
		if i < 20 {
			g.SetSecret(id, "key", []byte(newCanary(t)+"-Zq9"))
		}
	}
	return g
}

// TestStreamHoldsBackLittle checks that a stream of prose written in small
// pieces has sent all but a few bytes after each piece: a canary pass holds
// back only what could begin one of the receiver's canaries and the last
// startLen-1 letters and digits (before a place that may be removed, or at
// the end), not a window of letters.
func TestStreamHoldsBackLittle(t *testing.T) {
	g := crowdedGuard(t, 200)
	for _, size := range []int{1, 3, 4, 7} {
		s := g.Stream(acme, nil)
		var sent strings.Builder
		for at := 0; at < len(prose); at += size {
			out, v := s.Write(prose[at:min(len(prose), at+size)])
			if v.Blocked {
				t.Fatalf("blocked: %q", v.Reasons)
			}
			sent.WriteString(out)
			written := min(len(prose), at+size)
			held := prose[sent.Len():written]
			if _, q := textnorm.Views(held); len(q) > 2*(startLen-1) {
				t.Fatalf("pieces of %d bytes: after %d bytes holding %q, %d letters and digits, want at most %d", size, written, held, len(q), 2*(startLen-1))
			}
		}
		out, _ := s.Flush()
		if got := sent.String() + out; got != prose {
			t.Fatalf("pieces of %d bytes: sent %q, want %q", size, got, prose)
		}
	}
}

// TestStreamCutsIgnoreOtherTenants checks that where a stream is cut does
// not depend on other tenants' canaries: text that begins another tenant's
// canary (in its plain or reversed form) is sent exactly as text that begins
// none, so the receiver cannot find another tenant's canary one character
// at a time from how its stream is cut.
func TestStreamCutsIgnoreOtherTenants(t *testing.T) {
	own := newCanary(t)
	other := newCanary(t)
	sq := func(s string) string { _, q := textnorm.Views(s); return q }
	rev := []rune(sq(other))
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	// The beginnings of other's forms past its public "bkc-", at every
	// length a stream could hold back.
	var probes []string
	for n := 1; n <= 12; n++ {
		probes = append(probes, sq(other)[3:3+n], string(rev[:n]))
	}
	cutsOf := func(g *Guard) [][]string {
		var all [][]string
		for _, p := range probes {
			s := g.Stream(acme, nil)
			var outs []string
			for _, piece := range []string{"See ", p, " then", " more."} {
				out, v := s.Write(piece)
				if v.Blocked {
					t.Fatalf("probe %q blocked: %q", p, v.Reasons)
				}
				outs = append(outs, out)
			}
			out, _ := s.Flush()
			all = append(all, append(outs, out))
		}
		return all
	}
	with, without := New(), New()
	with.SetCanaries(acme, []string{own})
	without.SetCanaries(acme, []string{own})
	with.SetCanaries(globex, []string{other})
	without.SetCanaries(globex, []string{newCanary(t)})
	a, b := cutsOf(with), cutsOf(without)
	for i := range a {
		if fmt.Sprint(a[i]) != fmt.Sprint(b[i]) {
			t.Fatalf("probe %q: cut %q with globex's canary, %q without", probes[i], a[i], b[i])
		}
	}
}

// canaryForms returns the whole forms of c a stream must catch.
func canaryForms(c string) []textnorm.Encoded {
	var out []textnorm.Encoded
	for _, e := range textnorm.Encodings(c) {
		if !e.Interior {
			out = append(out, e)
		}
	}
	out = append(out,
		textnorm.Encoded{Form: textnorm.Plain, Text: strings.ToUpper(c)},
		textnorm.Encoded{Form: textnorm.Plain, Text: strings.Join(strings.Split(c, ""), " ")},
		textnorm.Encoded{Form: textnorm.Plain, Text: strings.Join(strings.Split(c, ""), "\u200b")},
	)
	return out
}

// splits returns text cut once at every byte, and cut at every byte.
func splits(text string) [][]string {
	var out [][]string
	for cut := 0; cut <= len(text); cut++ {
		out = append(out, []string{text[:cut], text[cut:]})
	}
	var bytes []string
	for i := range len(text) {
		bytes = append(bytes, text[i:i+1])
	}
	return append(out, bytes)
}

// TestStreamOwnCanarySplit checks the receiver's own canary in every form,
// split at every byte: the stream removes exactly what Check removes, and
// sends nothing Check would not.
func TestStreamOwnCanarySplit(t *testing.T) {
	g := crowdedGuard(t, 50)
	own := g.canaries[acme][0]
	for _, e := range canaryForms(own) {
		text := "Here is what I found: " + e.Text + " and more words after it."
		want := g.Check(acme, text, nil)
		if want.Blocked || strings.Contains(want.Text, e.Text) {
			t.Fatalf("%v form %q: Check gave %q blocked %v, want it removed", e.Form, e.Text, want.Text, want.Blocked)
		}
		for _, pieces := range splits(text) {
			sent, v, valid := stream(g, pieces, nil)
			if v.Blocked || sent != want.Text || !valid {
				t.Fatalf("%v form, pieces %q: sent %q (blocked %v, valid %v), want %q", e.Form, pieces, sent, v.Blocked, valid, want.Text)
			}
		}
	}
}

// TestStreamForeignCanarySplit checks another tenant's canary in every
// form, split at every byte: the stream blocks, and, but for the reversed
// form (which begins with random characters, see publicPrefixes), no byte
// of the form was sent before it did.
func TestStreamForeignCanarySplit(t *testing.T) {
	// The first random character decides bits of the encoded forms' first
	// mixed characters; each class (letter, digit) must be held, whichever
	// this process's random samples are.
	for _, first := range []string{"", "a", "z", "2", "7"} {
		other := newCanary(t)
		if first != "" {
			other = other[:len(canaryPrefix)] + first + other[len(canaryPrefix)+1:]
		}
		g := crowdedGuard(t, 50)
		g.SetCanaries(globex, []string{other})
		const before = "Here is what I found: "
		for _, e := range canaryForms(other) {
			text := before + e.Text + " and more words after it."
			if v := g.Check(acme, text, nil); !v.Blocked {
				t.Fatalf("%v form %q: Check did not block", e.Form, e.Text)
			}
			for _, pieces := range splits(text) {
				sent, v, _ := stream(g, pieces, nil)
				if !v.Blocked {
					t.Fatalf("%s: %v form, pieces %q: not blocked", other, e.Form, pieces)
				}
				if e.Form != textnorm.Reversed && len(sent) > len(before) {
					t.Fatalf("%s: %v form, pieces %q: sent %q, part of the canary", other, e.Form, pieces, sent)
				}
				if !utf8.ValidString(sent) {
					t.Fatalf("pieces %q: sent invalid UTF-8", pieces)
				}
			}
		}
	}
}
