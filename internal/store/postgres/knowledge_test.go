package postgres_test

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/store"
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
