package guard

import (
	"math/rand/v2"
	"strings"
)

// Deterministic text for tests and benchmarks.

// pseudoWords returns n distinct made-up words.
func pseudoWords(r *rand.Rand, n int) []string {
	syl := []string{"ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "ve", "zu", "ar", "en", "ol", "ix", "um", "dra", "gle", "tor"}
	seen := map[string]bool{}
	var out []string
	for len(out) < n {
		var b strings.Builder
		for range 2 + r.IntN(3) {
			b.WriteString(syl[r.IntN(len(syl))])
		}
		if s := b.String(); !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// common English words, the most frequent first.
var englishWords = strings.Fields(`the of and to a in is you that it for was on are as with
his they be at one have this from or had by not word but what some we can out other were all
there when up use your how said an each she which do their time if will way about many then
them write would like so these her long make thing see him two has look more day could go come
did number sound no most people my over know water than call first who may down side been now
find any new work part take get place made live where after back little only round man year
came show every good me give our under name very through just form sentence great think say
help low line differ turn cause much mean before move right boy old too same tell does set
three want air well also play small end put home read hand port large spell add even land here
must big high such follow act why ask men change went light kind off need house picture try us
again animal point mother world near build self earth father account order invoice refund
customer support team please thank contact email policy days business plan price report data`)

// phrases are short stock phrases (at most 7 words) that stored documents
// and innocent answers share.
var phrases = []string{
	"thank you for contacting us",
	"please let me know if",
	"as soon as possible",
	"in order to",
	"at the same time",
	"on the other hand",
	"for more information please see",
	"we are happy to help",
	"the refund policy applies to",
	"your account has been updated",
	"within thirty business days",
	"if you have any questions",
}

// zipfText returns about n words drawn from vocab with a Zipf-like bias to
// its first words, with a phrase now and then (never two in a row).
func zipfText(r *rand.Rand, vocab []string, n int) string {
	z := rand.NewZipf(r, 1.1, 2, uint64(len(vocab)-1))
	var out []string
	for len(out) < n {
		if r.IntN(12) == 0 && (len(out) == 0 || !strings.HasSuffix(out[len(out)-1], "|")) {
			out = append(out, strings.Fields(phrases[r.IntN(len(phrases))])...)
			out[len(out)-1] += "|"
			continue
		}
		out = append(out, vocab[z.Uint64()])
	}
	text := strings.Join(out, " ")
	return strings.ReplaceAll(text, "|", ".")
}

// randomText returns n words drawn uniformly from vocab.
func randomText(r *rand.Rand, vocab []string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = vocab[r.IntN(len(vocab))]
	}
	return out
}

// mangle joins words with varied punctuation and case, and a zero-width
// space inside some words: none of which changes the words.
func mangle(r *rand.Rand, words []string) string {
	seps := []string{" ", ", ", "; ", " — ", "\n", "! ", " (", ") ", ": ", "... ", " *", "* ", " \"", "\" "}
	var b strings.Builder
	for i, wd := range words {
		if i > 0 {
			b.WriteString(seps[r.IntN(len(seps))])
		}
		switch r.IntN(4) {
		case 0:
			wd = strings.ToUpper(wd)
		case 1:
			wd = strings.ToUpper(wd[:1]) + wd[1:]
		case 2:
			if len(wd) > 2 {
				wd = wd[:2] + "\u200b" + wd[2:]
			}
		}
		b.WriteString(wd)
	}
	return b.String()
}
