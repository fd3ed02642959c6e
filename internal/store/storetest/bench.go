package storetest

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/bulkhead-ai/bulkhead/internal/store"
)

// BenchTurn is one chat turn, the user's message and the assistant's answer,
// which the message benchmarks of every backend append.
var BenchTurn = []store.Message{
	{Role: "user", Content: strings.Repeat("What is the weather like in Lisbon today? ", 4)},
	{Role: "assistant", Content: strings.Repeat("It is sunny and 24°C in Lisbon. ", 8), Meta: []byte(`{"tool_calls":[{"id":"call_1","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Lisbon\"}"}}]}`)},
}

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
