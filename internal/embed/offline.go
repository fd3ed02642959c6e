package embed

import (
	"context"
	"math"
	"strconv"
	"sync"
	"unicode"
	"unicode/utf8"
)

// DefaultOfflineDim is the dimension of NewOffline(0).
const DefaultOfflineDim = 384

// Feature weights. In L2 terms a typical word's character n-grams together
// weigh a little more than the word itself, and a bigram a quarter of it.
const (
	weightWord     = 1.0
	weightBigram   = 0.5
	weightCharGram = 0.3
)

// Seeds keep the feature kinds apart: the word "the" and the 3-gram "the"
// are different features.
const (
	seedWord     uint64 = 0x9e3779b97f4a7c15
	seedBigram   uint64 = 0xc2b2ae3d27d4eb4f
	seedCharGram uint64 = 0x165667b19e3779f9
)

const (
	fnvOffset uint64 = 14695981039346656037
	fnvPrime  uint64 = 1099511628211
)

// Offline is a deterministic, lexical Embedder that runs in process: no model,
// no download, no network. See the package comment for what it can and cannot
// match. Its vectors depend only on the text and the dimension, never on
// time, platform or previous calls. It is safe for concurrent use.
//
// A text is lowercased and cut into words (maximal runs of Unicode letters,
// digits and combining marks; everything else separates words). Features are
// every word, every pair of adjacent words and every character 3-, 4- and
// 5-gram of each word framed as "<word>"; each is hashed (FNV-1a over code
// points, then a 64-bit finalizer) to a bucket and a sign. A feature seen tf
// times adds sign·weight·(1+ln tf) to its bucket, so repetition counts, but
// sublinearly. The vector is then L2-normalized; a text without words is the
// zero vector.
type Offline struct {
	dim   int
	model string
	pool  sync.Pool // *offlineScratch
}

// NewOffline returns an offline embedder producing dim-dimensional vectors;
// dim <= 0 means DefaultOfflineDim.
func NewOffline(dim int) *Offline {
	if dim <= 0 {
		dim = DefaultOfflineDim
	}
	return &Offline{dim: dim, model: "offline-ngram-" + strconv.Itoa(dim)}
}

// Dim implements Embedder.
func (o *Offline) Dim() int { return o.dim }

// Model implements Embedder: "offline-ngram-<dim>". Any change to the
// features, weights or hashing must change this name, because vectors from
// before and after are not comparable.
func (o *Offline) Model() string { return o.model }

// Embed implements Embedder. It fails only when ctx is done.
func (o *Offline) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	// One backing array for all vectors; the full slice expressions keep an
	// append to one vector from writing into the next.
	backing := make([]float32, len(texts)*o.dim)
	s := o.scratch()
	defer o.release(s)
	for i, text := range texts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		v := backing[i*o.dim : (i+1)*o.dim : (i+1)*o.dim]
		s.embed(text, v)
		out[i] = v
	}
	return out, nil
}

// EmbedOne returns the vector of a single text.
func (o *Offline) EmbedOne(text string) []float32 {
	v := make([]float32, o.dim)
	s := o.scratch()
	s.embed(text, v)
	o.release(s)
	return v
}

func (o *Offline) scratch() *offlineScratch {
	if s, ok := o.pool.Get().(*offlineScratch); ok {
		return s
	}
	return &offlineScratch{acc: make([]float64, o.dim)}
}

func (o *Offline) release(s *offlineScratch) {
	if len(s.keys) > maxPooledTable || cap(s.word) > maxPooledWord {
		return // one huge text must not pin its tables forever
	}
	o.pool.Put(s)
}

const (
	initialTable   = 1 << 10
	maxPooledTable = 1 << 16
	maxPooledWord  = 1 << 12
)

// offlineScratch is the reusable state of one embedding: an open-addressing
// table counting features, the runes of the current word and the bucket
// accumulator. Nothing in it is allocated per token.
type offlineScratch struct {
	keys    []uint64 // feature hash, 0 = empty slot
	counts  []uint32
	weights []float32
	used    []int32 // occupied slots, in insertion order
	word    []rune  // "<" + lowercased word + ">"
	acc     []float64
}

