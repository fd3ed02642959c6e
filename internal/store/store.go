// Package store defines the tenant data plane: the records a tenant owns and the
// errors its backends return. Backends (store/sqlite, later store/postgres) take
// an auth.Scope on every call and must make it impossible to read or write
// another tenant's rows; the conformance tests in store/storetest prove it.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/kljensen/snowball/english"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/secret"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Message is one stored chat message of a session.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
	// Meta holds the rest of the message (tool calls, tool call id, name) as
	// JSON; the store does not interpret it.
	Meta      json.RawMessage `json:"meta,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
}

var (
	// ErrNoScope is returned when a call carries no authenticated scope.
	ErrNoScope = errors.New("store: no tenant scope")
	// ErrUnknownTenant is returned for a scope whose tenant is not provisioned.
	ErrUnknownTenant = errors.New("store: unknown tenant")
	// ErrNotFound is returned for a record the tenant does not have.
	ErrNotFound = fmt.Errorf("store: %w", kind.NotFound)
	// ErrLost is returned for a tenant whose database existed and has since
	// disappeared or been truncated: the backend refuses it rather than
	// start the tenant again from empty.
	ErrLost = fmt.Errorf("store: the tenant's database is missing or damaged: %w", kind.Damaged)
)

// Secret is one of a tenant's credentials, decrypted.
type Secret struct {
	Name tenant.SecretName
	// Value prints, logs and encodes as [REDACTED]; it is revealed only
	// where it is injected.
	Value secret.Value
}

// Export is everything a tenant has stored, decrypted, except secret values.
type Export struct {
	Sessions    []ExportedSession   `json:"sessions"`
	Documents   []Document          `json:"documents"`
	Memories    []Memory            `json:"memories"`
	SecretNames []tenant.SecretName `json:"secret_names"`
}

// ExportedSession is one conversation with its messages, oldest first.
type ExportedSession struct {
	User      tenant.UserID    `json:"user"`
	Session   tenant.SessionID `json:"session"`
	CreatedAt time.Time        `json:"created_at"`
	UpdatedAt time.Time        `json:"updated_at"`
	Messages  []Message        `json:"messages"`
}

// Document is a text a tenant stored for retrieval. Text and metadata are
// encrypted at rest.
type Document struct {
	ID        string          `json:"id"`
	Text      string          `json:"text"`
	Metadata  json.RawMessage `json:"metadata,omitempty"`
	Hash      string          `json:"hash"` // hex SHA-256 of Text: re-ingesting the same text is a no-op
	Chunks    int             `json:"chunks"`
	Size      int             `json:"size"` // bytes of Text, set by the store (also when Text is not read)
	CreatedAt time.Time       `json:"created_at"`
}

// Chunk is a retrievable piece of a document. Text and embedding are
// encrypted at rest; the full-text index holds only keyed hashes of its terms.
type Chunk struct {
	ID         int64     `json:"id"`
	DocumentID string    `json:"document_id"`
	Ordinal    int       `json:"ordinal"`
	Text       string    `json:"text"`
	Embedding  []float32 `json:"-"`
}

// Memory is something remembered for one end user of a tenant.
type Memory struct {
	ID        int64         `json:"id"`
	User      tenant.UserID `json:"user"`
	Text      string        `json:"text"`
	Embedding []float32     `json:"-"`
	CreatedAt time.Time     `json:"created_at"`
}

// Hit is one full-text search result; higher Score is better.
type Hit struct {
	ID    int64
	Score float64
}

// Terms splits text into the terms the full-text index uses: its Words,
// each stemmed (Stem), so "refunds" and "refund" are one term. Indexing and
// querying must both use it, since the index holds keyed hashes of exactly
// these terms.
func Terms(text string) []string {
	terms := Words(text)
	for i, w := range terms {
		terms[i] = Stem(w)
	}
	return terms
}

// Words splits text into lowercase words of letters and digits, 2 to 64
// bytes long and not stop words: the terms of indexes written before
// stemming, which queries still look for (see seal.Blinder.Query).
func Words(text string) []string {
	var words []string
	for _, f := range strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	}) {
		if len(f) >= 2 && len(f) <= 64 && !stopwords[f] {
			words = append(words, f)
		}
	}
	return words
}

// Stem returns the English Snowball stem of word, one of Words.
func Stem(word string) string {
	return english.Stem(word, true)
}

var stopwords = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`a an and are as at be by for from has have he her his how i in is it its
		of on or she that the their them they this to was were what when where which who why will with you your`) {
		stopwords[w] = true
	}
}

// AuditRecord is one entry of a tenant's audit log, a hash chain: Seq counts
// from 1, Prev is the Hash of the record before ("" for the first) and Hash is
// the hex SHA-256 of the record's canonical encoding (see audit.Hash). The
// store assigns Seq, Prev and Hash; Data is JSON describing what happened
// (shapes and decisions, never values) and is stored in clear, so a log can be
// verified without the tenant's key.
type AuditRecord struct {
	Seq  int64           `json:"seq"`
	Time time.Time       `json:"time"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
	Prev string          `json:"prev"`
	Hash string          `json:"hash"`
}
