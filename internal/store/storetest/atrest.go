package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// AtRest is what a backend's test adapter gives the at-rest checks: the
// stored bytes as someone holding the disk or the database sees them, and the
// tenants' data keys as the control plane holds them. A backend whose adapter
// implements it (with Backend and Drop) gets those checks from Run: no
// plaintext at rest, crypto-shredding, and ciphertexts moved behind the
// store's back not opening.
type AtRest interface {
	// Raw returns every byte the backend stores, for every tenant: the
	// contents of its files, or every value of every row of every table
	// (byte strings as they are, not hex-encoded).
	Raw(t *testing.T) []byte
	// Sealed returns the stored bytes of the value at p, which must exist.
	Sealed(t *testing.T, p Place) []byte
	// Overwrite replaces the stored bytes of the value at p, which must
	// exist, with value, behind the store's back.
	Overwrite(t *testing.T, p Place, value []byte)
	// Keys returns the data keys the backend's Ciphers come from.
	Keys() *Keys
	// Incarnation returns tenant id's incarnation, as Drop takes it.
	Incarnation(id tenant.ID) tenant.Incarnation
}

// AtRestBackend is a Backend whose adapter implements AtRest and that can
// drop a deleted tenant's data.
type AtRestBackend interface {
	Backend
	AtRest
	Drop(ctx context.Context, inc tenant.Incarnation) error
}

// Column names a sealed column.
type Column int

// The sealed columns.
const (
	MessageContent   Column = iota // of the first message of (User, Session)
	MessageMeta                    // of the first message of (User, Session)
	SecretValue                    // of Secret
	DocumentText                   // of Document
	DocumentMetadata               // of Document
	DocumentHash                   // of Document
	ChunkText                      // of chunk Ordinal of Document
	ChunkEmbedding                 // of chunk Ordinal of Document
	MemoryText                     // of Memory
	MemoryEmbedding                // of Memory
)

// Place is where one sealed value is stored: a column of one row of a
// tenant. Only the fields its Column names are set.
type Place struct {
	Tenant   tenant.ID
	Column   Column
	User     tenant.UserID
	Session  tenant.SessionID
	Secret   tenant.SecretName
	Document string
	Ordinal  int
	Memory   int64
}

func runAtRest(t *testing.T, open func(t *testing.T) Backend) {
	atRest := func(t *testing.T) AtRestBackend {
		b, ok := open(t).(AtRestBackend)
		if !ok {
			t.Fatal("the backend no longer implements AtRestBackend")
		}
		return b
	}
	t.Run("NoPlaintextAtRest", func(t *testing.T) { testNoPlaintextAtRest(t, atRest(t)) })
	t.Run("CryptoShredding", func(t *testing.T) { testCryptoShredding(t, atRest(t)) })
	t.Run("CiphertextMoved", func(t *testing.T) { testCiphertextMoved(t, atRest) })
}

func float32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

// embedding returns a dim-dimensional embedding that differs for every seed.
func embedding(dim, seed int) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = float32(math.Sin(float64(seed*dim+i))) * 0.75
	}
	return v
}

