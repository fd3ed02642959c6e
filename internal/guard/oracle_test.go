package guard

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// runGuard runs g's silent check until the test ends and returns its
// reports.
func runGuard(t *testing.T, g *Guard) <-chan TextMatch {
	t.Helper()
	reports := make(chan TextMatch, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx, func(m TextMatch) { reports <- m }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return reports
}

func nextReport(t *testing.T, reports <-chan TextMatch) TextMatch {
	t.Helper()
	select {
	case m := <-reports:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no report from the silent check")
		return TextMatch{}
	}
}

// TestStreamHoldsBackOnlyCanaryTail writes 200 bytes of prose to a stream,
// at once and byte by byte: what is held back is at most the canary passes'
// tail, never words, even when the prose is another tenant's stored text.
func TestStreamHoldsBackOnlyCanaryTail(t *testing.T) {
	g := New()
	canary := newCanary(t)
	g.SetCanaries(globex, []string{canary})
	g.SetCanaries(acme, []string{newCanary(t)})
	r := rand.New(rand.NewPCG(7, 7))
	prose := zipfText(r, englishWords, 200)[:200]
	g.AddText(globex, prose)
	holdBack := 2 * (len(canary) - 1) // one canary tail per canary pass
	for _, pieces := range [][]string{{prose}, strings.SplitAfter(prose, "")} {
		s := g.Stream(acme, nil)
		var sent strings.Builder
		for _, p := range pieces {
			out, v := s.Write(p)
			if v.Blocked {
				t.Fatalf("%d pieces: blocked %q", len(pieces), v.Reasons)
			}
			sent.WriteString(out)
		}
		if sent.Len() == 0 {
			t.Fatalf("%d pieces: nothing sent of 200 bytes of prose", len(pieces))
		}
		if held := len(prose) - sent.Len(); held > holdBack {
			t.Fatalf("%d pieces: holding %d bytes, want at most the canary hold-back %d", len(pieces), held, holdBack)
		}
		out, _ := s.Flush()
		if got := sent.String() + out; got != prose {
			t.Fatalf("%d pieces: sent %q, want %q", len(pieces), got, prose)
		}
	}
}

// TestNoVerdictFromFingerprints checks the class: whatever other tenants
// stored, Check and Stream give a tenant the same text and reasons they give
// it when no one stored anything.
func TestNoVerdictFromFingerprints(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	vocab := pseudoWords(r, 400)
	doc := randomText(r, vocab, 300)
	empty, loaded := New(), New()
	loaded.AddText(globex, strings.Join(doc, " "))
	loaded.AddText(initech, strings.Join(doc[100:], " "))
	for off := 0; off+40 <= len(doc); off += 13 {
		// A guessed run of globex's text, and the same run with one word
		// changed (the guess was wrong): two answers A cannot tell apart.
		run := slices.Clone(doc[off : off+40])
		wrong := slices.Clone(run)
		wrong[20] = "zzzz"
		for _, words := range [][]string{run, wrong} {
			text := "Quote: " + strings.Join(words, " ") + "."
			want := empty.Check(acme, text, nil)
			got := loaded.Check(acme, text, nil)
			if got.Blocked || got.Text != want.Text || !slices.Equal(got.Reasons, want.Reasons) {
				t.Fatalf("run at %d: got %+v, want %+v as with no stored text", off, got, want)
			}
		}
	}
}

// TestLongTextCheckedInBatches leaks another tenant's text at the very end
// of a long answer: the batches the stream queues overlap, so it is still
// reported, however the stream is cut.
func TestLongTextCheckedInBatches(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	vocab := pseudoWords(r, 600)
	doc := randomText(r, vocab[:300], 60)
	g := New()
	g.AddText(globex, strings.Join(doc, " "))
	reports := runGuard(t, g)
	long := randomText(r, vocab[300:], 3*maxBatch)
	for _, tail := range []int{0, 1, 5} {
		// The leak straddles the end of a batch, or sits right after it.
		n := 2*maxBatch - tail
		text := strings.Join(slices.Concat(long[:n], doc[:minWords]), " ")
		s := g.Stream(acme, nil)
		for p := range strings.SplitAfterSeq(text, " ") {
			if _, v := s.Write(p); v.Blocked {
				t.Fatalf("blocked: %q", v.Reasons)
			}
		}
		s.Flush()
		if m := nextReport(t, reports); m.Receiver != acme || !slices.Equal(m.Owners, []tenant.ID{globex}) {
			t.Fatalf("tail %d: got %+v, want acme receiving globex's text", tail, m)
		}
	}
}

// TestReportOnce checks that a streamed answer the agent also checks whole is
// reported once, and that a full queue drops checks without waiting.
func TestReportOnce(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	vocab := pseudoWords(r, 600)
	doc := randomText(r, vocab[:300], 60)
	g := New()
	g.AddText(globex, strings.Join(doc, " "))
	for range queueLen + 10 {
		g.Check(acme, strings.Join(doc, " "), nil) // Run is not running yet
	}
	if got := g.Stats().Dropped; got != 10 {
		t.Fatalf("Stats().Dropped = %d, want 10", got)
	}
	drain(g)
	reports := runGuard(t, g)
	leak := strings.Join(doc[:30], " ")
	s := g.Stream(acme, nil)
	s.Write(leak)
	s.Flush()
	g.Check(acme, leak, nil)
	other := strings.Join(doc[10:40], " ")
	g.Check(initech, other, nil)
	if m := nextReport(t, reports); m.Receiver != acme {
		t.Fatalf("first report %+v, want acme", m)
	}
	// Reports come in order: the next is initech's, not acme's again.
	if m := nextReport(t, reports); m.Receiver != initech || m.Total != 2 {
		t.Fatalf("second report %+v, want initech's, the second in all", m)
	}
}
