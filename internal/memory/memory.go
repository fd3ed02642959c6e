// Package memory is a tenant's knowledge base and its end users' long-term
// memory: ingestion (chunk, embed, store) and hybrid retrieval (BM25 over the
// tenant's blind full-text index fused with exact vector search over the
// tenant's own vector index). Every read goes through the tenant's store and
// index, chosen by the Scope: there is no global search to filter.
package memory

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/chunk"
	"github.com/bulkhead-ai/bulkhead/internal/embed"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/secret"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/vector"
)

// Store is the tenant data plane as retrieval uses it.
type Store interface {
	PutDocument(ctx context.Context, scope auth.Scope, doc store.Document, chunks []store.Chunk) (store.Document, []store.Chunk, bool, error)
	Document(ctx context.Context, scope auth.Scope, id string) (store.Document, error)
	DeleteDocument(ctx context.Context, scope auth.Scope, id string) error
	Documents(ctx context.Context, scope auth.Scope, after string, limit int) ([]store.Document, error)
	Chunks(ctx context.Context, scope auth.Scope, ids []int64) ([]store.Chunk, error)
	ChunkEmbeddings(ctx context.Context, scope auth.Scope) ([]store.Chunk, error)
	SearchChunks(ctx context.Context, scope auth.Scope, query string, k int) ([]store.Hit, error)
	KBVersion(ctx context.Context, scope auth.Scope) (int64, error)
	PutMemory(ctx context.Context, scope auth.Scope, m store.Memory) (store.Memory, error)
	Memories(ctx context.Context, scope auth.Scope, limit int) ([]store.Memory, error)
	SearchMemories(ctx context.Context, scope auth.Scope, query string, k int) ([]store.Hit, error)
}

// Ciphers gives a tenant's cipher, whose derived key partitions the
// embedding cache.
type Ciphers interface {
	Cipher(ctx context.Context, inc tenant.Incarnation) (*keyring.Cipher, error)
}

// Deps is what a Service needs.
type Deps struct {
	Store   Store
	Ciphers Ciphers
	// Embedder is the default embedder; EmbedderFor, when set, picks the
	// tenant's own (it may be another model, with another dimension).
	Embedder    embed.Embedder
	EmbedderFor func(id tenant.ID) (embed.Embedder, error)
	Cache       *embed.Cache // nil: no embedding cache
	// Secrets holds the tenants' own API keys for embedders that call
	// with them (bring your own key); nil: such embedders fail.
	Secrets  Secrets
	Vectors  *vector.Cache // per-tenant indexes
	Chunking chunk.Options
	Logger   *slog.Logger
	// Fingerprints learns every text a tenant stores, so the output guard
	// can recognize it in another tenant's answer; nil learns nothing.
	Fingerprints Fingerprints
	// Screen refuses text that carries another tenant's canary or secret;
	// nil refuses none.
	Screen Screen
	// Canary returns the tenant's canary (registered with the output guard),
	// which kb_search and memory_search attach to every passage they hand the
	// model, so a leak of retrieved text that carries it is stopped; nil,
	// or "", attaches none.
	Canary func(id tenant.ID) string
}

// Screen finds other tenants' canaries and tracked secrets in text a tenant
// is about to store. Stored, they would make every later answer that quotes
// the text look like the runtime leaking their owner's data, so the answer
// would be withheld: a tenant could plant its own canary or token in a
// public page for another tenant to ingest, and block that tenant's answers
// from its knowledge base. Refusing the text at the door tells the tenant
// why while it still has the text in hand.
type Screen interface {
	Foreign(id tenant.ID, text string) bool
}

// errForeign is the refusal of text Screen finds.
var errForeign = fmt.Errorf("%w: the text holds another tenant's reference token or secret (it may have been planted in public text); remove it and try again", kind.Invalid)

// screen refuses text that carries another tenant's canary or secret.
func (s *Service) screen(scope auth.Scope, text string) error {
	if s.Screen != nil && s.Screen.Foreign(scope.Tenant(), text) {
		return errForeign
	}
	return nil
}

// Fingerprints records text a tenant owns.
type Fingerprints interface {
	AddText(id tenant.ID, text string)
}

// Service ingests and retrieves. It is safe for concurrent use.
type Service struct{ Deps }

// New returns a Service.
func New(d Deps) *Service {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{Deps: d}
}