// testNoPlaintextAtRest stores every kind of content and looks for it, its
// terms, its content hashes and its embeddings in everything the backend
// stores: only ciphertexts, blind tokens and the clear columns may be there.
func testNoPlaintextAtRest(t *testing.T, b AtRestBackend) {
	const (
		message  = "plaintext-message-marker-8f3a"
		meta     = "plaintext-meta-marker-77c1"
		secret   = "plaintext-secret-marker-2b9d"
		session  = "visible-session-5e21" // stored in clear, to show the scan sees the data
		sentence = "Quixotic zyxwvut marmalade ferments beneath Kilimanjaro glaciers"
		memory   = "Prefers ultramarine origami every Tuesday afternoon"
		docMeta  = `{"source":"metadata-marker-6d2f"}`
		docID    = "visible-document-id-1c4e" // in clear too
	)
	ctx := t.Context()
	scope := authtest.Scope(t, Acme, "alice")
	for i := range 20 {
		mustAppend(t, b, scope, session, []store.Message{
			{Role: "user", Content: fmt.Sprint(message, i)},
			{Role: "assistant", Content: message, Meta: fmt.Appendf(nil, `{"note":%q}`, meta)},
		})
	}
	mustPut(t, b, scope, "api_token", []byte(secret))
	mustPut(t, b, scope, "db_password", []byte(secret))
	// Overwritten and deleted values may leave old versions behind; they
	// are sealed too.
	mustPut(t, b, scope, "api_token", []byte(secret+"-new"))
	if err := b.DeleteSecret(ctx, scope, "db_password"); err != nil {
		t.Fatal(err)
	}

	var hashes, embeddings [][]byte
	for i := range 5 {
		text := fmt.Sprintf("%s. Copy %d.", sentence, i)
		emb := embedding(64, i)
		doc := NewDocument(text, docMeta)
		if i == 0 {
			doc.ID = docID
		}
		d := mustPutDocument(t, b, scope, doc, []store.Chunk{{Text: sentence, Embedding: emb}, {Text: fmt.Sprintf("Copy %d.", i)}})
		sum := sha256.Sum256([]byte(text))
		hashes = append(hashes, []byte(d.Hash), sum[:])
		embeddings = append(embeddings, float32Bytes(emb)[:32])
		memEmb := embedding(64, 100+i)
		if _, err := b.PutMemory(ctx, scope, store.Memory{Text: memory, Embedding: memEmb}); err != nil {
			t.Fatal(err)
		}
		embeddings = append(embeddings, float32Bytes(memEmb)[:32])
	}
	// The store still reads everything back and finds it.
	if msgs := mustRead(t, b, scope, session, 1); len(msgs) != 1 || msgs[0].Content != message {
		t.Fatalf("Messages: got %+v", msgs)
	}
	if hits := mustSearch(t, b, scope, "marmalade", 10); len(hits) != 5 {
		t.Fatalf("SearchChunks(marmalade): got %v, want 5 hits", hits)
	}
	if hits := mustSearchMemories(t, b, scope, "origami", 10); len(hits) != 5 {
		t.Fatalf("SearchMemories(origami): got %v, want 5 hits", hits)
	}

	raw := b.Raw(t)
	plain := []string{message, meta, secret, "metadata-marker-6d2f"}
	for _, text := range []string{sentence, memory} {
		for _, w := range strings.Fields(text) {
			plain = append(plain, w, strings.ToLower(w))
		}
	}
	for _, p := range plain {
		if bytes.Contains(raw, []byte(p)) {
			t.Errorf("the stored bytes hold %q", p)
		}
	}
	for i, h := range hashes {
		if bytes.Contains(raw, h) {
			t.Errorf("the stored bytes hold content hash %d", i)
		}
	}
	for i, e := range embeddings {
		if bytes.Contains(raw, e) {
			t.Errorf("the stored bytes hold embedding %d", i)
		}
	}
	for _, clear := range []string{session, docID} {
		if !bytes.Contains(raw, []byte(clear)) {
			t.Errorf("%q, stored in clear, is not in the %d stored bytes: the scan misses the data", clear, len(raw))
		}
	}
}

