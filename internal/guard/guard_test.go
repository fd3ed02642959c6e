package guard

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

const (
	acme    = tenant.ID("acme")
	globex  = tenant.ID("globex")
	initech = tenant.ID("initech")
)

func newCanary(t testing.TB) string {
	t.Helper()
	c, err := NewCanary()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewCanary(t *testing.T) {
	format := regexp.MustCompile(`^bkc-[a-z2-7]{20}$`)
	seen := map[string]bool{}
	for range 1000 {
		c := newCanary(t)
		if !format.MatchString(c) || !validCanary(c) {
			t.Fatalf("NewCanary() = %q, want bkc- and 20 base32 characters", c)
		}
		if seen[c] {
			t.Fatalf("NewCanary() repeated %q", c)
		}
		seen[c] = true
	}
}

func TestCanaries(t *testing.T) {
	g := New()
	own, other := newCanary(t), newCanary(t)
	g.SetCanaries(acme, []string{own, "short"}) // too short to be a canary: ignored
	g.SetCanaries(globex, []string{other})
	tests := []struct {
		name    string
		text    string
		blocked bool
		want    string   // Text, when not blocked
		reasons []string // all reasons when not blocked; one of them when blocked
	}{
		{name: "another tenant's canary", text: "the code is " + other + ".", blocked: true, reasons: []string{ReasonForeignCanary}},
		{name: "upper case", text: strings.ToUpper(other), blocked: true, reasons: []string{ReasonForeignCanary}},
		{name: "inside a word", text: "x" + other + "y", blocked: true, reasons: []string{ReasonForeignCanary}},
		{name: "inside an image URL", text: "![a](https://ok.example/?q=" + other + ")", blocked: true, reasons: []string{ReasonForeignCanary}},
		{name: "inside a removed image URL", text: "![a](https://evil.example/?q=" + other + ")", blocked: true, reasons: []string{ReasonForeignCanary}},
		{name: "own canary removed", text: "my prompt says " + own + " ok", want: "my prompt says  ok", reasons: []string{ReasonOwnCanary}},
		{name: "own canary in upper case removed", text: "<<" + strings.ToUpper(own) + ">>", want: "<<>>", reasons: []string{ReasonOwnCanary}},
		{name: "own canary twice", text: own + own, want: "", reasons: []string{ReasonOwnCanary}},
		// The cut canary ends the text: followed by letters, it would be
		// completed by any that is its last (separators are seen through).
		{name: "prefix only", text: own[:8] + " and " + other[:len(other)-1] + ".", want: own[:8] + " and " + other[:len(other)-1] + "."},
		{name: "short values are not canaries", text: "short", want: "short"},
		{name: "foreign canary formed by removing the own one", text: other[:10] + own + other[10:], blocked: true, reasons: []string{ReasonForeignCanary}},
		{name: "own canary formed by removing it", text: own[:6] + own + own[6:], blocked: true, reasons: []string{ReasonFormedCanary}},
		{name: "foreign canary formed by removing a link", text: other[:10] + "[" + other[10:14] + "](https://evil.example)" + other[14:], blocked: true, reasons: []string{ReasonForeignCanary}},
		{name: "empty", text: "", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := g.Check(acme, tt.text, []string{"ok.example"})
			if v.Blocked != tt.blocked {
				t.Fatalf("Check(%q).Blocked = %v, want %v (reasons %q)", tt.text, v.Blocked, tt.blocked, v.Reasons)
			}
			if tt.blocked {
				if v.Text != "" || !slices.Contains(v.Reasons, tt.reasons[0]) {
					t.Fatalf("Check(%q) = %+v, want no text and reason %q", tt.text, v, tt.reasons[0])
				}
				return
			}
			if v.Text != tt.want || !slices.Equal(v.Reasons, tt.reasons) {
				t.Fatalf("Check(%q) = %q %q, want %q %q", tt.text, v.Text, v.Reasons, tt.want, tt.reasons)
			}
		})
	}
}