// Limits on what one call may hold.
const (
	MaxDocumentBytes = 4 << 20
	MaxMemoryBytes   = 8 << 10
	MaxQueryBytes    = 4 << 10
	MaxTopK          = 50
	MaxListLimit     = 100 // documents in one page of a listing
	defaultListLimit = 20
	memoryScan       = 2000 // memories of one user scored per recall
)

// AddDocument chunks, embeds and stores text. Re-adding the same text is a
// no-op that returns the existing document with created false.
func (s *Service) AddDocument(ctx context.Context, scope auth.Scope, text string, metadata json.RawMessage) (store.Document, bool, error) {
	switch {
	case strings.TrimSpace(text) == "":
		return store.Document{}, false, fmt.Errorf("%w: text must not be empty", kind.Invalid)
	case len(text) > MaxDocumentBytes:
		return store.Document{}, false, fmt.Errorf("%w: text is larger than %d bytes; split it into several documents", kind.TooLarge, MaxDocumentBytes)
	case !utf8.ValidString(text):
		return store.Document{}, false, fmt.Errorf("%w: text must be valid UTF-8", kind.Invalid)
	}
	if len(metadata) > 0 && !json.Valid(metadata) {
		return store.Document{}, false, fmt.Errorf("%w: metadata must be JSON", kind.Invalid)
	}
	if err := s.screen(scope, text+"\n"+string(metadata)); err != nil {
		return store.Document{}, false, err
	}
	sum := sha256.Sum256([]byte(text))
	doc := store.Document{Text: text, Metadata: metadata, Hash: hex.EncodeToString(sum[:])}

	pieces := chunk.Split(text, s.Chunking)
	texts := make([]string, len(pieces))
	for i, p := range pieces {
		texts[i] = p.Text
	}
	vecs, err := s.embed(ctx, scope, texts)
	if err != nil {
		return store.Document{}, false, err
	}
	chunks := make([]store.Chunk, len(pieces))
	for i, p := range pieces {
		chunks[i] = store.Chunk{Ordinal: p.Ordinal, Text: p.Text, Embedding: vecs[i]}
	}
	doc.Chunks = len(chunks)
	stored, _, created, err := s.Store.PutDocument(ctx, scope, doc, chunks)
	if err != nil {
		return store.Document{}, false, fmt.Errorf("store document: %w", err)
	}
	if s.Fingerprints != nil {
		s.Fingerprints.AddText(scope.Tenant(), text)
	}
	return stored, created, nil
}

// Document returns one of the tenant's documents. The tenant's honey record
// is not found, as in Search.
func (s *Service) Document(ctx context.Context, scope auth.Scope, id string) (store.Document, error) {
	d, err := s.Store.Document(ctx, scope, id)
	if err != nil {
		return store.Document{}, err
	}
	if s.isHoney(scope, d) {
		return store.Document{}, fmt.Errorf("read document: %w", store.ErrNotFound)
	}
	return d, nil
}

// DeleteDocument removes one of the tenant's documents and its chunks. The
// tenant's honey record is not found: it is the runtime's, not the tenant's.
func (s *Service) DeleteDocument(ctx context.Context, scope auth.Scope, id string) error {
	if s.honeyHash(scope) != "" {
		if _, err := s.Document(ctx, scope, id); err != nil {
			return fmt.Errorf("delete document: %w", err)
		}
	}
	return s.Store.DeleteDocument(ctx, scope, id)
}

// Documents returns up to limit (0: 20; at most MaxListLimit) of the
// tenant's documents, without their text, newest first, after the document
// with id after ("": from the newest), and whether more follow. The honey
// record is left out, as in Search. An after the tenant does not have is
// invalid, whoever has it.
func (s *Service) Documents(ctx context.Context, scope auth.Scope, after string, limit int) ([]store.Document, bool, error) {
	switch {
	case limit < 0 || limit > MaxListLimit:
		return nil, false, fmt.Errorf("%w: limit must be between 1 and %d", kind.Invalid, MaxListLimit)
	case limit == 0:
		limit = defaultListLimit
	}
	// Two more than asked: one tells whether more follow, one stands in for
	// the honey record should it be among them.
	docs, err := s.Store.Documents(ctx, scope, after, limit+2)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, fmt.Errorf("%w: after: the tenant has no document %q", kind.Invalid, after)
	}
	if err != nil {
		return nil, false, fmt.Errorf("list documents: %w", err)
	}
	if honey := s.honeyHash(scope); honey != "" {
		docs = slices.DeleteFunc(docs, func(d store.Document) bool { return d.Hash == honey })
	}
	if len(docs) > limit {
		return docs[:limit], true, nil
	}
	return docs, false, nil
}

