package vector

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
)

// clustered returns n unit vectors of dim dimensions drawn around the given
// number of random unit centres with Gaussian noise of total length about
// spread, like the topical clumps of real text embeddings.
func clustered(r *rand.Rand, n, dim, clusters int, spread float64) [][]float32 {
	centres := make([][]float64, clusters)
	for c := range centres {
		centres[c] = make([]float64, dim)
		var s float64
		for i := range centres[c] {
			centres[c][i] = r.NormFloat64()
			s += centres[c][i] * centres[c][i]
		}
		for i := range centres[c] {
			centres[c][i] /= math.Sqrt(s)
		}
	}
	sigma := spread / math.Sqrt(float64(dim))
	backing := make([]float32, n*dim)
	out := make([][]float32, n)
	for j := range out {
		c := centres[r.IntN(clusters)]
		v := backing[j*dim : (j+1)*dim : (j+1)*dim]
		var s float64
		for i := range v {
			f := c[i] + sigma*r.NormFloat64()
			v[i] = float32(f)
			s += f * f
		}
		for i := range v {
			v[i] = float32(float64(v[i]) / math.Sqrt(s))
		}
		out[j] = v
	}
	return out
}

// bruteForce returns the k best of vecs (keyed by ids) for q, scored in
// float64, best first, ties to the lower id.
func bruteForce(ids []int64, vecs [][]float32, q []float32, k int) []Hit {
	hits := make([]Hit, len(ids))
	for i, v := range vecs {
		var s float64
		for j := range v {
			s += float64(q[j]) * float64(v[j])
		}
		hits[i] = Hit{ids[i], float32(s)}
	}
	slices.SortFunc(hits, func(a, b Hit) int {
		return cmp.Or(cmp.Compare(b.Score, a.Score), cmp.Compare(a.ID, b.ID))
	})
	return hits[:min(k, len(hits))]
}

func hitIDs(h []Hit) []int64 {
	ids := make([]int64, len(h))
	for i := range h {
		ids[i] = h[i].ID
	}
	return ids
}

// checkHits fails unless got has want's ids in want's order and scores within
// float32 rounding.
func checkHits(t *testing.T, name string, got, want []Hit) {
	t.Helper()
	if !slices.Equal(hitIDs(got), hitIDs(want)) {
		t.Errorf("%s: ids = %v, want %v", name, hitIDs(got), hitIDs(want))
		return
	}
	for i := range got {
		if d := math.Abs(float64(got[i].Score - want[i].Score)); d > 1e-5 {
			t.Errorf("%s: hit %d score = %v, want %v", name, i, got[i].Score, want[i].Score)
		}
	}
}

func TestSearchMatchesBruteForce(t *testing.T) {
	for _, kernel := range []struct {
		name string
		avx2 bool
	}{{"dispatched", useAVX2}, {"generic", false}} {
		for _, tc := range []struct {
			n, dim, k int
		}{
			{0, 8, 5},
			{1, 3, 5},
			{7, 1, 3},
			{50, 5, 50},
			{300, 17, 10},
			{2000, 384, 10},
			{2000, 100, 1},
			{1000, 33, 100},
		} {
			t.Run(fmt.Sprintf("%s/n=%d/dim=%d/k=%d", kernel.name, tc.n, tc.dim, tc.k), func(t *testing.T) {
				defer func(old bool) { useAVX2 = old }(useAVX2)
				useAVX2 = kernel.avx2
				r := rand.New(rand.NewPCG(uint64(tc.n), uint64(tc.dim)))
				vecs := clustered(r, tc.n, tc.dim, 10, 1)
				ids := make([]int64, tc.n)
				x := New(tc.dim)
				for i, v := range vecs {
					ids[i] = r.Int64N(1<<40) - 1<<39 // negative ids too
					if err := x.Add(ids[i], v); err != nil {
						t.Fatal(err)
					}
				}
				if got := x.Len(); got != tc.n {
					t.Fatalf("Len = %d, want %d", got, tc.n)
				}
				for range 5 {
					q := clustered(r, 1, tc.dim, 1, 1)[0]
					want := bruteForce(ids, vecs, q, tc.k)
					checkHits(t, "Search", x.Search(q, tc.k), want)
					checkHits(t, "SearchInt8 (rerank all)", x.SearchInt8(q, tc.k, tc.n), want)
				}
			})
		}
	}
}

