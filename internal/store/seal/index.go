package seal

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"slices"
	"strings"

	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// The full-text indexes are blind: for every term of store.Terms(text) (its
// words, stemmed) they
// hold a token "t" + the first TokenHex hex digits of HMAC-SHA256(key, term)
// (for memories, of the end user's prefix and term; see MemoryBlinder), where
// key is derived from the tenant's data key. Queries hash their terms the
// same way, so BM25 ranks as over the clear terms, while the stored index
// holds no term and the tokens mean nothing once the key is destroyed.
const (
	blindIndexPurpose = "blind-index"
	// TokenHex is how many hex digits of the HMAC a token keeps: 96 bits,
	// so collisions between a tenant's terms are negligible.
	TokenHex = 24
	// MaxQueryTerms bounds the distinct terms of one query, and so the cost
	// of running it.
	MaxQueryTerms = 64
)

// Blinder turns terms into blind tokens. It is not safe for concurrent use.
type Blinder struct {
	mac    hash.Hash
	prefix []byte // keys every token further; see MemoryBlinder
	sum    []byte
	memo   map[string]string // tokens by term: a document repeats its words
}

// ChunkBlinder returns the blinder of c's tenant's knowledge base.
func ChunkBlinder(c *keyring.Cipher) *Blinder { return newBlinder(c, "") }

// MemoryBlinder returns the blinder of the memories of c's tenant's end user
// user, so that two users' equal terms get unrelated tokens. The HMAC input
// is prefix+term: terms are letters and digits only, user ids hold no control
// characters and the prefix ends in NUL, so no two (user, term) pairs, nor a
// chunk term, share an input.
func MemoryBlinder(c *keyring.Cipher, user tenant.UserID) *Blinder {
	return newBlinder(c, "memory\x00"+string(user)+"\x00")
}

func newBlinder(c *keyring.Cipher, prefix string) *Blinder {
	return &Blinder{
		mac:    hmac.New(sha256.New, c.Derive(blindIndexPurpose)),
		prefix: []byte(prefix),
		memo:   map[string]string{},
	}
}

// Token returns the blind token of term.
func (b *Blinder) Token(term string) string {
	if tok, ok := b.memo[term]; ok {
		return tok
	}
	b.mac.Reset()
	b.mac.Write(b.prefix)
	b.mac.Write([]byte(term))
	b.sum = b.mac.Sum(b.sum[:0])
	var buf [1 + TokenHex]byte
	buf[0] = 't'
	hex.Encode(buf[1:], b.sum[:TokenHex/2])
	tok := string(buf[:])
	b.memo[term] = tok
	return tok
}

// Tokens returns the tokens of the terms of text, with repeats, in sorted
// order: an index keeps each term's frequency (which BM25 needs) but not the
// order of the words.
func (b *Blinder) Tokens(text string) []string {
	terms := store.Terms(text)
	tokens := make([]string, len(terms))
	for i, t := range terms {
		tokens[i] = b.Token(t)
	}
	slices.Sort(tokens)
	return tokens
}

// Document returns Tokens(text) separated by spaces: the document a
// full-text engine with a whitespace tokenizer indexes.
func (b *Blinder) Document(text string) string {
	return strings.Join(b.Tokens(text), " ")
}

// Query returns the tokens of the first MaxQueryTerms distinct words of
// text (store.Words), in the order they come: for each, the token of its
// stem (store.Terms) and, when the word is not its own stem, the word's own
// token too, which finds text indexed before terms were stemmed (such an
// index holds the words as they were written). A token is a letter and hex
// digits, so no query syntax can get in. It is empty when text has no terms;
// such a query matches nothing.
func (b *Blinder) Query(text string) []string {
	var tokens []string
	words := map[string]bool{}
	terms := map[string]bool{}
	add := func(term string) {
		if !terms[term] {
			terms[term] = true
			tokens = append(tokens, b.Token(term))
		}
	}
	for _, w := range store.Words(text) {
		if words[w] {
			continue
		}
		if len(words) == MaxQueryTerms {
			break
		}
		words[w] = true
		add(store.Stem(w))
		add(w)
	}
	return tokens
}