// honeyHash returns the content hash of the tenant's honey record, or "".
func (s *Service) honeyHash(scope auth.Scope) string {
	if s.Canary == nil {
		return ""
	}
	c := s.Canary(scope.Tenant())
	if c == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(HoneyText(c)))
	return hex.EncodeToString(sum[:])
}

// isHoney reports whether d is the tenant's honey record.
func (s *Service) isHoney(scope auth.Scope, d store.Document) bool {
	h := s.honeyHash(scope)
	return h != "" && d.Hash == h
}

// embedder returns the tenant's embedder.
func (s *Service) embedder(scope auth.Scope) (embed.Embedder, error) {
	if s.EmbedderFor == nil {
		return s.Embedder, nil
	}
	e, err := s.EmbedderFor(scope.Tenant())
	if err != nil {
		return nil, fmt.Errorf("embedder of %s: %w", scope.Tenant(), err)
	}
	return e, nil
}

// Secrets reads a tenant's secrets.
type Secrets interface {
	Secrets(ctx context.Context, scope auth.Scope) ([]store.Secret, error)
}

// tenantKeyed is an embedder that calls its provider with each tenant's own
// API key (*embed.OpenAI with a KeySecret).
type tenantKeyed interface {
	KeySecret() tenant.SecretName
	WithAPIKey(key secret.Value) embed.Embedder
}

// callingEmbedder returns the tenant's embedder ready to call: with the
// tenant's own API key when the embedder takes one. A missing key fails:
// falling back to a shared key would bill (and expose) the wrong account.
func (s *Service) callingEmbedder(ctx context.Context, scope auth.Scope) (embed.Embedder, error) {
	e, err := s.embedder(scope)
	if err != nil {
		return nil, err
	}
	k, ok := e.(tenantKeyed)
	if !ok || k.KeySecret() == "" {
		return e, nil
	}
	name := k.KeySecret()
	if s.Secrets != nil {
		secrets, err := s.Secrets.Secrets(ctx, scope)
		if err != nil {
			return nil, fmt.Errorf("read the embedder's key: %w", err)
		}
		for _, sec := range secrets {
			if sec.Name == name {
				return k.WithAPIKey(sec.Value), nil
			}
		}
	}
	return nil, fmt.Errorf("%w: the tenant's embedder needs the tenant secret %q (its own API key), which is not set", kind.Invalid, name)
}

// embed embeds texts with the tenant's embedder and its partition of the
// cache.
func (s *Service) embed(ctx context.Context, scope auth.Scope, texts []string) ([][]float32, error) {
	if len(texts) == 0 {
		return nil, nil
	}
	e, err := s.callingEmbedder(ctx, scope)
	if err != nil {
		return nil, err
	}
	if s.Cache == nil {
		vecs, err := e.Embed(ctx, texts)
		if err != nil {
			return nil, embedError(err)
		}
		return vecs, nil
	}
	c, err := s.Ciphers.Cipher(ctx, scope.Incarnation())
	if err != nil {
		return nil, fmt.Errorf("embed: %w", err)
	}
	vecs, err := s.Cache.Embed(ctx, e, scope.Incarnation(), c.Derive("embedding-cache"), texts)
	if err != nil {
		return nil, embedError(err)
	}
	return vecs, nil
}

// Mode selects the retrieval method; Hybrid is the default.
type Mode int

const (
	Hybrid Mode = iota
	Lexical
	Vector
)

// Result is one retrieved chunk.
type Result struct {
	ChunkID    int64   `json:"chunk_id"`
	DocumentID string  `json:"document_id"`
	Ordinal    int     `json:"ordinal"`
	Text       string  `json:"text"`
	Score      float64 `json:"score"`
}