// testCryptoShredding checks that once a tenant's data key is replaced or
// destroyed its stored content does not come back, that the other tenant is
// untouched, and that Drop removes the tenant's rows or files.
func testCryptoShredding(t *testing.T, b AtRestBackend) {
	ctx := t.Context()
	acme := authtest.Scope(t, Acme, "alice")
	globex := authtest.Scope(t, Globex, "alice")
	var acmeDoc store.Document
	for _, scope := range []auth.Scope{acme, globex} {
		mustAppend(t, b, scope, "s1", []store.Message{{Role: "user", Content: "hello"}})
		mustPut(t, b, scope, "api_token", []byte("token"))
		d := mustPutDocument(t, b, scope, NewDocument("hello world", ""), []store.Chunk{{Text: "hello world", Embedding: []float32{1, 2}}})
		if scope == acme {
			acmeDoc = d
		}
		if _, err := b.PutMemory(ctx, scope, store.Memory{Text: "hello memory", Embedding: []float32{1, 2}}); err != nil {
			t.Fatal(err)
		}
	}
	acmeSealed := b.Sealed(t, Place{Tenant: Acme, Column: MessageContent, User: "alice", Session: "s1"})

	b.Keys().Replace(t, Acme)
	for name, read := range map[string]func() error{
		"Messages":        func() error { _, err := b.Messages(ctx, acme, "s1", 0); return err },
		"Secrets":         func() error { _, err := b.Secrets(ctx, acme); return err },
		"Export":          func() error { _, err := b.Export(ctx, acme); return err },
		"Document":        func() error { _, err := b.Document(ctx, acme, acmeDoc.ID); return err },
		"Documents":       func() error { _, err := b.Documents(ctx, acme, "", 0); return err },
		"ChunkEmbeddings": func() error { _, err := b.ChunkEmbeddings(ctx, acme); return err },
		"Memories":        func() error { _, err := b.Memories(ctx, acme, 0); return err },
	} {
		if err := read(); !errors.Is(err, keyring.ErrDecrypt) {
			t.Errorf("%s under a new key: got %v, want %v", name, err, keyring.ErrDecrypt)
		}
	}
	// The blind index still holds the old tokens, which no query under the
	// new key produces.
	if hits := mustSearch(t, b, acme, "hello world", 10); len(hits) != 0 {
		t.Errorf("SearchChunks under a new key: got %v, want no hits", hits)
	}
	if hits := mustSearchMemories(t, b, acme, "hello memory", 10); len(hits) != 0 {
		t.Errorf("SearchMemories under a new key: got %v, want no hits", hits)
	}

	b.Keys().Destroy(Acme)
	if _, err := b.Messages(ctx, acme, "s1", 0); err == nil {
		t.Error("Messages with the key destroyed: got nil error")
	}
	if _, err := b.SearchChunks(ctx, acme, "hello", 10); err == nil {
		t.Error("SearchChunks with the key destroyed: got nil error")
	}
	checkGlobexIntact := func(when string) {
		t.Helper()
		if msgs := mustRead(t, b, globex, "s1", 0); len(msgs) != 1 || msgs[0].Content != "hello" {
			t.Errorf("globex's messages %s: got %+v", when, msgs)
		}
		if hits := mustSearch(t, b, globex, "hello", 10); len(hits) != 1 {
			t.Errorf("globex's search %s: got %v, want one hit", when, hits)
		}
		if mems, err := b.Memories(ctx, globex, 0); err != nil || len(mems) != 1 {
			t.Errorf("globex's memories %s: got %v, %v; want one", when, mems, err)
		}
	}
	checkGlobexIntact("after acme's key was destroyed")

	if err := b.Drop(ctx, b.Incarnation(Acme)); err != nil {
		t.Fatalf("Drop: %v", err)
	}
	if bytes.Contains(b.Raw(t), acmeSealed) {
		t.Error("after Drop, acme's sealed message is still stored")
	}
	checkGlobexIntact("after acme's Drop")
	// Acme, created again with a new key, starts empty.
	b.Keys().Replace(t, Acme)
	if msgs := mustRead(t, b, acme, "s1", 0); len(msgs) != 0 {
		t.Errorf("acme after Drop: got %d messages, want 0", len(msgs))
	}
	if docs := mustDocuments(t, b, acme); len(docs) != 0 {
		t.Errorf("acme after Drop: got documents %v, want none", docIDs(docs))
	}
	if mems, err := b.Memories(ctx, acme, 0); err != nil || len(mems) != 0 {
		t.Errorf("acme after Drop: got memories %v, %v; want none", mems, err)
	}
	if got := mustSecrets(t, b, acme); len(got) != 0 {
		t.Errorf("acme after Drop: got %d secrets, want none", len(got))
	}
}

