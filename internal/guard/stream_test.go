package guard

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// streamFixture is a guard with two tenants and a generator of answers that
// mix everything the guard looks for.
type streamFixture struct {
	g                  *Guard
	own, other         string // acme's and globex's canaries
	ownDoc, otherDoc   []string
	filler             []string
	allow              []string
	fragments, leakers []func(r *rand.Rand) string
	rare               func(r *rand.Rand) string
}

func newStreamFixture(t *testing.T) *streamFixture {
	r := rand.New(rand.NewPCG(42, 42))
	vocab := pseudoWords(r, 900)
	f := &streamFixture{
		g:        New(),
		own:      newCanary(t),
		other:    newCanary(t),
		ownDoc:   randomText(r, vocab[:300], 300),
		otherDoc: randomText(r, vocab[300:600], 300),
		filler:   vocab[600:],
		allow:    []string{"ok.example"},
	}
	f.g.SetCanaries(acme, []string{f.own})
	f.g.SetCanaries(globex, []string{f.other})
	f.g.AddText(acme, strings.Join(f.ownDoc, " "))
	f.g.AddText(globex, strings.Join(f.otherDoc, " "))
	fixed := func(s ...string) func(*rand.Rand) string {
		return func(r *rand.Rand) string { return s[r.IntN(len(s))] }
	}
	run := func(doc []string, min, max int) func(*rand.Rand) string {
		return func(r *rand.Rand) string {
			n := min + r.IntN(max-min+1)
			off := r.IntN(len(doc) - n)
			return " " + mangle(r, doc[off:off+n]) + " "
		}
	}
	long := strings.Repeat("a", maxConstruct)
	f.fragments = []func(*rand.Rand) string{
		func(r *rand.Rand) string { return strings.Join(randomText(r, f.filler, 1+r.IntN(8)), " ") + " " },
		func(r *rand.Rand) string { return mangle(r, randomText(r, f.filler, 1+r.IntN(8))) },
		fixed("\n", "\n\n", "> ", ". ", ", ", " "),
		fixed(f.own, strings.ToUpper(f.own), "x"+f.own+"y"),
		run(f.ownDoc, 5, 30),
		run(f.otherDoc, 3, minWords-1), // too short to be reported
		fixed(
			"[t](https://ok.example/x)", "[t](https://evil.example/?d=1)", "![i](https://evil.example/p.png?d=2)",
			"![i](https://ok.example/i.png)", "<https://evil.example/>", `<img src="https://evil.example/x">`,
			"\n[1]: https://evil.example/\n", "[a [b](https://evil.example) c](https://ok.example)",
			"[![b](https://evil.example/b.png)](https://ok.example)", `<a href="https://ok.example">x</a>`,
			"[docs][1]", "](https://evil.example)", "x < y", "<b>bold</b>",
			"<img @x src=https://evil.example/p.png>", `<img src="https://evil.example/p.png`,
			"<div\n<img src=https://evil.example/x.png @y>", "<img src=https://evil.example/p.png\n\n",
			"x<y then ", `<p title='it'>`,
		),
		fixed("[", "![", "](", "<", "<b ", "!", "]", "[x", "![y]", "(", ")"),
		fixed("héllo wörld ", "日本語のテキスト ", "zero\u200bwidth ", "🙂 ", "ß"),
	}
	// Long constructs are rare: held back whole, they make byte-by-byte
	// streams slow.
	f.rare = fixed("["+long+"](https://evil.example)", "<https://ok.example/"+long[:maxConstruct-30]+">")
	f.leakers = []func(*rand.Rand) string{
		fixed(f.other, strings.ToUpper(f.other)),
		run(f.otherDoc, minWords, 20),                                  // reported, not blocked
		fixed(f.other[:8] + "[x](https://evil.example)" + f.other[8:]), // a canary formed by removal
		fixed(f.other[:8] + f.own + f.other[8:]),
		fixed("[x]![y](https://evil.example/a)(https://evil.example/b)"),
		fixed("![x](https://evil.example/?q=" + long + ")"),
	}
	return f
}

func (f *streamFixture) text(r *rand.Rand) string {
	var b strings.Builder
	for range 1 + r.IntN(40) {
		if r.IntN(200) == 0 {
			b.WriteString(f.rare(r))
			continue
		}
		b.WriteString(f.fragments[r.IntN(len(f.fragments))](r))
	}
	if r.IntN(3) == 0 {
		// Somewhere in the middle, something that blocks.
		s := b.String()
		at := r.IntN(len(s) + 1)
		for at < len(s) && !utf8.RuneStart(s[at]) {
			at++
		}
		return s[:at] + f.leakers[r.IntN(len(f.leakers))](r) + s[at:]
	}
	return b.String()
}