// Search returns the k chunks of the tenant's knowledge base that best match
// query.
func (s *Service) Search(ctx context.Context, scope auth.Scope, query string, k int, mode Mode) ([]Result, error) {
	k, err := checkQuery(query, k)
	if err != nil {
		return nil, err
	}
	depth := max(4*k, 20) // each list is cut deeper than k before fusing
	var lists [][]int64
	if mode != Vector {
		hits, err := s.Store.SearchChunks(ctx, scope, query, depth)
		if err != nil {
			return nil, fmt.Errorf("lexical search: %w", err)
		}
		if mode == Lexical {
			lists = append(lists, lexicalOnlyIDs(hits))
		} else {
			lists = append(lists, hitIDs(hits))
		}
	}
	if mode != Lexical {
		ids, err := s.vectorSearch(ctx, scope, query, depth)
		if err != nil {
			return nil, err
		}
		lists = append(lists, ids)
	}
	// One more than asked: the tenant's own honey record is left out below.
	fused := fuse(lists, k+1)
	ids := make([]int64, len(fused))
	for i, f := range fused {
		ids[i] = f.id
	}
	chunks, err := s.Store.Chunks(ctx, scope, ids)
	if err != nil {
		return nil, fmt.Errorf("read chunks: %w", err)
	}
	byID := make(map[int64]store.Chunk, len(chunks))
	for _, c := range chunks {
		byID[c.ID] = c
	}
	honey := ""
	if s.Canary != nil {
		if c := s.Canary(scope.Tenant()); c != "" {
			honey = HoneyText(c)
		}
	}
	out := make([]Result, 0, len(fused))
	for _, f := range fused {
		if c, ok := byID[f.id]; ok && c.Text != honey && len(out) < k {
			out = append(out, Result{ChunkID: c.ID, DocumentID: c.DocumentID, Ordinal: c.Ordinal, Text: c.Text, Score: f.score})
		}
	}
	return out, nil
}

// HoneyText is the body of a tenant's honey record, stored when the tenant is
// provisioned: its canary lives in the tenant's data too, so a leak of that
// data (not only of the prompt) is recognized. The tenant's own searches
// never return it: it means nothing to the tenant, and each copy of its
// canary the tenant sees is one it could plant where another tenant's model
// will read it, to get that tenant's answers withheld.
func HoneyText(canary string) string {
	return "Internal reference record " + canary + ". Not for disclosure."
}

// vectorSearch searches the tenant's own vector index, loading it into the
// cache when the knowledge base changed.
func (s *Service) vectorSearch(ctx context.Context, scope auth.Scope, query string, k int) ([]int64, error) {
	q, err := s.embed(ctx, scope, []string{query})
	if err != nil {
		return nil, err
	}
	e, err := s.embedder(scope)
	if err != nil {
		return nil, err
	}
	version, err := s.Store.KBVersion(ctx, scope)
	if err != nil {
		return nil, fmt.Errorf("vector search: %w", err)
	}
	// The index belongs to the tenant's incarnation and to the model its
	// vectors came from: a re-created tenant never finds its predecessor's.
	key := vector.Key(scope.Incarnation(), "kb", e.Model())
	dim := len(q[0])
	idx, err := s.Vectors.Get(key, version, func() (*vector.Index, error) {
		chunks, err := s.Store.ChunkEmbeddings(ctx, scope)
		if err != nil {
			return nil, err
		}
		idx := vector.New(dim)
		skipped, unindexable := 0, 0
		for _, c := range chunks {
			if len(c.Embedding) != dim {
				skipped++ // embedded by another model: re-ingest to search it
				continue
			}
			// A vector without a direction (a chunk of only punctuation or
			// emoji embeds to zeros) is similar to nothing: it is left out,
			// so that one such chunk cannot break the tenant's search.
			if idx.Add(c.ID, c.Embedding) != nil {
				unindexable++
			}
		}
		if skipped > 0 {
			s.Logger.WarnContext(ctx, "chunks embedded by another model are not searched by vector", "tenant", scope.Tenant(), "chunks", skipped)
		}
		if unindexable > 0 {
			s.Logger.InfoContext(ctx, "chunks without a usable vector are searched by text only", "tenant", scope.Tenant(), "chunks", unindexable)
		}
		return idx, nil
	})
	if err != nil {
		return nil, fmt.Errorf("load vector index: %w", err)
	}
	hits := idx.Search(q[0], k)
	ids := make([]int64, len(hits))
	for i, h := range hits {
		ids[i] = h.ID
	}
	return ids, nil
}

// Remember stores text for scope's end user.
func (s *Service) Remember(ctx context.Context, scope auth.Scope, text string) (store.Memory, error) {
	switch {
	case strings.TrimSpace(text) == "":
		return store.Memory{}, fmt.Errorf("%w: text must not be empty", kind.Invalid)
	case len(text) > MaxMemoryBytes:
		return store.Memory{}, fmt.Errorf("%w: a memory is at most %d bytes", kind.Invalid, MaxMemoryBytes)
	case !utf8.ValidString(text):
		return store.Memory{}, fmt.Errorf("%w: text must be valid UTF-8", kind.Invalid)
	}
	if err := s.screen(scope, text); err != nil {
		return store.Memory{}, err
	}
	vecs, err := s.embed(ctx, scope, []string{text})
	if err != nil {
		return store.Memory{}, err
	}
	m, err := s.Store.PutMemory(ctx, scope, store.Memory{Text: text, Embedding: vecs[0]})
	if err != nil {
		return store.Memory{}, fmt.Errorf("store memory: %w", err)
	}
	if s.Fingerprints != nil {
		s.Fingerprints.AddText(scope.Tenant(), text)
	}
	return m, nil
}

