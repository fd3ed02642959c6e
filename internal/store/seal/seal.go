// Package seal is how every tenant data-plane backend protects what it
// stores: the associated-data context each sealed value is bound to, the
// sealing of embeddings, the keyed hash that finds a re-ingested document and
// the blind full-text index. It is the one copy of this code, so a ciphertext
// or a blind token means the same thing in every backend, and a tenant's data
// can move from one backend to another as it is.
//
// Every ciphertext is sealed with the tenant's data key (keyring.Cipher, which
// binds it to the tenant) under a context naming its column and its place
// inside the tenant, so a ciphertext moved to another tenant, row, column,
// end user or secret name does not open.
package seal

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math"
	"strconv"

	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// The associated-data contexts of the sealed columns. Each binds a ciphertext
// to its column and its place inside the tenant (the Cipher adds the tenant
// itself). User ids, session ids, secret names and document ids hold no NUL
// (see the tenant parsers and the backends' document id check) and ordinals
// and memory ids are decimal, so the NULs part the fields and no two places
// share a context. A chunk is bound to its document and ordinal rather than
// to its row id: row ids can be reused, document ids are random.

// MessageContent is the context of the content of a message of user's session.
func MessageContent(user tenant.UserID, session tenant.SessionID) string {
	return "message.content\x00" + string(user) + "\x00" + string(session)
}

// MessageMeta is the context of the meta of a message of user's session.
func MessageMeta(user tenant.UserID, session tenant.SessionID) string {
	return "message.meta\x00" + string(user) + "\x00" + string(session)
}

// Secret is the context of the value of the tenant's secret name.
func Secret(name tenant.SecretName) string {
	return "secret\x00" + string(name)
}

// DocumentText is the context of the text of document id.
func DocumentText(id string) string { return "document.text\x00" + id }

// DocumentMetadata is the context of the metadata of document id.
func DocumentMetadata(id string) string { return "document.metadata\x00" + id }

// DocumentHash is the context of the content hash of document id.
func DocumentHash(id string) string { return "document.hash\x00" + id }

// ChunkText is the context of the text of chunk ordinal of document doc.
func ChunkText(doc string, ordinal int) string {
	return "chunk.text\x00" + doc + "\x00" + strconv.Itoa(ordinal)
}

// ChunkEmbedding is the context of the embedding of chunk ordinal of
// document doc.
func ChunkEmbedding(doc string, ordinal int) string {
	return "chunk.embedding\x00" + doc + "\x00" + strconv.Itoa(ordinal)
}

// MemoryText is the context of the text of user's memory id.
func MemoryText(user tenant.UserID, id int64) string {
	return "memory.text\x00" + string(user) + "\x00" + strconv.FormatInt(id, 10)
}

// MemoryEmbedding is the context of the embedding of user's memory id.
func MemoryEmbedding(user tenant.UserID, id int64) string {
	return "memory.embedding\x00" + string(user) + "\x00" + strconv.FormatInt(id, 10)
}

const docHashPurpose = "document-hash"

// DocumentHashMAC is the keyed hash of a document's content hash h, by which
// a re-ingested text is found. An unkeyed SHA-256 in clear would let anyone
// holding the stored rows confirm a guessed document.
func DocumentHashMAC(c *keyring.Cipher, h string) []byte {
	m := hmac.New(sha256.New, c.Derive(docHashPurpose))
	m.Write([]byte(h))
	return m.Sum(nil)
}

// Embedding encrypts v as little-endian float32s under context; an empty v
// is nil, which backends store as NULL.
func Embedding(c *keyring.Cipher, v []float32, context string) []byte {
	if len(v) == 0 {
		return nil
	}
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return c.Seal(b, context)
}

// ErrEmbeddingSize is returned by OpenEmbedding for a plaintext that is not
// a whole number of float32s.
var ErrEmbeddingSize = errors.New("embedding is not a whole number of float32s")

// OpenEmbedding reverses Embedding; a nil sealed (NULL) is a nil embedding.
func OpenEmbedding(c *keyring.Cipher, sealed []byte, context string) ([]float32, error) {
	if sealed == nil {
		return nil, nil
	}
	b, err := c.Open(sealed, context)
	if err != nil {
		return nil, err
	}
	if len(b)%4 != 0 {
		return nil, ErrEmbeddingSize
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v, nil
}