// TestCanarySplit checks another tenant's canary split at every byte
// between two pieces: the stream blocks, and no byte of the canary leaves.
func TestCanarySplit(t *testing.T) {
	g := New()
	other := newCanary(t)
	g.SetCanaries(globex, []string{other})
	g.SetCanaries(acme, []string{newCanary(t)})
	text := "Here is what I found: " + strings.ToUpper(other[:9]) + other[9:] + " and more words after it."
	for cut := 0; cut <= len(text); cut++ {
		s := g.Stream(acme, nil)
		var sent strings.Builder
		blocked := false
		for _, piece := range []string{text[:cut], text[cut:]} {
			out, v := s.Write(piece)
			sent.WriteString(out)
			if v.Blocked {
				blocked = true
				break
			}
		}
		if !blocked {
			out, v := s.Flush()
			sent.WriteString(out)
			blocked = v.Blocked
		}
		if !blocked {
			t.Fatalf("cut %d: stream not blocked", cut)
		}
		if strings.Contains(strings.ToLower(sent.String()), "bkc") {
			t.Fatalf("cut %d: sent %q, part of the canary", cut, sent.String())
		}
	}
}

// docWords returns the words of a stored document drawn from vocab.
func docWords(seed uint64, vocab []string, n int) []string {
	return randomText(rand.New(rand.NewPCG(seed, 7)), vocab, n)
}

// reported sends text to id through Check, which must pass it unchanged,
// then runs the silent check on what Check queued, as Run would.
func reported(t testing.TB, g *Guard, id tenant.ID, text string) bool {
	t.Helper()
	if v := g.Check(id, text, nil); v.Blocked || v.Text != text {
		t.Fatalf("Check(%s) changed a text with no canary or link: %+v", id, v)
	}
	found := false
	for {
		select {
		case c := <-g.checks:
			_, ok := g.match(c)
			found = found || ok
		default:
			return found
		}
	}
}

func TestForeignText(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	vocab := pseudoWords(r, 600)
	docVocab, filler := vocab[:300], vocab[300:] // filler shares no word with documents
	g := New()
	doc := docWords(1, docVocab, 200)
	g.AddText(acme, strings.Join(doc, " "))
	g.AddText(globex, strings.Join(docWords(2, docVocab, 200), " "))

	// Every 12-word run of acme's document, however punctuated and cased,
	// is reported in an answer to globex and not in one to acme.
	for off := 0; off+minWords <= len(doc); off++ {
		run := mangle(r, doc[off:off+minWords])
		text := strings.Join(randomText(r, filler, 30), " ") + ". " + run + ". " + strings.Join(randomText(r, filler, 30), " ")
		if !reported(t, g, globex, text) {
			t.Fatalf("run at %d to globex: not reported", off)
		}
		if reported(t, g, acme, text) {
			t.Fatalf("run at %d to acme, who stored it: reported", off)
		}
		if !reported(t, g, initech, run) {
			t.Fatalf("run at %d alone to a tenant that stored nothing: not reported", off)
		}
	}
	// Shorter runs are never reported.
	for off := 0; off+minWords-1 <= len(doc); off++ {
		text := strings.Join(randomText(r, filler, 20), " ") + " " + mangle(r, doc[off:off+minWords-1]) + " " + strings.Join(randomText(r, filler, 20), " ")
		if reported(t, g, globex, text) {
			t.Fatalf("11-word run at %d: reported", off)
		}
	}
	// A short document is still recognized when quoted whole.
	short := strings.Join(randomText(r, filler, 10), " ")
	g.AddText(initech, short)
	if !reported(t, g, globex, short) {
		t.Fatalf("a 10-word document quoted whole: not reported")
	}
	if reported(t, g, initech, short) {
		t.Fatalf("a 10-word document to its owner: reported")
	}
}