// Memories lists scope's end user's memories, newest first.
func (s *Service) Memories(ctx context.Context, scope auth.Scope, limit int) ([]store.Memory, error) {
	return s.Store.Memories(ctx, scope, limit)
}

// Recall returns the k memories of scope's end user that best match query.
func (s *Service) Recall(ctx context.Context, scope auth.Scope, query string, k int) ([]store.Memory, error) {
	k, err := checkQuery(query, k)
	if err != nil {
		return nil, err
	}
	all, err := s.Store.Memories(ctx, scope, memoryScan)
	if err != nil {
		return nil, fmt.Errorf("read memories: %w", err)
	}
	if len(all) == 0 {
		return []store.Memory{}, nil
	}
	hits, err := s.Store.SearchMemories(ctx, scope, query, max(4*k, 20))
	if err != nil {
		return nil, fmt.Errorf("lexical memory search: %w", err)
	}
	q, err := s.embed(ctx, scope, []string{query})
	if err != nil {
		return nil, err
	}
	// One user's memories are few: score them exactly, no index needed.
	idx := vector.New(len(q[0]))
	byID := make(map[int64]store.Memory, len(all))
	for _, m := range all {
		byID[m.ID] = m
		if len(m.Embedding) != len(q[0]) {
			continue // embedded by another model
		}
		// Without a direction (see vectorSearch) it is found by text only.
		_ = idx.Add(m.ID, m.Embedding)
	}
	var vecIDs []int64
	for _, h := range idx.Search(q[0], max(4*k, 20)) {
		vecIDs = append(vecIDs, h.ID)
	}
	out := []store.Memory{}
	for _, f := range fuse([][]int64{hitIDs(hits), vecIDs}, k) {
		if m, ok := byID[f.id]; ok {
			out = append(out, m)
		}
	}
	return out, nil
}

func checkQuery(query string, k int) (int, error) {
	switch {
	case strings.TrimSpace(query) == "":
		return 0, fmt.Errorf("%w: query must not be empty", kind.Invalid)
	case len(query) > MaxQueryBytes:
		return 0, fmt.Errorf("%w: query is longer than %d bytes", kind.Invalid, MaxQueryBytes)
	case k < 0 || k > MaxTopK:
		return 0, fmt.Errorf("%w: top_k must be between 1 and %d", kind.Invalid, MaxTopK)
	case k == 0:
		k = 5
	}
	return k, nil
}

// minLexicalScore drops full-text hits that matched only terms found in
// most of the tenant's texts (BM25 weighs such a term near zero): their
// order is arbitrary, and fusing an arbitrary list only adds noise.
const minLexicalScore = 0.3

func hitIDs(hits []store.Hit) []int64 {
	ids := make([]int64, 0, len(hits))
	for _, h := range hits {
		if h.Score >= minLexicalScore {
			ids = append(ids, h.ID)
		}
	}
	return ids
}

// lexicalOnlyIDs is hitIDs for a lexical search, which has no other list:
// when no hit clears minLexicalScore they are all kept, since in a knowledge
// base of one or two documents every term is in "most" of them and finding
// nothing there would be wrong.
func lexicalOnlyIDs(hits []store.Hit) []int64 {
	if ids := hitIDs(hits); len(ids) > 0 {
		return ids
	}
	ids := make([]int64, len(hits))
	for i, h := range hits {
		ids[i] = h.ID
	}
	return ids
}

type fused struct {
	id    int64
	score float64
}

// rrfK is reciprocal rank fusion's constant: score = Σ 1/(rrfK + rank).
const rrfK = 60

// fuse combines ranked lists with reciprocal rank fusion and keeps the best k.
func fuse(lists [][]int64, k int) []fused {
	scores := map[int64]float64{}
	for _, list := range lists {
		for rank, id := range list {
			scores[id] += 1 / float64(rrfK+rank+1)
		}
	}
	out := make([]fused, 0, len(scores))
	for id, sc := range scores {
		out = append(out, fused{id: id, score: sc})
	}
	slices.SortFunc(out, func(a, b fused) int {
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
	if len(out) > k {
		out = out[:k]
	}
	return out
}
