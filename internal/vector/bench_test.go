package vector

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// BenchmarkSearch measures one top-10 query over 100,000 clustered 384-d
// vectors of one tenant, single-threaded. The int8 run also reports its
// recall@10 against exact search.
func BenchmarkSearch(b *testing.B) {
	const (
		n, dim, k = 100_000, 384, 10
		queries   = 64
	)
	r := rand.New(rand.NewPCG(13, 14))
	x := New(dim)
	for i, v := range clustered(r, n, dim, 1000, 0.75) {
		if err := x.Add(int64(i), v); err != nil {
			b.Fatal(err)
		}
	}
	qs := clustered(r, queries, dim, 1000, 0.75)

	b.Run("float32", func(b *testing.B) {
		i := 0
		for b.Loop() {
			x.Search(qs[i%queries], k)
			i++
		}
	})
	b.Run("int8", func(b *testing.B) {
		i := 0
		for b.Loop() {
			x.SearchInt8(qs[i%queries], k, 0)
			i++
		}
		b.StopTimer()
		found := 0
		for _, q := range qs {
			exact := x.Search(q, k)
			for _, h := range x.SearchInt8(q, k, 0) {
				if slices.ContainsFunc(exact, func(e Hit) bool { return e.ID == h.ID }) {
					found++
				}
			}
		}
		b.ReportMetric(float64(found)/float64(queries*k), "recall@10")
	})
	// The pure-Go kernels, as used on CPUs without AVX2 and FMA.
	for _, name := range []string{"float32/noasm", "int8/noasm"} {
		b.Run(name, func(b *testing.B) {
			defer func(old bool) { useAVX2 = old }(useAVX2)
			useAVX2 = false
			i := 0
			for b.Loop() {
				if name == "int8/noasm" {
					x.SearchInt8(qs[i%queries], k, 0)
				} else {
					x.Search(qs[i%queries], k)
				}
				i++
			}
		})
	}
}