func (s *offlineScratch) embed(text string, v []float32) {
	if s.keys == nil {
		s.keys = make([]uint64, initialTable)
		s.counts = make([]uint32, initialTable)
		s.weights = make([]float32, initialTable)
	}
	var prev uint64 // hash of the previous word, 0 = none
	s.word = append(s.word[:0], '<')
	for i := 0; i < len(text); {
		c := text[i]
		if c < utf8.RuneSelf {
			i++
			switch {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
				s.word = append(s.word, rune(c))
				continue
			case 'A' <= c && c <= 'Z':
				s.word = append(s.word, rune(c+'a'-'A'))
				continue
			}
		} else {
			r, n := utf8.DecodeRuneInString(text[i:])
			i += n
			if r != utf8.RuneError && (unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)) {
				s.word = append(s.word, unicode.ToLower(r))
				continue
			}
		}
		if len(s.word) > 1 {
			prev = s.addWord(prev)
			s.word = s.word[:1]
		}
	}
	if len(s.word) > 1 {
		s.addWord(prev)
	}
	s.vector(v)
}

// addWord adds the features of the word in s.word (framed by '<' and, after
// this call appends it, '>') and returns the word's hash.
func (s *offlineScratch) addWord(prev uint64) uint64 {
	w := s.word[1:]
	h := fnvOffset
	for _, r := range w {
		h = (h ^ uint64(r)) * fnvPrime
	}
	s.add(mix(h^seedWord), weightWord)
	if prev != 0 {
		s.add(mix(mix(prev^seedBigram)^h), weightBigram)
	}
	s.word = append(s.word, '>')
	g := s.word
	for i := range g {
		if i+3 > len(g) {
			break
		}
		gh := fnvOffset ^ seedCharGram
		for n := 0; n < 5 && i+n < len(g); n++ {
			gh = (gh ^ uint64(g[i+n])) * fnvPrime
			if n >= 2 {
				s.add(mix(gh+uint64(n)), weightCharGram)
			}
		}
	}
	return h | 1 // never 0, which means "no previous word"
}

// mix is the splitmix64 finalizer; FNV alone leaves short inputs poorly spread.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// add counts one occurrence of feature key.
func (s *offlineScratch) add(key uint64, weight float32) {
	if key == 0 {
		key = 1
	}
	mask := uint64(len(s.keys) - 1)
	for i := key & mask; ; i = (i + 1) & mask {
		switch s.keys[i] {
		case key:
			s.counts[i]++
			return
		case 0:
			s.keys[i], s.counts[i], s.weights[i] = key, 1, weight
			s.used = append(s.used, int32(i))
			if 2*len(s.used) > len(s.keys) {
				s.grow()
			}
			return
		}
	}
}

func (s *offlineScratch) grow() {
	keys, counts, weights := s.keys, s.counts, s.weights
	n := 2 * len(keys)
	s.keys, s.counts, s.weights = make([]uint64, n), make([]uint32, n), make([]float32, n)
	mask := uint64(n - 1)
	for j, old := range s.used {
		k := keys[old]
		i := k & mask
		for s.keys[i] != 0 {
			i = (i + 1) & mask
		}
		s.keys[i], s.counts[i], s.weights[i] = k, counts[old], weights[old]
		s.used[j] = int32(i)
	}
}

// vector folds the counted features into v, normalizes it and clears the
// table for the next text.
func (s *offlineScratch) vector(v []float32) {
	acc := s.acc[:len(v)]
	clear(acc)
	dim := uint64(len(v))
	for _, i := range s.used {
		k := s.keys[i]
		w := float64(s.weights[i])
		if c := s.counts[i]; c > 1 {
			w *= 1 + math.Log(float64(c))
		}
		b := ((k >> 32) * dim) >> 32 // high bits pick the bucket (the table uses the low ones)
		if k&(1<<31) != 0 {
			w = -w
		}
		acc[b] += w
		s.keys[i] = 0
	}
	s.used = s.used[:0]
	var sum float64
	for _, x := range acc {
		sum += x * x
	}
	if sum == 0 {
		clear(v)
		return
	}
	inv := 1 / math.Sqrt(sum)
	for i, x := range acc {
		v[i] = float32(x * inv)
	}
}