// cuts splits s at random byte offsets, inside runes too: a caller may.
func cuts(r *rand.Rand, s string) []string {
	switch r.IntN(4) {
	case 0:
		return strings.SplitAfter(s, "") // one rune each
	case 1:
		var out []string
		for i := 0; i < len(s); i++ {
			out = append(out, s[i:i+1])
		}
		return out
	}
	n := r.IntN(20)
	at := make([]int, n)
	for i := range at {
		at[i] = r.IntN(len(s) + 1)
	}
	slices.Sort(at)
	var out []string
	prev := 0
	for _, a := range at {
		out = append(out, s[prev:a])
		prev = a
	}
	return append(out, s[prev:])
}

// stream runs pieces through a stream and returns what it sent and its
// final verdict.
func stream(g *Guard, pieces []string, allow []string) (string, Verdict, bool) {
	s := g.Stream(acme, allow)
	var sent strings.Builder
	valid := true
	for _, p := range pieces {
		out, v := s.Write(p)
		valid = valid && utf8.ValidString(out)
		sent.WriteString(out)
		if v.Blocked {
			return sent.String(), v, valid
		}
	}
	out, v := s.Flush()
	sent.WriteString(out)
	return sent.String(), v, valid && utf8.ValidString(out)
}

// TestStreamEquivalence checks, over random answers and random cuts, that a
// stream sends exactly what Check would and blocks exactly when it would.
func TestStreamEquivalence(t *testing.T) {
	f := newStreamFixture(t)
	r := rand.New(rand.NewPCG(1, 1))
	var blocked, rewritten int
	for i := range 400 {
		text := f.text(r)
		want := f.g.Check(acme, text, f.allow)
		if want.Blocked {
			blocked++
		} else if want.Text != text {
			rewritten++
		}
		// What is queued for the silent check: the shingles of the text
		// sent, in order.
		wantChecks := drain(f.g)
		if hs := split(want.Text, true).shingles(f.g.seed); !want.Blocked && !slices.Equal(joinChecks(wantChecks), hs) {
			t.Fatalf("text %d: Check queued %d shingles, want the %d of its Text", i, len(joinChecks(wantChecks)), len(hs))
		}
		for range 8 {
			pieces := cuts(r, text)
			sent, got, valid := stream(f.g, pieces, f.allow)
			if got.Blocked != want.Blocked {
				t.Fatalf("text %d: stream blocked %v %q, Check blocked %v %q\ntext %q\npieces %q", i, got.Blocked, got.Reasons, want.Blocked, want.Reasons, text, pieces)
			}
			if want.Blocked {
				continue
			}
			if sent != want.Text || !slices.Equal(got.Reasons, want.Reasons) {
				t.Fatalf("text %d: stream sent %q %q\nCheck gave %q %q\npieces %q", i, sent, got.Reasons, want.Text, want.Reasons, pieces)
			}
			if !valid {
				t.Fatalf("text %d: stream sent a piece that is not valid UTF-8; pieces %q", i, pieces)
			}
			if got := drain(f.g); !slices.EqualFunc(got, wantChecks, func(a, b textCheck) bool {
				return a.receiver == b.receiver && a.short == b.short && slices.Equal(a.hs, b.hs)
			}) {
				t.Fatalf("text %d: stream queued %d checks, Check %d, or other shingles; pieces %q", i, len(got), len(wantChecks), pieces)
			}
		}
	}
	t.Logf("400 answers: %d blocked, %d rewritten", blocked, rewritten)
	if blocked < 50 || rewritten < 50 {
		t.Fatalf("corpus too tame: %d blocked, %d rewritten", blocked, rewritten)
	}
}

// drain returns the checks queued on g.
func drain(g *Guard) []textCheck {
	var out []textCheck
	for {
		select {
		case c := <-g.checks:
			out = append(out, c)
		default:
			return out
		}
	}
}

// joinChecks returns the shingles of checks, without the overlap of
// successive batches.
func joinChecks(cs []textCheck) []uint64 {
	var hs []uint64
	for i, c := range cs {
		if i > 0 {
			c.hs = c.hs[w-1:]
		}
		hs = append(hs, c.hs...)
	}
	return hs
}
