// Package vector provides exact nearest-neighbour search over embeddings, one
// Index per tenant, and a memory-bounded Cache of indexes.
//
// An Index holds one tenant's vectors and nothing else: there is no global
// index that is searched and then filtered by tenant. Scores are cosine
// similarities; vectors are normalized when added.
package vector

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"unsafe"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
)

// Hit is one search result.
type Hit struct {
	ID    int64
	Score float32 // cosine similarity, in [-1, 1]
}

// Index is an exact search index over vectors of one dimension. Search and
// SearchInt8 may run concurrently with each other; Add and Remove take a
// write lock.
//
// Vectors are stored contiguously: one float32 copy (dim-strided) for exact
// scoring and one int8 copy with a per-vector scale for the quantized scan.
type Index struct {
	dim int

	mu     sync.RWMutex
	ids    []int64       // ids[i] is the id of row i
	rows   map[int64]int // id → row
	vecs   []float32     // row i is vecs[i*dim : (i+1)*dim], unit length
	codes  []int8        // row i is codes[i*dim : (i+1)*dim]
	scales []float32     // row i ≈ codes[row] * scales[i]
}

// New returns an empty index for vectors of dim dimensions. If dim is not
// positive, nothing can be added to the index.
func New(dim int) *Index {
	return &Index{dim: max(dim, 0), rows: make(map[int64]int)}
}

// Dim returns the number of dimensions of the index's vectors.
func (x *Index) Dim() int { return x.dim }

// Add stores vec under id, replacing any vector already stored under id. The
// vector is copied and normalized to unit length. Add fails if vec has the
// wrong dimension, holds a NaN or an infinity, or is all zeros.
func (x *Index) Add(id int64, vec []float32) error {
	if len(vec) != x.dim {
		return fmt.Errorf("%w: vector has %d dimensions, want %d", kind.Invalid, len(vec), x.dim)
	}
	norm, ok := norm(vec)
	if !ok {
		return fmt.Errorf("%w: vector holds a NaN or an infinity", kind.Invalid)
	}
	if norm == 0 {
		return fmt.Errorf("%w: vector is all zeros", kind.Invalid)
	}

	x.mu.Lock()
	defer x.mu.Unlock()
	row, ok := x.rows[id]
	if !ok {
		row = len(x.ids)
		x.rows[id] = row
		x.ids = append(x.ids, id)
		x.vecs = slices.Grow(x.vecs, x.dim)[:len(x.vecs)+x.dim]
		x.codes = slices.Grow(x.codes, x.dim)[:len(x.codes)+x.dim]
		x.scales = append(x.scales, 0)
	}
	dst := x.vecs[row*x.dim : (row+1)*x.dim]
	inv := 1 / norm
	for i, v := range vec {
		dst[i] = float32(float64(v) * inv)
	}
	x.scales[row] = quantize(x.codes[row*x.dim:(row+1)*x.dim], dst)
	return nil
}

// Remove deletes the vector stored under id, if any. The last row takes its
// place, so row order is not insertion order.
func (x *Index) Remove(id int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	row, ok := x.rows[id]
	if !ok {
		return
	}
	delete(x.rows, id)
	last := len(x.ids) - 1
	if row != last {
		moved := x.ids[last]
		x.ids[row] = moved
		x.rows[moved] = row
		copy(x.vecs[row*x.dim:(row+1)*x.dim], x.vecs[last*x.dim:])
		copy(x.codes[row*x.dim:(row+1)*x.dim], x.codes[last*x.dim:])
		x.scales[row] = x.scales[last]
	}
	x.ids = x.ids[:last]
	x.vecs = x.vecs[:last*x.dim]
	x.codes = x.codes[:last*x.dim]
	x.scales = x.scales[:last]
}

// Len returns the number of vectors in the index.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.ids)
}

// mapEntryBytes approximates what one id → row entry costs in a Go map
// (key, value, control byte and load-factor slack).
const mapEntryBytes = 24

// Bytes returns the approximate memory held by the index: its backing arrays
// (by capacity) and its id map.
func (x *Index) Bytes() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return int(unsafe.Sizeof(*x)) +
		cap(x.ids)*8 + cap(x.vecs)*4 + cap(x.codes) + cap(x.scales)*4 +
		len(x.rows)*mapEntryBytes
}

