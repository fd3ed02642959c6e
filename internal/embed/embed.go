// Package embed turns text into vectors for search, and caches them per
// tenant.
//
// Two Embedders are provided:
//
//   - Offline is built in, deterministic and needs no model download or
//     network. It is honestly lexical: it hashes lowercase word unigrams, word
//     bigrams and character 3- to 5-grams of each word into a fixed number of
//     signed buckets (feature hashing), weights term frequency sublinearly and
//     L2-normalizes the result. Texts that share words, word pairs or word
//     fragments (stems, inflections, typos) score a higher cosine. It has no
//     semantics: synonyms, paraphrases and translations do not match unless
//     they share surface forms ("car" and "automobile" are unrelated to it),
//     and negation is invisible ("is safe" and "is not safe" are close). Use
//     it for demos, tests, air-gapped installs and as a keyword-ish signal;
//     use a real model for semantic search.
//   - OpenAI calls any OpenAI-compatible /embeddings endpoint (OpenAI, Ollama,
//     vLLM, Hugging Face TEI, …).
//
// Embeddings are as sensitive as the text they came from (they can be
// inverted), so Cache keeps every tenant's entries apart: each key is a keyed
// hash under a per-tenant secret, prefixed by the tenant, and each entry is
// checked against the tenant on read.
package embed

import (
	"context"
	"math"
)

// Embedder turns texts into vectors.
type Embedder interface {
	// Embed returns one L2-normalized vector per text, in order. A text with
	// no features (for example the empty string) may get the zero vector.
	Embed(ctx context.Context, texts []string) ([][]float32, error)
	// Dim is the length of every vector, or 0 while it is not yet known.
	Dim() int
	// Model is a stable identifier of the embedding function, part of cache
	// keys and of what stored vectors must be compared with: vectors from
	// two different Model values are not comparable.
	Model() string
}

// Cosine returns the cosine similarity of a and b. It is 0 when either is the
// zero vector or their lengths differ (vectors of different models). For
// L2-normalized vectors it equals the dot product.
func Cosine(a, b []float32) float64 {
	if len(a) != len(b) {
		return 0
	}
	var dot, na, nb float64
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		dot += x * y
		na += x * x
		nb += y * y
	}
	if na == 0 || nb == 0 {
		return 0
	}
	return dot / math.Sqrt(na*nb)
}

// normalize scales v to unit L2 length in place; the zero vector stays zero.
func normalize(v []float32) {
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	if sum == 0 {
		return
	}
	inv := 1 / math.Sqrt(sum)
	for i, x := range v {
		v[i] = float32(float64(x) * inv)
	}
}
