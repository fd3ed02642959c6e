package memory_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/embed"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/memory"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/store/sqlite"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/vector"
)

// tenants is a locator and cipher source for provisioned test tenants.
type tenants map[tenant.ID]*keyring.Cipher

func (ts tenants) StorageID(_ context.Context, inc tenant.Incarnation) (string, error) {
	id := inc.Tenant()
	if _, ok := ts[id]; !ok {
		return "", store.ErrUnknownTenant
	}
	return fmt.Sprintf("%x", []byte(strings.Repeat(string(id), 1)+"00000000"))[:16], nil
}

func (ts tenants) Cipher(_ context.Context, inc tenant.Incarnation) (*keyring.Cipher, error) {
	c, ok := ts[inc.Tenant()]
	if !ok {
		return nil, store.ErrUnknownTenant
	}
	return c, nil
}

func newService(t testing.TB, ids ...tenant.ID) *memory.Service {
	t.Helper()
	ts := tenants{}
	for _, id := range ids {
		k, _ := keyring.NewKey()
		c, err := keyring.NewCipher(id, k)
		if err != nil {
			t.Fatal(err)
		}
		ts[id] = c
	}
	db, err := sqlite.Open(sqlite.Options{Dir: filepath.Join(t.TempDir(), "tenants"), Locator: ts, Ciphers: ts, MaxOpen: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return memory.New(memory.Deps{Store: db, Ciphers: ts, Embedder: embed.NewOffline(0),
		Cache: embed.NewCache(100_000), Vectors: vector.NewCache(256 << 20)})
}

// evalSet builds n passages about made-up products and, for each of the
// first q, a question whose answer is that passage. Half the questions name
// the product exactly (easy for BM25), half with a misspelling or another
// word form (where character n-grams help and exact terms fail).
func evalSet(n, q int) (passages []string, questions []string) {
	rng := rand.New(rand.NewPCG(7, 9))
	syll := []string{"zor", "bax", "qui", "tel", "mar", "von", "dre", "lix", "pho", "run", "kai", "sen", "tor", "vel", "nym", "gar"}
	cities := []string{"Oslo", "Lima", "Perth", "Quito", "Hanoi", "Turin", "Dakar", "Osaka", "Porto", "Riga"}
	seen := map[string]bool{}
	name := func() string {
		for {
			s := syll[rng.IntN(len(syll))] + syll[rng.IntN(len(syll))] + syll[rng.IntN(len(syll))]
			if !seen[s] {
				seen[s] = true
				return strings.ToUpper(s[:1]) + s[1:]
			}
		}
	}
	names := make([]string, n)
	for i := range n {
		names[i] = name()
		passages = append(passages, fmt.Sprintf("The %s device is manufactured in %s. Its warranty lasts %d years, it weighs %d kilograms, and support tickets for %s go to team %d.",
			names[i], cities[rng.IntN(len(cities))], 1+rng.IntN(9), 2+rng.IntN(40), names[i], rng.IntN(100)))
	}
	for i := range q {
		nm := names[i]
		switch i % 4 {
		case 0:
			questions = append(questions, "How long is the warranty of the "+nm+" device?")
		case 1:
			questions = append(questions, "Where is "+nm+" manufactured?")
		case 2: // a typo: one letter dropped
			j := 1 + rng.IntN(len(nm)-2)
			questions = append(questions, "what does the "+strings.ToLower(nm[:j]+nm[j+1:])+" weigh")
		case 3: // another word form
			questions = append(questions, "Which team handles "+nm+"s tickets")
		}
	}
	return passages, questions
}

// TestRetrievalQuality reports recall@5 of lexical, vector and hybrid search
// on a generated set, and requires hybrid to be at least as good as the
// better of the two.
func TestRetrievalQuality(t *testing.T) {
	ctx := context.Background()
	s := newService(t, "acme")
	scope := authtest.Scope(t, "acme", "")
	passages, questions := evalSet(200, 100)
	docIDs := make([]string, len(passages))
	for i, p := range passages {
		doc, _, err := s.AddDocument(ctx, scope, p, nil)
		if err != nil {
			t.Fatal(err)
		}
		docIDs[i] = doc.ID
	}
	recall := map[memory.Mode]float64{}
	for _, mode := range []memory.Mode{memory.Lexical, memory.Vector, memory.Hybrid} {
		found := 0
		for i, q := range questions {
			res, err := s.Search(ctx, scope, q, 5, mode)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res {
				if r.DocumentID == docIDs[i] {
					found++
					break
				}
			}
		}
		recall[mode] = float64(found) / float64(len(questions))
	}
	t.Logf("recall@5 over %d questions, %d passages: lexical %.2f, vector %.2f, hybrid %.2f",
		len(questions), len(passages), recall[memory.Lexical], recall[memory.Vector], recall[memory.Hybrid])
	if best := max(recall[memory.Lexical], recall[memory.Vector]); recall[memory.Hybrid] < best {
		t.Fatalf("hybrid recall@5 %.2f is below the better single method %.2f", recall[memory.Hybrid], best)
	}
}

// TestSearchIsPerTenant gives two tenants near-identical documents and the
// same end user; neither ever gets the other's text.
func TestSearchIsPerTenant(t *testing.T) {
	ctx := context.Background()
	s := newService(t, "acme", "globex")
	acme, globex := authtest.Scope(t, "acme", "alice"), authtest.Scope(t, "globex", "alice")
	for scope, canary := range map[auth.Scope]string{acme: "ACMECANARY", globex: "GLOBEXCANARY"} {
		if _, _, err := s.AddDocument(ctx, scope, "The vault code is "+canary+". Keep it secret.", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Remember(ctx, scope, "alice's vault code is "+canary); err != nil {
			t.Fatal(err)
		}
	}
	for _, mode := range []memory.Mode{memory.Lexical, memory.Vector, memory.Hybrid} {
		res, err := s.Search(ctx, acme, "GLOBEXCANARY vault code", 10, mode)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if strings.Contains(r.Text, "GLOBEX") {
				t.Fatalf("mode %d: acme found globex's chunk %q", mode, r.Text)
			}
		}
	}
	mems, err := s.Recall(ctx, acme, "GLOBEXCANARY vault code", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(mems) != 1 || !strings.Contains(mems[0].Text, "ACMECANARY") {
		t.Fatalf("acme's alice recalls %+v, want only her own memory", mems)
	}
}

// TestEmbeddingCacheIsPerTenant embeds the same text for two tenants and
// checks the cache holds two entries.
func TestEmbeddingCacheIsPerTenant(t *testing.T) {
	ctx := context.Background()
	s := newService(t, "acme", "globex")
	before := s.Cache.Len()
	for _, id := range []tenant.ID{"acme", "globex"} {
		if _, err := s.Remember(ctx, authtest.Scope(t, id, "alice"), "the same sentence in both tenants"); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Cache.Len() - before; got != 2 {
		t.Fatalf("cache grew by %d entries for one text under two tenants, want 2", got)
	}
}

// BenchmarkIngest adds documents of ten ~1,000-character chunks with the
// offline embedder; chunks/s is the figure.
func BenchmarkIngest(b *testing.B) {
	ctx := context.Background()
	s := newService(b, "acme")
	scope := authtest.Scope(b, "acme", "")
	passages, _ := evalSet(2000, 0)
	var chunks int
	b.ResetTimer()
	for i := range b.N {
		var doc strings.Builder
		for j := range 50 {
			fmt.Fprintf(&doc, "%s (copy %d)\n\n", passages[(i*50+j)%len(passages)], i)
		}
		d, _, err := s.AddDocument(ctx, scope, doc.String(), nil)
		if err != nil {
			b.Fatal(err)
		}
		chunks += d.Chunks
	}
	b.ReportMetric(float64(chunks)/b.Elapsed().Seconds(), "chunks/s")
}

// BenchmarkSearchNeighbours measures one tenant's hybrid search with 0 or
// 1,000 other tenants holding data in the same process.
func BenchmarkSearchNeighbours(b *testing.B) {
	ctx := context.Background()
	for _, others := range []int{0, 1000} {
		b.Run(fmt.Sprintf("others=%d", others), func(b *testing.B) {
			ids := []tenant.ID{"acme"}
			for i := range others {
				ids = append(ids, tenant.ID(fmt.Sprintf("t%04d", i)))
			}
			s := newService(b, ids...)
			passages, questions := evalSet(500, 50)
			for _, id := range ids {
				scope := authtest.Scope(b, id, "")
				n := 5
				if id == "acme" {
					n = len(passages)
				}
				for _, p := range passages[:n] {
					if _, _, err := s.AddDocument(ctx, scope, p, nil); err != nil {
						b.Fatal(err)
					}
				}
				if id != "acme" {
					// Load the neighbour's vector index too.
					if _, err := s.Search(ctx, scope, "warranty", 5, memory.Hybrid); err != nil {
						b.Fatal(err)
					}
				}
			}
			scope := authtest.Scope(b, "acme", "")
			b.ResetTimer()
			for i := range b.N {
				if _, err := s.Search(ctx, scope, questions[i%len(questions)], 5, memory.Hybrid); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
