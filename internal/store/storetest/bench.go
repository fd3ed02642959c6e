package storetest

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// benchStopwords is how many of the most frequent words of the benchmark
// vocabulary count as stopwords: store.Terms drops those of English, which
// would otherwise be in nearly every chunk.
const benchStopwords = 100

// BenchWord returns a word drawn from a Zipf-distributed vocabulary, like
// the words of natural text, stopwords left out, so that benchmarks of every
// backend search the same kind of corpus.
func BenchWord(z *rand.Zipf) string {
	for {
		if v := z.Uint64(); v >= benchStopwords {
			return fmt.Sprintf("w%x", v)
		}
	}
}

// BenchText returns about n characters of BenchWords.
func BenchText(z *rand.Zipf, n int) string {
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(BenchWord(z))
		b.WriteByte(' ')
	}
	return b.String()
}