func TestSharedText(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	vocab := pseudoWords(r, 900)
	docVocab, boilerVocab, filler := vocab[:300], vocab[300:600], vocab[600:]
	boiler := randomText(r, boilerVocab, 40)
	aTail := docWords(11, docVocab, 100)
	g := New()
	// acme and globex both store the boilerplate, each inside its own text.
	g.AddText(acme, strings.Join(slices.Concat(docWords(10, docVocab, 100), boiler, aTail), " "))
	g.AddText(globex, strings.Join(slices.Concat(docWords(20, docVocab, 100), boiler, docWords(21, docVocab, 100)), " "))
	for seed := range uint64(50) {
		r := rand.New(rand.NewPCG(seed, 5))
		from := r.IntN(len(boiler) - minWords)
		to := from + minWords + r.IntN(len(boiler)-from-minWords+1)
		text := strings.Join(randomText(r, filler, 10), " ") + " " + mangle(r, boiler[from:to]) + " " + strings.Join(randomText(r, filler, 10), " ")
		for _, id := range []tenant.ID{acme, globex} {
			if reported(t, g, id, text) {
				t.Fatalf("boilerplate words %d..%d to %s, who stored it: reported", from, to, id)
			}
		}
		if !reported(t, g, initech, text) {
			t.Fatalf("boilerplate words %d..%d to initech, who did not store it: not reported", from, to)
		}
	}
	// The boilerplate followed by 12 words only acme stored leaks acme's text.
	text := strings.Join(slices.Concat(boiler, aTail[:minWords]), " ")
	if !reported(t, g, globex, text) {
		t.Fatalf("boilerplate and 12 words of acme's own: not reported")
	}
}

func TestCommonText(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	vocab := pseudoWords(r, 600)
	common := randomText(r, vocab[:300], 40)
	text := strings.Join(common, " ")
	for owners := 1; owners <= MaxOwners+1; owners++ {
		g := New()
		for i := range owners {
			id := tenant.ID(fmt.Sprintf("t%d", i))
			g.AddText(id, strings.Join(slices.Concat(randomText(r, vocab[300:], 50), common, randomText(r, vocab[300:], 50)), " "))
		}
		if got, want := reported(t, g, initech, text), owners <= MaxOwners; got != want {
			t.Fatalf("text stored by %d tenants: reported %v, want %v", owners, got, want)
		}
	}
}

// TestInnocentAnswers generates answers from the same words and stock
// phrases as 20 tenants' documents: none may block.
func TestInnocentAnswers(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	g := New()
	var ids []tenant.ID
	for i := range 20 {
		id := tenant.ID(fmt.Sprintf("tenant-%02d", i))
		ids = append(ids, id)
		for range 5 {
			g.AddText(id, zipfText(r, englishWords, 400))
		}
		g.SetCanaries(id, []string{newCanary(t)})
	}
	for i := range 50 {
		answer := zipfText(r, englishWords, 150+r.IntN(300))
		id := ids[i%len(ids)]
		if v := g.Check(id, answer, nil); v.Blocked || v.Text != answer {
			t.Fatalf("innocent answer %d to %s: %+v\n%s", i, id, v, answer)
		}
	}
}

func TestRemoveTenant(t *testing.T) {
	g := New()
	c := newCanary(t)
	doc := strings.Join(docWords(1, pseudoWords(rand.New(rand.NewPCG(1, 1)), 100), 40), " ")
	g.SetCanaries(acme, []string{c})
	g.AddText(acme, doc)
	g.AddText(globex, doc) // shared, then acme leaves
	own := "unrelated text of initech that is long enough to hold a shingle or two of words"
	g.AddText(initech, own)
	if v := g.Check(initech, c, nil); !v.Blocked {
		t.Fatalf("before removal, acme's canary not blocked")
	}
	if !reported(t, g, initech, doc) {
		t.Fatalf("before removal, the shared text not reported")
	}
	g.RemoveTenant(acme)
	if v := g.Check(initech, c, nil); v.Blocked {
		t.Fatalf("removed tenant's canary still blocks: %q", v.Reasons)
	}
	// globex still owns the text alone.
	if !reported(t, g, initech, doc) {
		t.Fatalf("after removal, globex's text not reported")
	}
	g.RemoveTenant(globex)
	if reported(t, g, initech, doc) {
		t.Fatalf("text of removed tenants still reported")
	}
	selected, _ := fingerprints(g.seed, own)
	if got, want := len(g.idx.m), len(selected); got != want {
		t.Fatalf("index holds %d fingerprints after removals, want initech's %d", got, want)
	}
	if len(g.idx.stored) != 1 {
		t.Fatalf("index holds %d tenants' shingles, want 1", len(g.idx.stored))
	}
}

