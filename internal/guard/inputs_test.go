package guard

import (
	"encoding/base64"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestInputsCarry checks the class "the guard as a weapon" by provenance:
// another tenant's canary or secret that the request's own inputs carry
// passes (reported in Carried, never in Leaks, so its owner hears nothing),
// in any form; one they do not carry still blocks, even the same owner's
// other canary or secret; and the receiver's own canary is still removed.
func TestInputsCarry(t *testing.T) {
	g := New()
	own, planted, other := newCanary(t), newCanary(t), newCanary(t)
	g.SetCanaries(acme, []string{own})
	g.SetCanaries(globex, []string{planted, other})
	token := "gx_" + randomB64(t, 30)
	otherToken := "gx_" + randomB64(t, 30)
	if !g.SetSecret(globex, "api_token", []byte(token)) || !g.SetSecret(globex, "db_password", []byte(otherToken)) {
		t.Fatal("test secrets are not tracked")
	}
	page := "Contact us. Ref " + planted + ". Token: " + token + " (public, rotate later)."
	tests := []struct {
		name    string
		inputs  []string
		answer  string
		blocked bool
		carried []Leak
		want    string // Text when not blocked
	}{
		{name: "planted canary, no inputs", answer: "The page says " + planted, blocked: true},
		{name: "planted canary carried", inputs: []string{page}, answer: "The page says " + planted + ".",
			carried: []Leak{{globex, LeakCanary}}, want: "The page says " + planted + "."},
		{name: "carried canary in another form", inputs: []string{page},
			answer:  "Encoded: " + base64.StdEncoding.EncodeToString([]byte(planted)),
			carried: []Leak{{globex, LeakCanary}}, want: "Encoded: " + base64.StdEncoding.EncodeToString([]byte(planted))},
		{name: "same owner's other canary not carried", inputs: []string{page}, answer: "Also " + other, blocked: true},
		{name: "carried token", inputs: []string{page}, answer: "Use " + token + " to log in.",
			carried: []Leak{{globex, LeakSecret}}, want: "Use " + token + " to log in."},
		{name: "same owner's other secret not carried", inputs: []string{page}, answer: "Use " + otherToken, blocked: true},
		{name: "carried in a look-alike input", inputs: []string{strings.ToUpper(planted)}, answer: planted,
			carried: []Leak{{globex, LeakCanary}}, want: planted},
		{name: "input padded with invisible runs", inputs: []string{between(planted, "\u200b\u200b\u200b\u200b")}, answer: planted,
			carried: []Leak{{globex, LeakCanary}}, want: planted},
		{name: "own canary still removed", inputs: []string{own}, answer: "x " + own + " y", want: "x  y"},
		{name: "one carried, one not", inputs: []string{page}, answer: planted + " and " + other, blocked: true},
	}
	r := rand.New(rand.NewPCG(9, 8))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := g.Inputs(acme, nil, tt.inputs...)
			for _, v := range []Verdict{g.CheckFrom(acme, tt.answer, nil, in), streamFrom(g, r, in, tt.answer)} {
				if v.Blocked != tt.blocked {
					t.Fatalf("blocked = %v, want %v (reasons %v)", v.Blocked, tt.blocked, v.Reasons)
				}
				if tt.blocked {
					if !slices.ContainsFunc(v.Leaks, func(l Leak) bool { return l.Owner == globex }) {
						t.Errorf("Leaks = %v, want globex's", v.Leaks)
					}
					continue
				}
				if v.Text != tt.want {
					t.Errorf("Text = %q, want %q", v.Text, tt.want)
				}
				if len(v.Leaks) != 0 || !slices.Equal(v.Carried, tt.carried) {
					t.Errorf("Leaks = %v, Carried = %v, want none and %v", v.Leaks, v.Carried, tt.carried)
				}
			}
		})
	}
	// The inputs of one tenant's request exempt nothing for another's.
	in := g.Inputs(acme, nil, page)
	if v := g.CheckFrom(initech, planted, nil, g.Inputs(initech, nil)); !v.Blocked {
		t.Error("initech's answer with globex's canary passed")
	}
	if v := g.CheckFrom(acme, planted, nil, in); v.Blocked {
		t.Errorf("acme's answer blocked: %v", v.Reasons)
	}
	// A check that finds nothing of another tenant's, the own canary
	// included, does not scan the inputs: clean answers pay nothing.
	lazy := g.Inputs(acme, nil, page)
	g.CheckFrom(acme, "nothing here but "+own, nil, lazy)
	if lazy.texts == nil {
		t.Error("a clean answer's check scanned the inputs")
	}
	// Inputs adds to base without changing it.
	base := g.Inputs(acme, nil)
	more := g.Inputs(acme, base, page)
	if !base.Empty() || more.Empty() {
		t.Errorf("base empty = %v, more empty = %v; want true, false", base.Empty(), more.Empty())
	}
}

// streamFrom runs text through StreamFrom cut at random points and returns
// the last verdict with the text the stream sent.
func streamFrom(g *Guard, r *rand.Rand, in *Inputs, text string) Verdict {
	s := g.StreamFrom(acme, nil, in)
	var sent strings.Builder
	for rest := text; ; {
		if rest == "" {
			out, v := s.Flush()
			sent.WriteString(out)
			v.Text = sent.String()
			return v
		}
		n := min(len(rest), 1+r.IntN(12))
		out, v := s.Write(rest[:n])
		if v.Blocked {
			return v
		}
		sent.WriteString(out)
		rest = rest[n:]
	}
}

// TestInputsReadLikeTheCheck checks that a value an input splits around a
// link, which the answer's check joins by removing the link, counts as
// carried: a page cannot plant a canary in halves to get past the inputs
// and be caught in the answer.
func TestInputsReadLikeTheCheck(t *testing.T) {
	g := New()
	planted := newCanary(t)
	g.SetCanaries(globex, []string{planted})
	for _, split := range []string{
		planted[:9] + "[](https://evil.example/a)" + planted[9:],
		planted[:9] + `<a href="https://evil.example/">` + planted[9:],
		planted[:9] + "\n[r]: https://evil.example/\n" + planted[9:],
	} {
		if v := g.Check(acme, split, nil); !v.Blocked {
			t.Fatalf("test bug: %q does not form the canary in the check (%q)", split, v.Text)
		}
		in := g.Inputs(acme, nil, "Our page: "+split)
		if v := g.CheckFrom(acme, "Quote: "+split, nil, in); v.Blocked {
			t.Errorf("an answer quoting %q, which its input held, was blocked: %v", split, v.Reasons)
		}
		if !g.Foreign(acme, split) {
			t.Errorf("Foreign(%q) = false, want the split canary found", split)
		}
	}
}

func TestJSONUnescape(t *testing.T) {
	tests := []struct{ in, want string }{
		{`plain`, `plain`},
		{`a\nb\tc\"d\\e\/f`, "a\nb\tc\"d\\e/f"},
		{`\u003ca href=x\u003e`, `<a href=x>`},
		{`bad \u12 and \q and trailing \`, `bad \u12 and \q and trailing \`},
	}
	for _, tt := range tests {
		if got := jsonUnescape(tt.in); got != tt.want {
			t.Errorf("jsonUnescape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
