package sqlite

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// The full-text indexes are blind: for every term of store.Terms(text) they
// hold a token "t" + the first tokenHex hex digits of HMAC-SHA256(key, term)
// (for memories, of the end user's prefix and term; see newBlinder), where
// key is derived from the tenant's data key. Queries hash their terms
// the same way, so BM25 ranks as over the clear terms, while the files hold
// no term and the tokens mean nothing once the key is destroyed.
const (
	blindIndexPurpose = "blind-index"
	docHashPurpose    = "document-hash"
	tokenHex          = 24 // 96 bits: collisions between a tenant's terms are negligible
	// maxQueryTerms bounds the distinct terms of one query, and so the size
	// of its MATCH expression.
	maxQueryTerms = 64
)

// blinder turns terms into blind tokens. It is not safe for concurrent use.
type blinder struct {
	mac    hash.Hash
	prefix []byte // keys every token further; see newBlinder
	sum    []byte
	memo   map[string]string // tokens by term: a document repeats its words
}

// newBlinder returns a blinder for c's tenant. prefix is "" for chunks; for
// memories it names the end user, so that two users' equal terms get
// unrelated tokens. The HMAC input is prefix+term: terms are letters and
// digits only, and prefixes end in NUL, so no two (prefix, term) pairs share
// an input.
func newBlinder(c *keyring.Cipher, prefix string) *blinder {
	return &blinder{
		mac:    hmac.New(sha256.New, c.Derive(blindIndexPurpose)),
		prefix: []byte(prefix),
		memo:   map[string]string{},
	}
}

// token returns the blind token of term.
func (b *blinder) token(term string) string {
	if tok, ok := b.memo[term]; ok {
		return tok
	}
	b.mac.Reset()
	b.mac.Write(b.prefix)
	b.mac.Write([]byte(term))
	b.sum = b.mac.Sum(b.sum[:0])
	var buf [1 + tokenHex]byte
	buf[0] = 't'
	hex.Encode(buf[1:], b.sum[:tokenHex/2])
	tok := string(buf[:])
	b.memo[term] = tok
	return tok
}

// document returns the FTS document for text: its terms' tokens, separated by
// spaces, in sorted order, so that the index keeps each term's frequency
// (which BM25 needs) but not the order of the words.
func (b *blinder) document(text string) string {
	terms := store.Terms(text)
	tokens := make([]string, len(terms))
	for i, t := range terms {
		tokens[i] = b.token(t)
	}
	slices.Sort(tokens)
	return strings.Join(tokens, " ")
}

// query returns the FTS5 MATCH expression for text: the tokens of its first
// maxQueryTerms distinct terms, each quoted, joined by OR. Tokens are a
// letter and hex digits, so no query syntax can get in. It returns "" when
// text has no terms; such a query matches nothing.
func (b *blinder) query(text string) string {
	var q strings.Builder
	seen := map[string]bool{}
	for _, t := range store.Terms(text) {
		if seen[t] {
			continue
		}
		if len(seen) == maxQueryTerms {
			break
		}
		seen[t] = true
		if q.Len() > 0 {
			q.WriteString(" OR ")
		}
		q.WriteByte('"')
		q.WriteString(b.token(t))
		q.WriteByte('"')
	}
	return q.String()
}

// docHashMAC is the keyed hash of a document's content hash, by which a
// re-ingested text is found. An unkeyed SHA-256 in clear would let anyone
// holding the file confirm a guessed document.
func docHashMAC(c *keyring.Cipher, h string) []byte {
	m := hmac.New(sha256.New, c.Derive(docHashPurpose))
	m.Write([]byte(h))
	return m.Sum(nil)
}

// The associated-data contexts of the knowledge base and memories. Document
// ids and user ids hold no NUL (see validDocumentID and tenant.ParseUserID)
// and ordinals and memory ids are decimal, so no two places share a context.
// A chunk is bound to its document and ordinal rather than to its rowid:
// rowids can be reused after a delete, document ids are random.
func docTextContext(id string) string { return "document.text\x00" + id }
func docMetaContext(id string) string { return "document.metadata\x00" + id }
func docHashContext(id string) string { return "document.hash\x00" + id }

func chunkTextContext(doc string, ordinal int) string {
	return "chunk.text\x00" + doc + "\x00" + strconv.Itoa(ordinal)
}

func chunkEmbeddingContext(doc string, ordinal int) string {
	return "chunk.embedding\x00" + doc + "\x00" + strconv.Itoa(ordinal)
}

func memoryTextContext(user tenant.UserID, id int64) string {
	return "memory.text\x00" + string(user) + "\x00" + strconv.FormatInt(id, 10)
}

func memoryEmbeddingContext(user tenant.UserID, id int64) string {
	return "memory.embedding\x00" + string(user) + "\x00" + strconv.FormatInt(id, 10)
}

// sealEmbedding encrypts v as little-endian float32s; an empty v is nil, which
// is stored as NULL.
func sealEmbedding(c *keyring.Cipher, v []float32, context string) []byte {
	if len(v) == 0 {
		return nil
	}
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return c.Seal(b, context)
}

var errEmbeddingSize = errors.New("embedding is not a whole number of float32s")

// openEmbedding reverses sealEmbedding; a nil sealed (NULL) is a nil embedding.
func openEmbedding(c *keyring.Cipher, sealed []byte, context string) ([]float32, error) {
	if sealed == nil {
		return nil, nil
	}
	b, err := c.Open(sealed, context)
	if err != nil {
		return nil, err
	}
	if len(b)%4 != 0 {
		return nil, errEmbeddingSize
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v, nil
}