func TestFailClosed(t *testing.T) {
	var nilGuard *Guard
	if v := nilGuard.Check(acme, "hello", nil); !v.Blocked || v.Text != "" {
		t.Fatalf("nil guard: %+v, want blocked", v)
	}
	g := New()
	if v := g.Check("", "hello", nil); !v.Blocked {
		t.Fatalf("no tenant: %+v, want blocked", v)
	}
	s := g.Stream(acme, nil)
	// No canary is set; only the fixed tail (the last 7 letters and
	// digits) is held.
	out, v := s.Write("hello ")
	if v.Blocked || out != "" {
		t.Fatalf("Write = %q %+v", out, v)
	}
	if rest, v := s.Flush(); v.Blocked || out+rest != "hello " {
		t.Fatalf("Flush = %q %+v", rest, v)
	}
	if out, v := s.Write("more"); !v.Blocked || out != "" || !slices.Contains(v.Reasons, ReasonAfterFlush) {
		t.Fatalf("Write after Flush = %q %+v, want blocked", out, v)
	}
	other := newCanary(t)
	g.SetCanaries(globex, []string{other})
	s = g.Stream(acme, nil)
	if _, v := s.Write(other + " "); !v.Blocked {
		t.Fatalf("Write of a foreign canary not blocked")
	}
	if out, v := s.Write("innocent words"); !v.Blocked || out != "" {
		t.Fatalf("Write after a block = %q %+v, want blocked", out, v)
	}
	if out, v := s.Flush(); !v.Blocked || out != "" {
		t.Fatalf("Flush after a block = %q %+v, want blocked", out, v)
	}
}

