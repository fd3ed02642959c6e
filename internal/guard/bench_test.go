package guard

import (
	crand "crypto/rand"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/textnorm"
)

// benchFixture is a guard loaded with 1,000 tenants, each with about 20 KB
// of stored text in ten documents and one canary, and a 4 KiB answer.
type benchFixture struct {
	g            *Guard
	answer       string
	heap         uint64 // bytes the loaded guard adds to the heap
	storedBytes  int
	storedWords  int
	fingerprints int
	shingles     int
}

var (
	benchOnce sync.Once
	bench     benchFixture
)

const (
	benchTenants = 1000
	benchDocs    = 10
	benchDocSize = 2048
)

func benchmarkFixture() *benchFixture {
	benchOnce.Do(func() {
		r := rand.New(rand.NewPCG(2026, 1))
		vocab := append(append([]string{}, englishWords...), pseudoWords(r, 5000)...)
		doc := func() string {
			var s strings.Builder
			for s.Len() < benchDocSize {
				s.WriteString(zipfText(r, vocab, 20))
				s.WriteString(". ")
			}
			return s.String()
		}
		var receiverDoc string
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		g := New()
		for i := range benchTenants {
			id := tenant.ID(fmt.Sprintf("tenant-%04d", i))
			for j := range benchDocs {
				d := doc()
				if i == 0 && j == 0 {
					receiverDoc = d
				}
				bench.storedBytes += len(d)
				bench.storedWords += len(strings.Fields(d))
				g.AddText(id, d)
			}
			c, err := NewCanary()
			if err != nil {
				panic(err)
			}
			g.SetCanaries(id, []string{c})
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		bench.g = g
		bench.heap = after.HeapAlloc - before.HeapAlloc
		bench.fingerprints = len(g.idx.m)
		for _, st := range g.idx.stored {
			bench.shingles += st.len()
		}

		// The answer: new text, a passage of the receiver's own document,
		// and links, 4 KiB in all.
		var a strings.Builder
		a.WriteString(receiverDoc[:600])
		a.WriteString("\n\nSee [the guide](https://docs.example/guide) and ![chart](https://evil.example/c.png?d=x).\n\n")
		for a.Len() < 4096 {
			a.WriteString(zipfText(r, vocab, 20))
			a.WriteString(". ")
		}
		bench.answer = a.String()[:4096]
	})
	return &bench
}

func (f *benchFixture) report(b *testing.B) {
	b.ReportMetric(float64(f.heap)/(1<<20), "index-MiB")
	b.ReportMetric(float64(f.heap)/float64(f.storedWords), "B/stored-word")
	b.ReportMetric(float64(f.fingerprints), "fingerprints")
}

// BenchmarkCheck checks a 4 KiB answer against 1,000 tenants' fingerprints
// (about 20 KB of stored text each).
func BenchmarkCheck(b *testing.B) {
	f := benchmarkFixture()
	allow := []string{"docs.example"}
	if v := f.g.Check("tenant-0000", f.answer, allow); v.Blocked {
		b.Fatalf("the benchmark answer is blocked: %q", v.Reasons)
	}
	b.Logf("stored %d bytes (%d per tenant), %d words; %d fingerprints, %d shingles; heap %.1f MiB, %.1f B per fingerprint",
		f.storedBytes, f.storedBytes/benchTenants, f.storedWords, f.fingerprints, f.shingles,
		float64(f.heap)/(1<<20), float64(f.heap)/float64(f.fingerprints))
	b.SetBytes(int64(len(f.answer)))
	b.ReportAllocs()
	for b.Loop() {
		f.g.Check("tenant-0000", f.answer, allow)
	}
	f.report(b)
}

// BenchmarkStream streams the same answer in 16-byte pieces.
func BenchmarkStream(b *testing.B) {
	f := benchmarkFixture()
	allow := []string{"docs.example"}
	var pieces []string
	for i := 0; i < len(f.answer); i += 16 {
		pieces = append(pieces, f.answer[i:min(i+16, len(f.answer))])
	}
	b.SetBytes(int64(len(f.answer)))
	b.ReportAllocs()
	for b.Loop() {
		s := f.g.Stream("tenant-0000", allow)
		for _, p := range pieces {
			if _, v := s.Write(p); v.Blocked {
				b.Fatalf("blocked: %q", v.Reasons)
			}
		}
		s.Flush()
	}
	f.report(b)
}

// BenchmarkTextMatch runs the silent check, as Run does, on the shingles of
// the 4 KiB answer against 1,000 tenants' fingerprints: the work moved off
// the request's path.
func BenchmarkTextMatch(b *testing.B) {
	f := benchmarkFixture()
	c := textCheck{receiver: "tenant-0000", hs: split(f.answer, true).shingles(f.g.seed)}
	if _, ok := f.g.match(c); ok {
		b.Fatal("the benchmark answer matches another tenant's text")
	}
	b.SetBytes(int64(len(f.answer)))
	b.ReportAllocs()
	for b.Loop() {
		f.g.match(c)
	}
}

// BenchmarkCheckCanaries checks a 4 KiB answer against 1,000 tenants'
// canaries alone (every form precomputed), without fingerprints: the
// canary passes' own cost.
func BenchmarkCheckCanaries(b *testing.B) {
	g := New()
	for i := range benchTenants {
		c, err := NewCanary()
		if err != nil {
			b.Fatal(err)
		}
		g.SetCanaries(tenant.ID(fmt.Sprintf("tenant-%04d", i)), []string{c})
	}
	answer := benchmarkFixture().answer
	allow := []string{"docs.example"}
	if v := g.Check("tenant-0000", answer, allow); v.Blocked {
		b.Fatalf("the benchmark answer is blocked: %q", v.Reasons)
	}
	b.SetBytes(int64(len(answer)))
	b.ReportAllocs()
	for b.Loop() {
		g.Check("tenant-0000", answer, allow)
	}
}

// BenchmarkCanaryPasses runs only the two canary passes of a check over a
// 4 KiB answer with 1,000 tenants' canaries: what the normalising matcher
// costs, without the link and fingerprint passes.
func BenchmarkCanaryPasses(b *testing.B) {
	g := New()
	for i := range benchTenants {
		c, err := NewCanary()
		if err != nil {
			b.Fatal(err)
		}
		g.SetCanaries(tenant.ID(fmt.Sprintf("tenant-%04d", i)), []string{c})
	}
	answer := benchmarkFixture().answer
	cs := g.canarySet()
	b.SetBytes(int64(len(answer)))
	b.ReportAllocs()
	for b.Loop() {
		var s Stream
		for _, remove := range []bool{true, false} {
			st := &canaryStage{set: cs, self: "tenant-0000", remove: remove, r: &s.reasons, leaks: &s.leaks}
			if _, blocked := st.write(answer, true); blocked != "" {
				b.Fatal(blocked)
			}
		}
	}
}

// BenchmarkCanarySetBuild builds the canary set of 1,000 tenants, as the
// first Stream after a canary or secret change does.
func BenchmarkCanarySetBuild(b *testing.B) {
	byTenant := map[tenant.ID][]string{}
	for i := range benchTenants {
		c, err := NewCanary()
		if err != nil {
			b.Fatal(err)
		}
		byTenant[tenant.ID(fmt.Sprintf("tenant-%04d", i))] = []string{c}
	}
	compiled := map[string]*textnorm.Compiled{}
	newCanarySet(byTenant, nil, compiled)
	b.ReportAllocs()
	for b.Loop() {
		newCanarySet(byTenant, nil, compiled)
	}
}

// BenchmarkStreamCanariesSecrets streams a 4 KiB answer in 16-byte pieces
// to one of 1,000 tenants with a canary each, 100 of which also store two
// tracked secrets: the canary passes with the secrets' windows and the
// hold for their beginnings on.
func BenchmarkStreamCanariesSecrets(b *testing.B) {
	g := New()
	for i := range benchTenants {
		id := tenant.ID(fmt.Sprintf("tenant-%04d", i))
		c, err := NewCanary()
		if err != nil {
			b.Fatal(err)
		}
		g.SetCanaries(id, []string{c})
		if i%10 == 0 {
			for _, name := range []string{"api", "db"} {
				k := make([]byte, 24)
				if _, err := crand.Read(k); err != nil {
					b.Fatal(err)
				}
				if !g.SetSecret(id, name, []byte(base64.StdEncoding.EncodeToString(k))) {
					b.Fatal("benchmark secret not tracked")
				}
			}
		}
	}
	answer := benchmarkFixture().answer
	allow := []string{"docs.example"}
	var pieces []string
	for i := 0; i < len(answer); i += 16 {
		pieces = append(pieces, answer[i:min(i+16, len(answer))])
	}
	b.SetBytes(int64(len(answer)))
	b.ReportAllocs()
	for b.Loop() {
		s := g.Stream("tenant-0001", allow)
		for _, p := range pieces {
			if _, v := s.Write(p); v.Blocked {
				b.Fatalf("blocked: %q", v.Reasons)
			}
		}
		s.Flush()
	}
}