// Search returns the k vectors most similar to q, best first, ties broken
// by lower id. It scores every vector exactly in float32. It returns nil if
// k ≤ 0 or q has the wrong dimension, a NaN, an infinity or no length.
func (x *Index) Search(q []float32, k int) []Hit {
	q, ok := x.query(q, k)
	if !ok {
		return nil
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	n := len(x.ids)
	if n == 0 {
		return nil
	}
	h := make(topK, 0, min(k, n))
	dim := x.dim
	for i := range n {
		s := dot(q, x.vecs[i*dim:(i+1)*dim])
		if len(h) == cap(h) && s < h[0].Score {
			continue // the common case, kept out of offer
		}
		h.offer(s, x.ids[i])
	}
	return h.sorted()
}

// SearchInt8 returns about the k vectors most similar to q, best first. It
// scans the int8 copies of the vectors, keeps the best rerank candidates
// (4k if rerank is 0, never fewer than k) and rescores those exactly in
// float32, so the scores it returns are exact but a true neighbour may be
// missed if quantization pushed it out of the candidates. It returns nil
// where Search does.
func (x *Index) SearchInt8(q []float32, k, rerank int) []Hit {
	q, ok := x.query(q, k)
	if !ok {
		return nil
	}
	if rerank <= 0 {
		rerank = 4 * k
	}
	rerank = max(rerank, k)
	qc := make([]int8, x.dim)
	quantize(qc, q) // the query's scale is common to all scores: ignore it

	x.mu.RLock()
	defer x.mu.RUnlock()
	n := len(x.ids)
	if n == 0 {
		return nil
	}
	dim := x.dim
	cand := make(topK, 0, min(rerank, n))
	for i := range n {
		s := float32(dotInt8(qc, x.codes[i*dim:(i+1)*dim])) * x.scales[i]
		if len(cand) == cap(cand) && s < cand[0].Score {
			continue
		}
		cand.offer(s, int64(i)) // the row, not the id: rescored below
	}
	h := make(topK, 0, min(k, n))
	for _, c := range cand {
		i := int(c.ID)
		h.offer(dot(q, x.vecs[i*dim:(i+1)*dim]), x.ids[i])
	}
	return h.sorted()
}

// query checks a query and returns a unit-length copy of it.
func (x *Index) query(q []float32, k int) ([]float32, bool) {
	if k <= 0 || len(q) != x.dim {
		return nil, false
	}
	n, ok := norm(q)
	if !ok || n == 0 {
		return nil, false
	}
	out := make([]float32, len(q))
	inv := 1 / n
	for i, v := range q {
		out[i] = float32(float64(v) * inv)
	}
	return out, true
}

// norm returns the Euclidean length of v, computed in float64, and false if v
// holds a NaN or an infinity.
func norm(v []float32) (float64, bool) {
	var s float64
	for _, f := range v {
		s += float64(f) * float64(f)
	}
	if math.IsNaN(s) || math.IsInf(s, 0) {
		return 0, false
	}
	return math.Sqrt(s), true
}

// quantize writes v's symmetric int8 quantization to dst and returns the
// scale: v[i] ≈ float32(dst[i]) * scale, with dst in [-127, 127].
func quantize(dst []int8, v []float32) float32 {
	var m float32
	for _, f := range v {
		m = max(m, abs(f))
	}
	if m == 0 {
		clear(dst)
		return 0
	}
	inv := 127 / m
	for i, f := range v {
		dst[i] = int8(math.Round(float64(f * inv)))
	}
	return m / 127
}

func abs(f float32) float32 { return math.Float32frombits(math.Float32bits(f) &^ (1 << 31)) }

// topK keeps the best cap(h) hits seen, as a min-heap with the worst at h[0].
type topK []Hit

// worse reports whether a ranks below b: lower score, or equal score and
// higher id.
func worse(a, b Hit) bool {
	return a.Score < b.Score || (a.Score == b.Score && a.ID > b.ID)
}

// offer considers a hit.
func (h *topK) offer(score float32, id int64) {
	s := *h
	if len(s) < cap(s) {
		s = append(s, Hit{id, score})
		for i := len(s) - 1; i > 0; { // sift up
			p := (i - 1) / 2
			if !worse(s[i], s[p]) {
				break
			}
			s[i], s[p] = s[p], s[i]
			i = p
		}
		*h = s
		return
	}
	if !worse(s[0], Hit{id, score}) {
		return
	}
	s[0] = Hit{id, score}
	s.down(0, len(s))
}

// down sifts s[i] down within s[:n].
func (h topK) down(i, n int) {
	for {
		c := 2*i + 1
		if c >= n {
			return
		}
		if r := c + 1; r < n && worse(h[r], h[c]) {
			c = r
		}
		if !worse(h[c], h[i]) {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}

// sorted empties the heap into a slice, best first.
func (h topK) sorted() []Hit {
	for n := len(h) - 1; n > 0; n-- {
		h[0], h[n] = h[n], h[0]
		h.down(0, n)
	}
	return []Hit(h)
}