func TestSearchScoresAreCosine(t *testing.T) {
	x := New(2)
	if err := x.Add(1, []float32{3, 4}); err != nil { // stored as (0.6, 0.8)
		t.Fatal(err)
	}
	if err := x.Add(2, []float32{-10, 0}); err != nil {
		t.Fatal(err)
	}
	want := []Hit{{1, 0.8}, {2, 0}}
	for name, got := range map[string][]Hit{
		"Search":     x.Search([]float32{0, 7}, 5), // query normalized too
		"SearchInt8": x.SearchInt8([]float32{0, 7}, 5, 0),
	} {
		checkHits(t, name, got, want)
	}
}

func TestSearchTiesByID(t *testing.T) {
	x := New(3)
	v := []float32{1, 2, 3}
	for _, id := range []int64{9, 4, 7, 1, 8} {
		if err := x.Add(id, v); err != nil {
			t.Fatal(err)
		}
	}
	for name, got := range map[string][]Hit{
		"Search":     x.Search(v, 3),
		"SearchInt8": x.SearchInt8(v, 3, 0),
	} {
		if want := []int64{1, 4, 7}; !slices.Equal(hitIDs(got), want) {
			t.Errorf("%s: ids = %v, want %v", name, hitIDs(got), want)
		}
	}
}

func TestAddRejects(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, tc := range []struct {
		name string
		vec  []float32
	}{
		{"short", []float32{1, 2}},
		{"long", []float32{1, 2, 3, 4}},
		{"nil", nil},
		{"NaN", []float32{1, nan, 3}},
		{"Inf", []float32{1, 2, inf}},
		{"-Inf", []float32{-inf, 2, 3}},
		{"zero", []float32{0, 0, 0}},
		{"overflows", []float32{3e38, 3e38, 3e38}}, // fine: normalized in float64
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := New(3)
			err := x.Add(1, tc.vec)
			if tc.name == "overflows" {
				if err != nil {
					t.Fatalf("Add = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, kind.Invalid) {
				t.Fatalf("Add = %v, want kind.Invalid", err)
			}
			if x.Len() != 0 {
				t.Errorf("Len = %d after a failed Add, want 0", x.Len())
			}
		})
	}
}

func TestSearchRejects(t *testing.T) {
	x := New(3)
	if err := x.Add(1, []float32{1, 0, 0}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		q    []float32
		k    int
	}{
		{"k=0", []float32{1, 0, 0}, 0},
		{"k<0", []float32{1, 0, 0}, -1},
		{"wrong dim", []float32{1, 0}, 1},
		{"zero", []float32{0, 0, 0}, 1},
		{"NaN", []float32{float32(math.NaN()), 0, 0}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := x.Search(tc.q, tc.k); got != nil {
				t.Errorf("Search = %v, want nil", got)
			}
			if got := x.SearchInt8(tc.q, tc.k, 0); got != nil {
				t.Errorf("SearchInt8 = %v, want nil", got)
			}
		})
	}
	if got := New(0).Search(nil, 1); got != nil {
		t.Errorf("New(0).Search = %v, want nil", got)
	}
	if err := New(-1).Add(1, nil); err == nil {
		t.Error("New(-1).Add succeeded")
	}
}

// TestAddReplaceRemove mutates an index and a plain map side by side and
// checks every search against brute force over the map.
func TestAddReplaceRemove(t *testing.T) {
	const dim = 24
	r := rand.New(rand.NewPCG(5, 6))
	x := New(dim)
	model := map[int64][]float32{}
	check := func(step int) {
		t.Helper()
		if x.Len() != len(model) {
			t.Fatalf("step %d: Len = %d, want %d", step, x.Len(), len(model))
		}
		var ids []int64
		var vecs [][]float32
		for id, v := range model {
			ids, vecs = append(ids, id), append(vecs, v)
		}
		q := clustered(r, 1, dim, 1, 1)[0]
		want := bruteForce(ids, vecs, q, len(model)+1)
		checkHits(t, fmt.Sprintf("step %d: Search", step), x.Search(q, len(model)+1), want)
		checkHits(t, fmt.Sprintf("step %d: SearchInt8", step), x.SearchInt8(q, len(model)+1, 0), want)
	}
	for step := range 400 {
		id := int64(r.IntN(40))
		switch r.IntN(3) {
		case 0, 1: // add or replace
			v := clustered(r, 1, dim, 1, 1)[0]
			if err := x.Add(id, v); err != nil {
				t.Fatal(err)
			}
			model[id] = v
		case 2:
			x.Remove(id) // absent ids too
			delete(model, id)
		}
		check(step)
	}
	for id := range model {
		x.Remove(id)
	}
	if x.Len() != 0 || x.Search(make([]float32, dim), 1) != nil {
		t.Errorf("index not empty after removing everything")
	}
}

