package postgres_test

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/store/seal"
	"github.com/bulkhead-ai/bulkhead/internal/store/storetest"
)

// BenchmarkSearchChunks runs three-term BM25 queries, their terms drawn from
// the text's own distribution, over 10,000 chunks of ~1,000 characters, as
// the SQLite backend's benchmark of the same name does.
func BenchmarkSearchChunks(b *testing.B) {
	db, scope := benchStore(b)
	ctx := b.Context()
	r := rand.New(rand.NewPCG(3, 4))
	z := rand.NewZipf(r, 1.1, 1, 50000)
	for range 1000 {
		cs := make([]store.Chunk, 10)
		var text strings.Builder
		for i := range cs {
			cs[i] = store.Chunk{Text: storetest.BenchText(z, 1000)}
			text.WriteString(cs[i].Text)
		}
		if _, _, _, err := db.PutDocument(ctx, scope, storetest.NewDocument(text.String(), ""), cs); err != nil {
			b.Fatal(err)
		}
	}
	// As autovacuum would soon after such an ingest: statistics for the
	// planner, and the visibility map that lets a search read the index
	// alone.
	if _, err := db.super.Exec(ctx, "VACUUM ANALYZE tenant_data.chunk_terms"); err != nil {
		b.Fatal(err)
	}
	queries := make([]string, 100)
	for i := range queries {
		queries[i] = storetest.BenchWord(z) + " " + storetest.BenchWord(z) + " " + storetest.BenchWord(z)
	}
	matches := 0
	for _, q := range queries {
		hits, err := db.SearchChunks(ctx, scope, q, 10000)
		if err != nil {
			b.Fatal(err)
		}
		matches += len(hits)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := db.SearchChunks(ctx, scope, queries[i%len(queries)], 20); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(matches)/float64(len(queries)), "matches/query")
}

// TestIndexWrittenBeforeStemming imports a chunk whose postings are the
// words' own tokens, as indexes held them before terms were stemmed: a query
// with the words as written still finds it, and a stemmed chunk is found by
// any form of its words.
func TestIndexWrittenBeforeStemming(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	src := openSQLite(t, f)
	acme := authtest.Scope(t, storetest.Acme, "")
	const oldText, newText = "Refunds are accepted within thirty days.", "Shipments leave daily."
	for _, text := range []string{oldText, newText} {
		if _, _, _, err := src.PutDocument(ctx, acme, storetest.NewDocument(text, ""), []store.Chunk{{Text: text}}); err != nil {
			t.Fatal(err)
		}
	}
	inc := storetest.TwoTenants.Incarnation(storetest.Acme)
	raw, err := src.Rows(ctx, inc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.keys.Ring().Cipher(ctx, acme.Incarnation())
	if err != nil {
		t.Fatal(err)
	}
	bl := seal.ChunkBlinder(c)
	var old []string
	for _, w := range store.Words(oldText) {
		old = append(old, bl.Token(w))
	}
	slices.Sort(old)
	if raw.Chunks[0].Ordinal != 0 || len(raw.Chunks) != 2 {
		t.Fatalf("raw chunks: %+v", raw.Chunks)
	}
	oldDoc := raw.Chunks[0].DocumentID
	for i := range raw.Chunks {
		if raw.Chunks[i].DocumentID == oldDoc {
			raw.Chunks[i].Tokens = old
		}
	}
	if err := f.Import(ctx, inc, raw); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		query string
		want  string // the document found; "": nothing
	}{
		{"refunds accepted", oldText}, // the words as the old index holds them
		{"shipments", newText},
		{"shipment leaving", newText}, // another form of a stemmed chunk's words
		{"refund accept", ""},         // not a word of the old chunk: re-ingest to stem it
	} {
		hits, err := f.SearchChunks(ctx, acme, tt.query, 5)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, h := range hits {
			cs, err := f.Chunks(ctx, acme, []int64{h.ID})
			if err != nil || len(cs) != 1 {
				t.Fatalf("chunk %d: %v, %v", h.ID, cs, err)
			}
			got = append(got, cs[0].Text)
		}
		if (tt.want == "" && len(got) != 0) || (tt.want != "" && !slices.Equal(got, []string{tt.want})) {
			t.Errorf("search %q: got %q, want %q", tt.query, got, tt.want)
		}
	}
}