// movedFixture is what testCiphertextMoved stores before it tampers.
type movedFixture struct {
	b            AtRestBackend
	acme, globex auth.Scope
	a, d, g      store.Document // acme's a (two chunks) and d, globex's g
	ac, dc, gc   []store.Chunk
	aliceM       store.Memory // acme's alice's first memory
	aliceM2      store.Memory
	bobM         store.Memory
	globexM      store.Memory
}

const (
	movedMessage = "acme-only-message-4c1f"
	movedMeta    = `{"note":"acme-only-meta-9d0e"}`
	movedSecret  = "acme-only-secret-71ab"
	movedDoc     = "acme-only-document-5a1c"
	movedChunk   = "acme-only-chunk-0b7e"
	movedMemory  = "acme-only-memory-93d2"
)

func newMovedFixture(t *testing.T, b AtRestBackend) *movedFixture {
	ctx := t.Context()
	f := &movedFixture{b: b, acme: authtest.Scope(t, Acme, "alice"), globex: authtest.Scope(t, Globex, "alice")}
	bob := f.acme.WithUser("bob")
	for _, w := range []struct {
		scope   auth.Scope
		session tenant.SessionID
		msg     store.Message
	}{
		{f.acme, "s1", store.Message{Role: "user", Content: movedMessage, Meta: []byte(movedMeta)}},
		{f.acme, "s2", store.Message{Role: "user", Content: "acme second session", Meta: []byte(`{}`)}},
		{bob, "s1", store.Message{Role: "user", Content: "bob's text", Meta: []byte(`{}`)}},
		{f.globex, "s1", store.Message{Role: "user", Content: "globex text", Meta: []byte(`{"globex":1}`)}},
	} {
		mustAppend(t, b, w.scope, w.session, []store.Message{w.msg})
	}
	mustPut(t, b, f.acme, "api_token", []byte(movedSecret))
	mustPut(t, b, f.acme, "other", []byte("acme other secret"))
	mustPut(t, b, f.globex, "api_token", []byte("globex secret"))

	f.a, f.ac = mustPutDocumentChunks(t, b, f.acme, NewDocument(movedDoc+" "+movedChunk, `{"m":"acme-only-meta"}`),
		[]store.Chunk{{Text: movedChunk, Embedding: vec(1)}, {Text: movedDoc, Embedding: vec(2)}})
	f.d, f.dc = mustPutDocumentChunks(t, b, f.acme, NewDocument("acme other document", `{"m":"other"}`),
		[]store.Chunk{{Text: "acme other document", Embedding: vec(3)}})
	f.g, f.gc = mustPutDocumentChunks(t, b, f.globex, NewDocument("globex document", `{"m":"globex"}`),
		[]store.Chunk{{Text: "globex document", Embedding: vec(4)}})
	put := func(scope auth.Scope, text string) store.Memory {
		m, err := b.PutMemory(ctx, scope, store.Memory{Text: text, Embedding: vec(5)})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	f.aliceM = put(f.acme, movedMemory)
	f.aliceM2 = put(f.acme, "alice's second memory")
	f.bobM = put(bob, "bob's memory")
	f.globexM = put(f.globex, "globex's memory")
	return f
}

// testCiphertextMoved moves ciphertexts between tenants, sessions, end users,
// columns, secret names, documents, ordinals and memories behind the store's
// back: every read of a moved ciphertext must fail with keyring.ErrDecrypt
// and show none of its text.
func testCiphertextMoved(t *testing.T, open func(t *testing.T) AtRestBackend) {
	msg := func(id tenant.ID, user tenant.UserID, session tenant.SessionID, c Column) func(*movedFixture) Place {
		return func(*movedFixture) Place { return Place{Tenant: id, Column: c, User: user, Session: session} }
	}
	sec := func(id tenant.ID, name tenant.SecretName) func(*movedFixture) Place {
		return func(*movedFixture) Place { return Place{Tenant: id, Column: SecretValue, Secret: name} }
	}
	doc := func(id tenant.ID, c Column, which func(*movedFixture) store.Document, ordinal int) func(*movedFixture) Place {
		return func(f *movedFixture) Place {
			return Place{Tenant: id, Column: c, Document: which(f).ID, Ordinal: ordinal}
		}
	}
	mem := func(id tenant.ID, c Column, which func(*movedFixture) store.Memory) func(*movedFixture) Place {
		return func(f *movedFixture) Place {
			m := which(f)
			return Place{Tenant: id, Column: c, User: m.User, Memory: m.ID}
		}
	}
	docA := func(f *movedFixture) store.Document { return f.a }
	docD := func(f *movedFixture) store.Document { return f.d }
	docG := func(f *movedFixture) store.Document { return f.g }
	aliceM := func(f *movedFixture) store.Memory { return f.aliceM }
	aliceM2 := func(f *movedFixture) store.Memory { return f.aliceM2 }
	bobM := func(f *movedFixture) store.Memory { return f.bobM }
	globexM := func(f *movedFixture) store.Memory { return f.globexM }
	messages := func(scope func(*movedFixture) auth.Scope, session tenant.SessionID) func(context.Context, *movedFixture) (any, error) {
		return func(ctx context.Context, f *movedFixture) (any, error) {
			return f.b.Messages(ctx, scope(f), session, 0)
		}
	}
	acme := func(f *movedFixture) auth.Scope { return f.acme }
	bob := func(f *movedFixture) auth.Scope { return f.acme.WithUser("bob") }
	globex := func(f *movedFixture) auth.Scope { return f.globex }
	chunks := func(scope func(*movedFixture) auth.Scope, id func(*movedFixture) int64) func(context.Context, *movedFixture) (any, error) {
		return func(ctx context.Context, f *movedFixture) (any, error) {
			return f.b.Chunks(ctx, scope(f), []int64{id(f)})
		}
	}
	memories := func(scope func(*movedFixture) auth.Scope) func(context.Context, *movedFixture) (any, error) {
		return func(ctx context.Context, f *movedFixture) (any, error) { return f.b.Memories(ctx, scope(f), 0) }
	}
	document := func(scope func(*movedFixture) auth.Scope, which func(*movedFixture) store.Document) func(context.Context, *movedFixture) (any, error) {
		return func(ctx context.Context, f *movedFixture) (any, error) {
			return f.b.Document(ctx, scope(f), which(f).ID)
		}
	}

	tests := []struct {
		name     string
		from, to func(*movedFixture) Place
		read     func(context.Context, *movedFixture) (any, error)
	}{
		{"message content to globex's same user and session", msg(Acme, "alice", "s1", MessageContent), msg(Globex, "alice", "s1", MessageContent), messages(globex, "s1")},
		{"message meta to globex's same user and session", msg(Acme, "alice", "s1", MessageMeta), msg(Globex, "alice", "s1", MessageMeta), messages(globex, "s1")},
		{"globex's export meets a moved message", msg(Acme, "alice", "s1", MessageContent), msg(Globex, "alice", "s1", MessageContent),
			func(ctx context.Context, f *movedFixture) (any, error) { return f.b.Export(ctx, f.globex) }},
		{"message content to another session", msg(Acme, "alice", "s1", MessageContent), msg(Acme, "alice", "s2", MessageContent), messages(acme, "s2")},
		{"message content to another end user", msg(Acme, "alice", "s1", MessageContent), msg(Acme, "bob", "s1", MessageContent), messages(bob, "s1")},
		{"message content into its meta", msg(Acme, "alice", "s1", MessageContent), msg(Acme, "alice", "s1", MessageMeta), messages(acme, "s1")},
		{"message meta into its content", msg(Acme, "alice", "s1", MessageMeta), msg(Acme, "alice", "s1", MessageContent), messages(acme, "s1")},
		{"secret to globex's same name", sec(Acme, "api_token"), sec(Globex, "api_token"),
			func(ctx context.Context, f *movedFixture) (any, error) { return f.b.Secrets(ctx, f.globex) }},
		{"secret to another name", sec(Acme, "api_token"), sec(Acme, "other"),
			func(ctx context.Context, f *movedFixture) (any, error) { return f.b.Secrets(ctx, f.acme) }},
		{"secret into a message", sec(Acme, "api_token"), msg(Acme, "alice", "s2", MessageContent), messages(acme, "s2")},
		{"document text to globex", doc(Acme, DocumentText, docA, 0), doc(Globex, DocumentText, docG, 0), document(globex, docG)},
		{"document text to another document", doc(Acme, DocumentText, docA, 0), doc(Acme, DocumentText, docD, 0), document(acme, docD)},
		{"document metadata to another document", doc(Acme, DocumentMetadata, docA, 0), doc(Acme, DocumentMetadata, docD, 0), document(acme, docD)},
		{"document hash to another document", doc(Acme, DocumentHash, docA, 0), doc(Acme, DocumentHash, docD, 0), document(acme, docD)},
		{"document text into its metadata", doc(Acme, DocumentText, docA, 0), doc(Acme, DocumentMetadata, docA, 0), document(acme, docA)},
		{"chunk text to another ordinal", doc(Acme, ChunkText, docA, 0), doc(Acme, ChunkText, docA, 1),
			chunks(acme, func(f *movedFixture) int64 { return f.ac[1].ID })},
		{"chunk text to another document", doc(Acme, ChunkText, docA, 0), doc(Acme, ChunkText, docD, 0),
			chunks(acme, func(f *movedFixture) int64 { return f.dc[0].ID })},
		{"chunk text to globex", doc(Acme, ChunkText, docA, 0), doc(Globex, ChunkText, docG, 0),
			chunks(globex, func(f *movedFixture) int64 { return f.gc[0].ID })},
		{"chunk embedding to another document", doc(Acme, ChunkEmbedding, docA, 0), doc(Acme, ChunkEmbedding, docD, 0),
			func(ctx context.Context, f *movedFixture) (any, error) { return f.b.ChunkEmbeddings(ctx, f.acme) }},
		{"chunk embedding to globex", doc(Acme, ChunkEmbedding, docA, 0), doc(Globex, ChunkEmbedding, docG, 0),
			func(ctx context.Context, f *movedFixture) (any, error) { return f.b.ChunkEmbeddings(ctx, f.globex) }},
		{"chunk text into an embedding", doc(Acme, ChunkText, docA, 0), doc(Acme, ChunkEmbedding, docD, 0),
			func(ctx context.Context, f *movedFixture) (any, error) { return f.b.ChunkEmbeddings(ctx, f.acme) }},
		{"memory text to another end user", mem(Acme, MemoryText, aliceM), mem(Acme, MemoryText, bobM), memories(bob)},
		{"memory text to another memory of the user", mem(Acme, MemoryText, aliceM), mem(Acme, MemoryText, aliceM2), memories(acme)},
		{"memory text to globex", mem(Acme, MemoryText, aliceM), mem(Globex, MemoryText, globexM), memories(globex)},
		{"memory embedding to another end user", mem(Acme, MemoryEmbedding, aliceM), mem(Acme, MemoryEmbedding, bobM), memories(bob)},
		{"globex's export meets a moved memory", mem(Acme, MemoryText, aliceM), mem(Globex, MemoryText, globexM),
			func(ctx context.Context, f *movedFixture) (any, error) { return f.b.Export(ctx, f.globex) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := open(t)
			f := newMovedFixture(t, b)
			b.Overwrite(t, tt.to(f), b.Sealed(t, tt.from(f)))

			got, err := tt.read(t.Context(), f)
			if !errors.Is(err, keyring.ErrDecrypt) {
				t.Errorf("read after moving: got error %v, want %v", err, keyring.ErrDecrypt)
			}
			shown := fmt.Sprintf("%+v %v", got, err)
			for _, plain := range []string{movedMessage, "acme-only-meta", movedSecret, movedDoc, movedChunk, movedMemory} {
				if strings.Contains(shown, plain) {
					t.Errorf("read after moving shows %q: %s", plain, shown)
				}
			}
		})
	}
}