func TestReplaceKeepsOneEntry(t *testing.T) {
	x := New(2)
	for _, v := range [][]float32{{1, 0}, {0, 1}} {
		if err := x.Add(42, v); err != nil {
			t.Fatal(err)
		}
	}
	got := x.Search([]float32{0, 1}, 10)
	checkHits(t, "Search", got, []Hit{{42, 1}})
}

func TestBytesGrows(t *testing.T) {
	x := New(384)
	empty := x.Bytes()
	v := clustered(rand.New(rand.NewPCG(7, 8)), 1000, 384, 4, 1)
	for i, v := range v {
		if err := x.Add(int64(i), v); err != nil {
			t.Fatal(err)
		}
	}
	// At least the float32 and int8 copies and the scales.
	if got, min := x.Bytes(), empty+1000*(384*5+4); got < min {
		t.Errorf("Bytes = %d with 1000 vectors, want ≥ %d", got, min)
	}
}

// TestInt8Recall measures recall@10 of SearchInt8 (default rerank) against
// exact Search on 20,000 clustered 384-d vectors.
func TestInt8Recall(t *testing.T) {
	const (
		n, dim, k, queries = 20000, 384, 10, 200
	)
	for _, tc := range []struct {
		name     string
		clusters int
		spread   float64
	}{
		{"clusters=100/spread=0.75", 100, 0.75}, // neighbours at cosine ≈ 0.6
		{"clusters=1000/spread=0.5", 1000, 0.5}, // small, tight topics
		{"uniform", 1, 1e6},                     // no structure: the hardest case
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(9, 10))
			x := New(dim)
			for i, v := range clustered(r, n, dim, tc.clusters, tc.spread) {
				if err := x.Add(int64(i), v); err != nil {
					t.Fatal(err)
				}
			}
			qs := clustered(r, queries, dim, tc.clusters, tc.spread)
			recall := func(rerank int) float64 {
				found := 0
				for _, q := range qs {
					exact := x.Search(q, k)
					for _, h := range x.SearchInt8(q, k, rerank) {
						if slices.ContainsFunc(exact, func(e Hit) bool { return e.ID == h.ID }) {
							found++
						}
					}
				}
				return float64(found) / float64(len(qs)*k)
			}
			got := recall(0)
			t.Logf("recall@%d = %.4f over %d queries (default rerank %d; %.4f with rerank %d)",
				k, got, queries, 4*k, recall(k), k)
			if got < 0.98 {
				t.Errorf("recall@%d = %.4f, want ≥ 0.98", k, got)
			}
		})
	}
}

// TestConcurrentSearchAndWrite runs searches against writers; with -race it
// checks the locking.
func TestConcurrentSearchAndWrite(t *testing.T) {
	const dim = 16
	r := rand.New(rand.NewPCG(11, 12))
	vecs := clustered(r, 500, dim, 5, 1)
	x := New(dim)
	for i, v := range vecs[:250] {
		if err := x.Add(int64(i), v); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				q := vecs[(g*200+i)%len(vecs)]
				if len(x.Search(q, 5)) == 0 || len(x.SearchInt8(q, 5, 0)) == 0 {
					t.Error("empty result from a non-empty index")
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i, v := range vecs[250:] {
			if err := x.Add(int64(250+i), v); err != nil {
				t.Error(err)
				return
			}
			x.Remove(int64(i))
		}
	})
	wg.Wait()
	if got := x.Len(); got != 250 {
		t.Errorf("Len = %d, want 250", got)
	}
}