func TestConcurrent(t *testing.T) {
	g := New()
	other := newCanary(t)
	g.SetCanaries(globex, []string{other})
	r := rand.New(rand.NewPCG(9, 9))
	vocab := pseudoWords(r, 500)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 1))
			for j := range 50 {
				id := tenant.ID(fmt.Sprintf("w%d-%d", i, j%5))
				g.AddText(id, strings.Join(randomText(r, vocab, 200), " "))
				c, err := NewCanary()
				if err != nil {
					t.Error(err)
					return
				}
				g.SetCanaries(id, []string{c})
				if j%10 == 9 {
					g.RemoveTenant(id)
				}
			}
		})
	}
	for i := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 2))
			for range 100 {
				text := strings.Join(randomText(r, vocab, 50), " ")
				g.Check(acme, text, []string{"ok.example"})
				s := g.Stream(acme, nil)
				for _, p := range strings.SplitAfter(text, " ") {
					s.Write(p)
				}
				s.Flush()
				if v := g.Check(acme, "x "+other+" y", nil); !v.Blocked {
					t.Errorf("foreign canary not blocked during concurrent updates")
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestStreamReportsRunAfterSending streams another tenant's text word by
// word: nothing is blocked or held back for it (the stream is cut as a
// guard's that stores no text), and once the stream is flushed Run reports
// it, naming both tenants.
func TestStreamReportsRunAfterSending(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	vocab := pseudoWords(r, 600)
	doc := docWords(3, vocab[:300], 100)
	g := New()
	g.AddText(globex, strings.Join(doc, " "))
	reports := make(chan TextMatch, 16)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx, func(m TextMatch) { reports <- m }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	for off := 0; off+minWords <= len(doc); off += 7 {
		run := doc[off : off+minWords]
		answer := slices.Concat(randomText(r, vocab[300:], 20), run, randomText(r, vocab[300:], 20))
		s, base := g.Stream(acme, nil), New().Stream(acme, nil)
		for i, wd := range answer {
			out, v := s.Write(wd + " ")
			if v.Blocked {
				t.Fatalf("run at %d: blocked after word %d: %q", off, i, v.Reasons)
			}
			if want, _ := base.Write(wd + " "); out != want {
				t.Fatalf("run at %d: word %d: sent %q, want %q as with no text stored", off, i, out, want)
			}
		}
		out, v := s.Flush()
		if want, _ := base.Flush(); v.Blocked || out != want {
			t.Fatalf("run at %d: Flush = %q %+v, want %q", off, out, v, want)
		}
		select {
		case m := <-reports:
			if m.Receiver != acme || !slices.Equal(m.Owners, []tenant.ID{globex}) || m.Windows == 0 {
				t.Fatalf("run at %d: got report %+v, want acme receiving globex's text", off, m)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("run at %d: no report", off)
		}
	}
	if got := g.Stats(); got.Matches == 0 || got.Checked < got.Matches {
		t.Fatalf("Stats() = %+v, want matches counted", got)
	}
}

// FuzzCheck fuzzes an answer to acme, with globex's canary in the guard.
// Invariants: the guard is never an oracle — what acme is sent is the same
// as from a guard that never heard of globex, unless acme's answer is
// blocked for holding globex's canary; and globex's canary planted at any
// byte offset of any text, in any of the leak forms, blocks the answer in
// Check and in a stream cut at random, naming globex as the owner.
func FuzzCheck(f *testing.F) {
	for i, s := range []string{"", "plain text", "[link](https://evil.example/x?q=", "![img](https://ok.example/a.png)", "<img src=\"", "`code ", "日本語テキスト", "a\u200bb", "&#x62;kc-", "bkc-", "\xe2\x80"} {
		f.Add(s, uint16(i*3), uint8(i), uint64(i))
	}
	const other = "bkc-h3kq7zr2mwx5vtn4pa6d"
	allow := []string{"ok.example"}
	g, fresh := New(), New()
	own := newCanary(f)
	g.SetCanaries(acme, []string{own})
	fresh.SetCanaries(acme, []string{own})
	g.SetCanaries(globex, []string{other})
	f.Fuzz(func(t *testing.T, text string, at uint16, form uint8, seed uint64) {
		if len(text) > 4<<10 {
			return
		}
		v, v0 := g.Check(acme, text, allow), fresh.Check(acme, text, allow)
		switch {
		case v.Blocked && !v0.Blocked:
			if !slices.Contains(v.Owners, globex) {
				t.Fatalf("%q blocked only where globex exists, owners %v, reasons %v", text, v.Owners, v.Reasons)
			}
		case v.Blocked != v0.Blocked || v.Text != v0.Text:
			t.Fatalf("%q: globex's presence changed acme's answer:\nwith    %v %q %v\nwithout %v %q %v", text, v.Blocked, v.Text, v.Reasons, v0.Blocked, v0.Text, v0.Reasons)
		}

		r := rand.New(rand.NewPCG(seed, 2))
		fm := leakForms[int(form)%len(leakForms)]
		i := int(at) % (len(text) + 1)
		planted := text[:i] + fm.enc(r, other) + text[i:]
		pv, sv, _ := checkBoth(g, r, acme, planted)
		if !pv.Blocked || !sv.Blocked || !slices.Contains(pv.Owners, globex) {
			t.Fatalf("globex's canary as %s at %d of %q: Check blocked %v (owners %v), stream blocked %v", fm.name, i, planted, pv.Blocked, pv.Owners, sv.Blocked)
		}
	})
}
