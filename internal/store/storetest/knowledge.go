package storetest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/store"
)

// NewDocument returns a document of text, with its Hash set as PutDocument
// requires, and metadata (JSON, or "" for none).
func NewDocument(text, metadata string) store.Document {
	sum := sha256.Sum256([]byte(text))
	d := store.Document{Text: text, Hash: hex.EncodeToString(sum[:])}
	if metadata != "" {
		d.Metadata = json.RawMessage(metadata)
	}
	return d
}

// textChunks returns one chunk per text, the i-th with embedding vec(i) when
// embed is set.
func textChunks(embed bool, texts ...string) []store.Chunk {
	chunks := make([]store.Chunk, len(texts))
	for i, s := range texts {
		chunks[i].Text = s
		if embed {
			chunks[i].Embedding = vec(i)
		}
	}
	return chunks
}

// vec returns a small embedding that differs for every seed and holds values
// a lossy encoding would change.
func vec(seed int) []float32 {
	return []float32{float32(seed) + 0.1, -1.5e-7, 3.4028235e38, float32(seed) * -2.25}
}

func testDocumentRoundTrip(t *testing.T, b Backend) {
	ctx := t.Context()
	acme := authtest.Scope(t, Acme, "alice")
	texts := []string{"Kestrels hover above the meadow.", "Otters build no dams.", "Beavers do."}
	doc := NewDocument(strings.Join(texts, " "), `{"source":"field-notes","page":3}`)
	chunks := textChunks(true, texts...)
	chunks[2].Embedding = nil // a chunk may have no embedding
	chunks[1].Ordinal = 7     // the store numbers chunks by position
	chunks[1].DocumentID = "doc_somewhere_else"

	before := time.Now()
	got, gotChunks, created, err := b.PutDocument(ctx, acme, doc, chunks)
	after := time.Now()
	if err != nil {
		t.Fatalf("PutDocument: %v", err)
	}
	if !created {
		t.Error("PutDocument of a new text: got created false")
	}
	if !regexp.MustCompile(`^doc_[0-9a-f]{24}$`).MatchString(got.ID) {
		t.Errorf("assigned id: got %q, want doc_ and 24 hex digits", got.ID)
	}
	want := doc
	want.ID, want.Chunks, want.Size = got.ID, 3, len(doc.Text)
	if diff := diffDocument(got, want); diff != "" {
		t.Errorf("PutDocument returned %s", diff)
	}
	if c := got.CreatedAt; c.Before(before.Add(-time.Second)) || c.After(after.Add(time.Second)) || c.Location() != time.UTC {
		t.Errorf("CreatedAt: got %v, want UTC between %v and %v", c, before, after)
	}
	if len(gotChunks) != len(chunks) {
		t.Fatalf("PutDocument returned %d chunks, want %d", len(gotChunks), len(chunks))
	}
	for i, c := range gotChunks {
		if c.ID == 0 || (i > 0 && c.ID <= gotChunks[i-1].ID) {
			t.Errorf("chunk %d: got id %d after %v, want ids assigned in order", i, c.ID, gotChunks[:i])
		}
		w := store.Chunk{ID: c.ID, DocumentID: got.ID, Ordinal: i, Text: texts[i], Embedding: chunks[i].Embedding}
		if diff := diffChunk(c, w); diff != "" {
			t.Errorf("PutDocument returned chunk %d: %s", i, diff)
		}
	}

	read, err := b.Document(ctx, acme, got.ID)
	if err != nil {
		t.Fatalf("Document: %v", err)
	}
	if diff := diffDocument(read, got); diff != "" || !read.CreatedAt.Equal(got.CreatedAt) {
		t.Errorf("Document: %s (created %v, want %v)", diff, read.CreatedAt, got.CreatedAt)
	}

	// Chunks in the order asked, unknown ids skipped, without embeddings.
	c0, c2 := gotChunks[0], gotChunks[2]
	read2, err := b.Chunks(ctx, acme, []int64{c2.ID, c2.ID + 1000, c0.ID})
	if err != nil {
		t.Fatalf("Chunks: %v", err)
	}
	c0.Embedding, c2.Embedding = nil, nil
	if diff := diffChunks(read2, []store.Chunk{c2, c0}); diff != "" {
		t.Errorf("Chunks: %s", diff)
	}
	if got, err := b.Chunks(ctx, acme, nil); err != nil || len(got) != 0 {
		t.Errorf("Chunks(no ids): got %v, %v; want none", got, err)
	}
	embs, err := b.ChunkEmbeddings(ctx, acme)
	if err != nil {
		t.Fatalf("ChunkEmbeddings: %v", err)
	}
	wantEmbs := []store.Chunk{{ID: gotChunks[0].ID, Embedding: chunks[0].Embedding}, {ID: gotChunks[1].ID, Embedding: chunks[1].Embedding}}
	if diff := diffChunks(embs, wantEmbs); diff != "" {
		t.Errorf("ChunkEmbeddings: %s", diff)
	}

	// A given id is kept; listings are newest first, without text.
	manual := NewDocument("A second document, with its own id.", "")
	manual.ID = "manual:guide-1.v2"
	got2, _, created, err := b.PutDocument(ctx, acme, manual, nil)
	if err != nil || !created || got2.ID != manual.ID || got2.Chunks != 0 {
		t.Fatalf("PutDocument with id %q and no chunks: got %+v, created %v, %v", manual.ID, got2, created, err)
	}
	docs, err := b.Documents(ctx, acme, "", 0)
	if err != nil {
		t.Fatalf("Documents: %v", err)
	}
	listed := func(d store.Document) store.Document { d.Text = ""; return d }
	if len(docs) != 2 {
		t.Fatalf("Documents: got %d, want 2", len(docs))
	}
	for i, w := range []store.Document{listed(got2), listed(got)} {
		if diff := diffDocument(docs[i], w); diff != "" {
			t.Errorf("Documents[%d]: %s", i, diff)
		}
	}

	for _, id := range []string{"doc_000000000000000000000000", "", "../x", "a\x00b", strings.Repeat("d", 200)} {
		if _, err := b.Document(ctx, acme, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Document(%q): got %v, want %v", id, err, store.ErrNotFound)
		}
		if err := b.DeleteDocument(ctx, acme, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("DeleteDocument(%q): got %v, want %v", id, err, store.ErrNotFound)
		}
	}
}

func testInvalidDocument(t *testing.T, b Backend) {
	ctx := t.Context()
	acme := authtest.Scope(t, Acme, "alice")
	stored := mustPutDocument(t, b, acme, NewDocument("The stored text.", ""), textChunks(false, "The stored text."))
	version := mustKBVersion(t, b, acme)

	const refused = "Zebracorns refuse validation."
	badHash := NewDocument(refused, "")
	badHash.Hash = strings.Repeat("0", 64)
	upperHash := NewDocument(refused, "")
	upperHash.Hash = strings.ToUpper(upperHash.Hash)
	noHash := NewDocument(refused, "")
	noHash.Hash = ""
	badMeta := NewDocument(refused, "")
	badMeta.Metadata = json.RawMessage(`{"unterminated":`)
	badID := NewDocument(refused, "")
	badID.ID = "a/b"
	nulID := NewDocument(refused, "")
	nulID.ID = "a\x00b"
	tests := []struct {
		name string
		doc  store.Document
		want error
	}{
		{"hash of another text", badHash, kind.Invalid},
		{"upper-case hash", upperHash, kind.Invalid},
		{"no hash", noHash, kind.Invalid},
		{"metadata not JSON", badMeta, kind.Invalid},
		{"id with a slash", badID, kind.Invalid},
		{"id with a NUL", nulID, kind.Invalid},
		{"id of another text", func() store.Document {
			d := NewDocument("another text", "")
			d.ID = stored.ID
			return d
		}(), kind.Conflict},
	}
	for _, tt := range tests {
		_, _, _, err := b.PutDocument(ctx, acme, tt.doc, textChunks(false, refused))
		if !errors.Is(err, tt.want) {
			t.Errorf("PutDocument with %s: got %v, want %v", tt.name, err, tt.want)
		}
	}
	if docs := mustDocuments(t, b, acme); len(docs) != 1 || docs[0].ID != stored.ID {
		t.Errorf("after refused puts: got documents %v, want only %s", docIDs(docs), stored.ID)
	}
	if got := mustKBVersion(t, b, acme); got != version {
		t.Errorf("KBVersion after refused puts: got %d, want %d", got, version)
	}
	if hits := mustSearch(t, b, acme, "zebracorns", 10); len(hits) != 0 {
		t.Errorf("search finds refused chunks: %v", hits)
	}
}

// testDocumentPages pages through a tenant's documents with Documents'
// cursor and checks that the pages together are the whole listing, newest
// first, with sizes and without text, and that no page of one tenant holds
// another's document, nor takes another's id as its cursor.
func testDocumentPages(t *testing.T, b Backend) {
	ctx := t.Context()
	acme := authtest.Scope(t, Acme, "alice")
	globex := authtest.Scope(t, Globex, "alice")
	var acmeDocs, globexDocs []store.Document // newest first
	for i := range 5 {
		// Interleaved, so each tenant's documents sit between the other's.
		d := mustPutDocument(t, b, acme, NewDocument(fmt.Sprintf("Acme page document %d%s.", i, strings.Repeat("!", i)), `{"n":1}`), nil)
		d.Text = ""
		acmeDocs = append([]store.Document{d}, acmeDocs...)
		if i < 3 {
			g := mustPutDocument(t, b, globex, NewDocument(fmt.Sprintf("Globex page document %d.", i), ""), nil)
			g.Text = ""
			globexDocs = append([]store.Document{g}, globexDocs...)
		}
	}
	diffList := func(name string, got, want []store.Document) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%s: got %v, want %v", name, docIDs(got), docIDs(want))
			return
		}
		for i := range got {
			if diff := diffDocument(got[i], want[i]); diff != "" {
				t.Errorf("%s[%d]: %s", name, i, diff)
			}
		}
	}
	diffList("acme, all", mustDocuments(t, b, acme), acmeDocs)
	diffList("globex, all", mustDocuments(t, b, globex), globexDocs)

	for _, limit := range []int{1, 2, 4, 5, 6} {
		var all []store.Document
		after := ""
		for pages := 0; ; pages++ {
			page, err := b.Documents(ctx, acme, after, limit)
			if err != nil {
				t.Fatalf("Documents(after %q, limit %d): %v", after, limit, err)
			}
			if len(page) > limit || pages > len(acmeDocs) {
				t.Fatalf("Documents(after %q, limit %d): got %v", after, limit, docIDs(page))
			}
			all = append(all, page...)
			if len(page) < limit {
				break
			}
			after = page[len(page)-1].ID
		}
		diffList(fmt.Sprintf("acme, pages of %d", limit), all, acmeDocs)
	}
	if page, err := b.Documents(ctx, acme, acmeDocs[len(acmeDocs)-1].ID, 3); err != nil || len(page) != 0 {
		t.Errorf("Documents after the oldest: got %v, %v; want none", docIDs(page), err)
	}

	// Another tenant's id as the cursor reads exactly as a missing one.
	for _, after := range []string{globexDocs[0].ID, globexDocs[2].ID, "doc_000000000000000000000000", "../x", strings.Repeat("d", 200)} {
		if page, err := b.Documents(ctx, acme, after, 2); !errors.Is(err, store.ErrNotFound) || page != nil {
			t.Errorf("acme's Documents after %q: got %v, %v; want %v", after, docIDs(page), err, store.ErrNotFound)
		}
	}
	if page, err := b.Documents(ctx, globex, acmeDocs[1].ID, 2); !errors.Is(err, store.ErrNotFound) || page != nil {
		t.Errorf("globex's Documents after acme's %s: got %v, %v; want %v", acmeDocs[1].ID, docIDs(page), err, store.ErrNotFound)
	}
	// A deleted cursor is missing too.
	if err := b.DeleteDocument(ctx, acme, acmeDocs[4].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Documents(ctx, acme, acmeDocs[4].ID, 2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Documents after a deleted document: got %v, want %v", err, store.ErrNotFound)
	}
	diffList("acme after a delete", mustDocuments(t, b, acme), acmeDocs[:4])
	diffList("globex after acme's delete", mustDocuments(t, b, globex), globexDocs)
}

func testDocumentPutAgain(t *testing.T, b Backend) {
	ctx := t.Context()
	acme := authtest.Scope(t, Acme, "alice")
	text := "Invoices are due within thirty days."
	first, firstChunks, created, err := b.PutDocument(ctx, acme, NewDocument(text, `{"v":1}`), textChunks(true, text))
	if err != nil || !created {
		t.Fatalf("first PutDocument: created %v, %v", created, err)
	}
	version := mustKBVersion(t, b, acme)

	// The same text again, with other metadata, chunks and even an id: the
	// stored document comes back and nothing is written.
	again := NewDocument(text, `{"v":2}`)
	again.ID = "another-id"
	got, gotChunks, created, err := b.PutDocument(ctx, acme, again, textChunks(false, "Invoices are", "due within thirty days."))
	if err != nil {
		t.Fatalf("second PutDocument: %v", err)
	}
	if created {
		t.Error("second PutDocument of the same text: got created true")
	}
	if diff := diffDocument(got, first); diff != "" || !got.CreatedAt.Equal(first.CreatedAt) {
		t.Errorf("second PutDocument returned %s (created %v, want %v)", diff, got.CreatedAt, first.CreatedAt)
	}
	if diff := diffChunks(gotChunks, firstChunks); diff != "" {
		t.Errorf("second PutDocument returned chunks: %s", diff)
	}
	if docs := mustDocuments(t, b, acme); len(docs) != 1 {
		t.Errorf("after putting one text twice: got documents %v, want 1", docIDs(docs))
	}
	if _, err := b.Document(ctx, acme, "another-id"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Document(another-id): got %v, want %v", err, store.ErrNotFound)
	}
	if hits := mustSearch(t, b, acme, "invoices", 10); len(hits) != 1 || hits[0].ID != firstChunks[0].ID {
		t.Errorf("search after putting one text twice: got %v, want chunk %d once", hits, firstChunks[0].ID)
	}
	if got := mustKBVersion(t, b, acme); got != version {
		t.Errorf("KBVersion after a put that wrote nothing: got %d, want %d", got, version)
	}
}

func testConcurrentPutSameDocument(t *testing.T, b Backend) {
	const writers = 8
	ctx := t.Context()
	acme := authtest.Scope(t, Acme, "alice")
	text := "Only one of these puts may create the document."
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ids     = map[string]int{}
		creates int
	)
	for range writers {
		wg.Go(func() {
			d, _, created, err := b.PutDocument(ctx, acme, NewDocument(text, ""), textChunks(true, text))
			if err != nil {
				t.Errorf("PutDocument: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			ids[d.ID]++
			if created {
				creates++
			}
		})
	}
	wg.Wait()
	if creates != 1 || len(ids) != 1 {
		t.Errorf("%d concurrent puts of one text: %d created, ids %v; want 1 created, 1 id", writers, creates, ids)
	}
	if docs := mustDocuments(t, b, acme); len(docs) != 1 {
		t.Errorf("after concurrent puts: got documents %v, want 1", docIDs(docs))
	}
}

func testDocumentsAreSeparate(t *testing.T, b Backend) {
	ctx := t.Context()
	acme := authtest.Scope(t, Acme, "alice")
	globex := authtest.Scope(t, Globex, "alice")
	shared := "Refunds are processed within fourteen days of the request."

	// Acme holds more chunks than globex, so some of acme's chunk ids are
	// ids globex does not have, whatever a backend's numbering.
	acmeShared, acmeSharedChunks := mustPutDocumentChunks(t, b, acme, NewDocument(shared, ""), textChunks(true, shared))
	acmeOnlyTexts := []string{"The vault combination is kept in the quarry office.", "Ask the zanzibar desk.", "Quarry keys hang by the door."}
	acmeOnly, acmeOnlyChunks := mustPutDocumentChunks(t, b, acme, NewDocument(strings.Join(acmeOnlyTexts, " "), ""), textChunks(true, acmeOnlyTexts...))
	// The same text in globex is globex's own new document: re-ingest
	// detection is per tenant.
	globexShared, globexChunks, created, err := b.PutDocument(ctx, globex, NewDocument(shared, ""), textChunks(true, shared))
	if err != nil || !created {
		t.Fatalf("globex puts the text acme has: created %v, %v; want a new document", created, err)
	}
	globexIDs := chunkIDs(globexChunks)
	var acmeIDs []int64
	for _, c := range slices.Concat(acmeSharedChunks, acmeOnlyChunks) {
		acmeIDs = append(acmeIDs, c.ID)
	}

	for _, id := range []string{acmeShared.ID, acmeOnly.ID} {
		if _, err := b.Document(ctx, globex, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("globex reads acme's document %s: got %v, want %v", id, err, store.ErrNotFound)
		}
		if err := b.DeleteDocument(ctx, globex, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("globex deletes acme's document %s: got %v, want %v", id, err, store.ErrNotFound)
		}
	}
	if _, err := b.Document(ctx, acme, acmeOnly.ID); err != nil {
		t.Errorf("acme's document after globex tried to delete it: %v", err)
	}
	if _, err := b.Document(ctx, acme, globexShared.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("acme reads globex's document: got %v, want %v", err, store.ErrNotFound)
	}
	if docs := mustDocuments(t, b, globex); len(docs) != 1 || docs[0].ID != globexShared.ID {
		t.Errorf("globex's documents: got %v, want only %s", docIDs(docs), globexShared.ID)
	}

	// Searches return the caller's own chunks only.
	for _, q := range []string{"refunds processed fourteen days", "vault combination quarry zanzibar refunds"} {
		hits := mustSearch(t, b, globex, q, 50)
		if len(hits) == 0 {
			t.Errorf("globex searches %q: no hits, want its own chunk", q)
		}
		for _, h := range hits {
			if !slices.Contains(globexIDs, h.ID) {
				t.Errorf("globex searches %q: hit %d is not one of globex's chunks %v", q, h.ID, globexIDs)
			}
		}
		for _, c := range mustChunks(t, b, globex, hitIDs(hits)) {
			if c.DocumentID != globexShared.ID || c.Text != shared {
				t.Errorf("globex searches %q: got chunk %+v, not globex's", q, c)
			}
		}
	}
	if hits := mustSearch(t, b, globex, "vault combination quarry zanzibar", 50); len(hits) != 0 {
		t.Errorf("globex searches for acme-only words: got %v, want no hits", hits)
	}
	for _, h := range mustSearch(t, b, acme, "refunds quarry", 50) {
		if !slices.Contains(acmeIDs, h.ID) {
			t.Errorf("acme searches: hit %d is not one of acme's chunks %v", h.ID, acmeIDs)
		}
	}

	// Acme's chunk ids, asked for by globex, yield only globex's own chunks.
	for _, c := range mustChunks(t, b, globex, acmeIDs) {
		if c.DocumentID != globexShared.ID || c.Text != shared {
			t.Errorf("globex reads acme's chunk ids: got %+v, not globex's", c)
		}
	}
	embs, err := b.ChunkEmbeddings(ctx, globex)
	if err != nil {
		t.Fatal(err)
	}
	if got := chunkIDs(embs); !slices.Equal(got, globexIDs) {
		t.Errorf("globex's chunk embeddings: got ids %v, want %v", got, globexIDs)
	}

	// One document id may be used by both tenants.
	for _, w := range []struct {
		scope auth.Scope
		text  string
	}{{acme, "Acme's policy one."}, {globex, "Globex's policy one."}} {
		d := NewDocument(w.text, "")
		d.ID = "policy-1"
		if _, _, created, err := b.PutDocument(ctx, w.scope, d, nil); err != nil || !created {
			t.Fatalf("%v puts policy-1: created %v, %v", w.scope, created, err)
		}
	}
	for _, w := range []struct {
		scope auth.Scope
		want  string
	}{{acme, "Acme's policy one."}, {globex, "Globex's policy one."}} {
		if d, err := b.Document(ctx, w.scope, "policy-1"); err != nil || d.Text != w.want {
			t.Errorf("%v reads policy-1: got %q, %v; want %q", w.scope, d.Text, err, w.want)
		}
	}
}

func testDeleteDocument(t *testing.T, b Backend) {
	ctx := t.Context()
	acme := authtest.Scope(t, Acme, "alice")
	gone, goneChunks := mustPutDocumentChunks(t, b, acme, NewDocument("Penguins waddle across the ice shelf.", ""),
		textChunks(true, "Penguins waddle", "across the ice shelf."))
	kept, keptChunks := mustPutDocumentChunks(t, b, acme, NewDocument("Penguins also swim fast.", ""),
		textChunks(true, "Penguins also swim fast."))

	if err := b.DeleteDocument(ctx, acme, gone.ID); err != nil {
		t.Fatalf("DeleteDocument: %v", err)
	}
	if _, err := b.Document(ctx, acme, gone.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Document after delete: got %v, want %v", err, store.ErrNotFound)
	}
	if err := b.DeleteDocument(ctx, acme, gone.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteDocument again: got %v, want %v", err, store.ErrNotFound)
	}
	if hits := mustSearch(t, b, acme, "penguins waddle ice shelf", 10); !slices.Equal(hitIDs(hits), chunkIDs(keptChunks)) {
		t.Errorf("search after delete: got %v, want only chunk %v", hits, chunkIDs(keptChunks))
	}
	if hits := mustSearch(t, b, acme, "waddle", 10); len(hits) != 0 {
		t.Errorf("search for a deleted document's word: got %v, want none", hits)
	}
	if got := mustChunks(t, b, acme, chunkIDs(goneChunks)); len(got) != 0 {
		t.Errorf("Chunks of a deleted document: got %+v, want none", got)
	}
	embs, err := b.ChunkEmbeddings(ctx, acme)
	if err != nil {
		t.Fatal(err)
	}
	if got := chunkIDs(embs); !slices.Equal(got, chunkIDs(keptChunks)) {
		t.Errorf("ChunkEmbeddings after delete: got ids %v, want %v", got, chunkIDs(keptChunks))
	}
	if docs := mustDocuments(t, b, acme); len(docs) != 1 || docs[0].ID != kept.ID {
		t.Errorf("Documents after delete: got %v, want only %s", docIDs(docs), kept.ID)
	}

	// The text may come back, as a new document.
	back, backChunks := mustPutDocumentChunks(t, b, acme, NewDocument("Penguins waddle across the ice shelf.", ""),
		textChunks(true, "Penguins waddle across the ice shelf."))
	if back.ID == gone.ID {
		t.Errorf("re-put after delete: got the deleted id %s again", back.ID)
	}
	if hits := mustSearch(t, b, acme, "waddle", 10); !slices.Equal(hitIDs(hits), chunkIDs(backChunks)) {
		t.Errorf("search after re-put: got %v, want %v", hits, chunkIDs(backChunks))
	}
}

func testSearch(t *testing.T, b Backend) {
	acme := authtest.Scope(t, Acme, "alice")
	texts := []string{
		"Solar panels convert sunlight into electricity.",
		"Wind turbines convert wind into electricity; the turbines turn slowly.",
		"Hydroelectric dams store water behind concrete walls.",
		"Geothermal plants tap heat from deep underground.",
		"Batteries keep energy for the night.",
	}
	_, chunks := mustPutDocumentChunks(t, b, acme, NewDocument(strings.Join(texts, "\n"), ""), textChunks(false, texts...))
	id := func(i int) int64 { return chunks[i].ID }

	tests := []struct {
		query    string
		k        int
		want     []int64
		anyOrder bool
	}{
		{query: "turbines", k: 10, want: []int64{id(1)}},
		{query: "TURBINES!", k: 10, want: []int64{id(1)}},
		{query: "sunlight", k: 10, want: []int64{id(0)}},
		{query: "wind turbines electricity", k: 1, want: []int64{id(1)}},
		{query: "wind turbines electricity", k: 10, want: []int64{id(1), id(0)}},
		// Terms are ORed; "or" is a stopword, not an operator.
		{query: "concrete OR heat", k: 10, want: []int64{id(2), id(3)}, anyOrder: true},
		// No query syntax is interpreted: near and turbines are terms.
		{query: `NEAR(turbines) "`, k: 10, want: []int64{id(1)}},
		{query: "turbines*", k: 10, want: []int64{id(1)}},
		{query: "turb", k: 10},
		{query: "the of and", k: 10},
		{query: "", k: 10},
		{query: "?!", k: 10},
		{query: "turbines", k: 0},
		{query: "turbines", k: -1},
	}
	for _, tt := range tests {
		hits := mustSearch(t, b, acme, tt.query, tt.k)
		got := hitIDs(hits)
		if tt.anyOrder && !sameSet(got, tt.want) || !tt.anyOrder && !slices.Equal(got, tt.want) {
			t.Errorf("search %q (k %d): got %v, want %v", tt.query, tt.k, got, tt.want)
		}
		for i, h := range hits {
			if h.Score <= 0 || (i > 0 && h.Score > hits[i-1].Score) {
				t.Errorf("search %q: scores %v, want positive and best first", tt.query, hits)
				break
			}
		}
	}
}

func testKBVersion(t *testing.T, b Backend) {
	ctx := t.Context()
	acme := authtest.Scope(t, Acme, "alice")
	globex := authtest.Scope(t, Globex, "alice")
	v0, g0 := mustKBVersion(t, b, acme), mustKBVersion(t, b, globex)

	doc := mustPutDocument(t, b, acme, NewDocument("Versioned text.", ""), textChunks(true, "Versioned text."))
	v1 := mustKBVersion(t, b, acme)
	if v1 <= v0 {
		t.Errorf("KBVersion after a put: got %d, want more than %d", v1, v0)
	}
	if _, _, _, err := b.PutDocument(ctx, acme, NewDocument("Versioned text.", ""), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteDocument(ctx, acme, "doc_000000000000000000000000"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeleteDocument of an unknown id: got %v, want %v", err, store.ErrNotFound)
	}
	if got := mustKBVersion(t, b, acme); got != v1 {
		t.Errorf("KBVersion after a put and a delete that changed nothing: got %d, want %d", got, v1)
	}
	if err := b.DeleteDocument(ctx, acme, doc.ID); err != nil {
		t.Fatal(err)
	}
	v2 := mustKBVersion(t, b, acme)
	if v2 <= v1 {
		t.Errorf("KBVersion after a delete: got %d, want more than %d", v2, v1)
	}
	mustPutDocument(t, b, acme, NewDocument("Versioned text.", ""), textChunks(true, "Versioned text."))
	if v3 := mustKBVersion(t, b, acme); v3 <= v2 {
		t.Errorf("KBVersion after putting a deleted text again: got %d, want more than %d", v3, v2)
	}
	if got := mustKBVersion(t, b, globex); got != g0 {
		t.Errorf("globex's KBVersion after acme's changes: got %d, want %d", got, g0)
	}
}

func testMemories(t *testing.T, b Backend) {
	ctx := t.Context()
	alice := authtest.Scope(t, Acme, "alice")
	before := time.Now()
	m1, err := b.PutMemory(ctx, alice, store.Memory{User: "mallory", Text: "Prefers window seats on long flights.", Embedding: vec(1), ID: 99})
	if err != nil {
		t.Fatalf("PutMemory: %v", err)
	}
	m2, err := b.PutMemory(ctx, alice, store.Memory{Text: "Allergic to peanuts."})
	if err != nil {
		t.Fatalf("PutMemory: %v", err)
	}
	after := time.Now()
	if m1.User != "alice" || m2.User != "alice" {
		t.Errorf("PutMemory: got users %q and %q, want the scope's alice", m1.User, m2.User)
	}
	if m1.ID == 0 || m2.ID == 0 || m1.ID == m2.ID {
		t.Errorf("PutMemory: got ids %d and %d, want two distinct assigned ids", m1.ID, m2.ID)
	}
	for _, m := range []store.Memory{m1, m2} {
		if c := m.CreatedAt; c.Before(before.Add(-time.Second)) || c.After(after.Add(time.Second)) || c.Location() != time.UTC {
			t.Errorf("memory %d: got CreatedAt %v, want UTC between %v and %v", m.ID, c, before, after)
		}
	}

	got, err := b.Memories(ctx, alice, 0)
	if err != nil {
		t.Fatalf("Memories: %v", err)
	}
	if diff := diffMemories(got, []store.Memory{m2, m1}); diff != "" {
		t.Errorf("Memories: %s", diff)
	}
	if got, err := b.Memories(ctx, alice, 1); err != nil || diffMemories(got, []store.Memory{m2}) != "" {
		t.Errorf("Memories(limit 1): got %+v, %v; want the newest only", got, err)
	}
	for _, tt := range []struct {
		query string
		k     int
		want  []int64
	}{
		{"window seats", 10, []int64{m1.ID}},
		{"PEANUTS", 10, []int64{m2.ID}},
		{"", 10, nil},
		{"the", 10, nil},
		{"peanuts", 0, nil},
	} {
		if got := hitIDs(mustSearchMemories(t, b, alice, tt.query, tt.k)); !slices.Equal(got, tt.want) {
			t.Errorf("SearchMemories(%q, %d): got %v, want %v", tt.query, tt.k, got, tt.want)
		}
	}
}

func testMemoriesAreSeparate(t *testing.T, b Backend) {
	acmeAlice := authtest.Scope(t, Acme, "alice")
	acmeBob := acmeAlice.WithUser("bob")
	globexAlice := authtest.Scope(t, Globex, "alice")
	// Bob writes first, so acme's alice and globex's alice have memories
	// with different ids however a backend numbers them.
	owners := []struct {
		name  string
		scope auth.Scope
		texts []string
		own   string // a word only this owner's memories have
	}{
		{"acme/bob", acmeBob, []string{"Favourite colour is teal.", "Favourite food is ramen.", "Keeps a quokka."}, "quokka"},
		{"acme/alice", acmeAlice, []string{"Favourite colour is crimson.", "Keeps a narwhal."}, "narwhal"},
		{"globex/alice", globexAlice, []string{"Favourite colour is amber.", "Keeps an axolotl."}, "axolotl"},
	}
	stored := make([][]store.Memory, len(owners))
	for i, o := range owners {
		for _, text := range o.texts {
			m, err := b.PutMemory(t.Context(), o.scope, store.Memory{Text: text, Embedding: vec(i)})
			if err != nil {
				t.Fatalf("%s PutMemory: %v", o.name, err)
			}
			stored[i] = append([]store.Memory{m}, stored[i]...) // newest first
		}
	}
	for i, o := range owners {
		got, err := b.Memories(t.Context(), o.scope, 0)
		if err != nil {
			t.Fatalf("%s Memories: %v", o.name, err)
		}
		if diff := diffMemories(got, stored[i]); diff != "" {
			t.Errorf("%s Memories: %s", o.name, diff)
		}
		var own []int64
		for _, m := range stored[i] {
			own = append(own, m.ID)
		}
		hits := mustSearchMemories(t, b, o.scope, "favourite colour", 50)
		if len(hits) == 0 {
			t.Errorf("%s searches favourite colour: no hits, want its own memories", o.name)
		}
		for _, h := range hits {
			if !slices.Contains(own, h.ID) {
				t.Errorf("%s searches favourite colour: hit %d is not one of its own memories %v", o.name, h.ID, own)
			}
		}
		for j, other := range owners {
			hits := mustSearchMemories(t, b, o.scope, other.own, 50)
			if j == i && len(hits) != 1 {
				t.Errorf("%s searches its own %q: got %v, want one hit", o.name, other.own, hits)
			}
			if j != i && len(hits) != 0 {
				t.Errorf("%s searches %s's %q: got %v, want none", o.name, other.name, other.own, hits)
			}
		}
	}
}

func testAnonymousHasNoMemories(t *testing.T, b Backend) {
	ctx := t.Context()
	anon := authtest.Scope(t, Acme, "")
	if _, err := b.PutMemory(ctx, anon, store.Memory{Text: "Anonymous shared secret."}); !errors.Is(err, kind.Invalid) {
		t.Errorf("PutMemory for the anonymous user: got %v, want %v", err, kind.Invalid)
	}
	if _, err := b.PutMemory(ctx, anon.WithUser("alice"), store.Memory{Text: "Alice shared secret."}); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Memories(ctx, anon, 0); err != nil || len(got) != 0 {
		t.Errorf("anonymous Memories: got %+v, %v; want none", got, err)
	}
	if got, err := b.SearchMemories(ctx, anon, "shared secret", 10); err != nil || len(got) != 0 {
		t.Errorf("anonymous SearchMemories: got %v, %v; want none", got, err)
	}
}

func testExportKnowledge(t *testing.T, b Backend) {
	ctx := t.Context()
	alice := authtest.Scope(t, Acme, "alice")
	bob := alice.WithUser("bob")
	globex := authtest.Scope(t, Globex, "alice")

	d1 := mustPutDocument(t, b, alice, NewDocument("First acme document.", `{"k":"v"}`), textChunks(true, "First acme document."))
	d2 := mustPutDocument(t, b, alice, NewDocument("Second acme document.", ""), nil)
	deleted := mustPutDocument(t, b, alice, NewDocument("Deleted acme document.", ""), nil)
	if err := b.DeleteDocument(ctx, alice, deleted.ID); err != nil {
		t.Fatal(err)
	}
	mustPutDocument(t, b, globex, NewDocument("Globex document.", ""), textChunks(true, "Globex document."))
	var mems []store.Memory
	for _, w := range []struct {
		scope auth.Scope
		text  string
	}{{bob, "Bob's memory."}, {alice, "Alice's first memory."}, {globex, "Globex memory."}, {alice, "Alice's second memory."}} {
		m, err := b.PutMemory(ctx, w.scope, store.Memory{Text: w.text, Embedding: vec(1)})
		if err != nil {
			t.Fatal(err)
		}
		if w.scope != globex {
			m.Embedding = nil // an export carries no embeddings
			mems = append(mems, m)
		}
	}

	exp := mustExport(t, b, alice)
	if len(exp.Documents) != 2 {
		t.Fatalf("exported documents: got %v, want %s and %s", docIDs(exp.Documents), d1.ID, d2.ID)
	}
	for i, w := range []store.Document{d1, d2} {
		if diff := diffDocument(exp.Documents[i], w); diff != "" {
			t.Errorf("exported document %d: %s", i, diff)
		}
	}
	wantMems := []store.Memory{mems[1], mems[2], mems[0]} // by user, then oldest first
	if diff := diffMemories(exp.Memories, wantMems); diff != "" {
		t.Errorf("exported memories: %s", diff)
	}
	data, err := json.Marshal(exp)
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{"Globex", "Deleted acme document"} {
		if bytes.Contains(data, []byte(leak)) {
			t.Errorf("acme's export contains %q: %s", leak, data)
		}
	}
	gexp := mustExport(t, b, globex)
	if len(gexp.Documents) != 1 || gexp.Documents[0].Text != "Globex document." ||
		len(gexp.Memories) != 1 || gexp.Memories[0].Text != "Globex memory." {
		t.Errorf("globex's export: got documents %+v and memories %+v, want its own one of each", gexp.Documents, gexp.Memories)
	}
}

// checkKnowledgeRefused checks that every document, chunk and memory call for
// scope fails with want and returns nothing.
func checkKnowledgeRefused(t *testing.T, b Backend, scope auth.Scope, want error) {
	t.Helper()
	ctx := t.Context()
	check := func(name string, n int, err error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Errorf("%s: got error %v, want %v", name, err, want)
		}
		if n != 0 {
			t.Errorf("%s: got %d results, want none", name, n)
		}
	}
	d, c, _, err := b.PutDocument(ctx, scope, NewDocument("refused text", ""), textChunks(true, "refused text"))
	check("PutDocument", len(d.ID)+len(c), err)
	d, err = b.Document(ctx, scope, "doc_000000000000000000000000")
	check("Document", len(d.ID), err)
	check("DeleteDocument", 0, b.DeleteDocument(ctx, scope, "doc_000000000000000000000000"))
	docs, err := b.Documents(ctx, scope, "", 0)
	check("Documents", len(docs), err)
	c, err = b.Chunks(ctx, scope, []int64{1, 2})
	check("Chunks", len(c), err)
	c, err = b.ChunkEmbeddings(ctx, scope)
	check("ChunkEmbeddings", len(c), err)
	hits, err := b.SearchChunks(ctx, scope, "refused text", 5)
	check("SearchChunks", len(hits), err)
	_, err = b.KBVersion(ctx, scope)
	check("KBVersion", 0, err)
	m, err := b.PutMemory(ctx, scope, store.Memory{Text: "refused memory"})
	check("PutMemory", int(m.ID), err)
	ms, err := b.Memories(ctx, scope, 0)
	check("Memories", len(ms), err)
	hits, err = b.SearchMemories(ctx, scope, "refused memory", 5)
	check("SearchMemories", len(hits), err)
}

func mustPutDocument(t *testing.T, b Backend, scope auth.Scope, doc store.Document, chunks []store.Chunk) store.Document {
	t.Helper()
	d, _ := mustPutDocumentChunks(t, b, scope, doc, chunks)
	return d
}

// mustPutDocumentChunks puts a document that must be new.
func mustPutDocumentChunks(t *testing.T, b Backend, scope auth.Scope, doc store.Document, chunks []store.Chunk) (store.Document, []store.Chunk) {
	t.Helper()
	d, c, created, err := b.PutDocument(t.Context(), scope, doc, chunks)
	if err != nil {
		t.Fatalf("PutDocument(%v): %v", scope, err)
	}
	if !created {
		t.Fatalf("PutDocument(%v): got created false for a new text", scope)
	}
	return d, c
}

func mustDocuments(t *testing.T, b Backend, scope auth.Scope) []store.Document {
	t.Helper()
	docs, err := b.Documents(t.Context(), scope, "", 0)
	if err != nil {
		t.Fatalf("Documents(%v): %v", scope, err)
	}
	return docs
}

func mustChunks(t *testing.T, b Backend, scope auth.Scope, ids []int64) []store.Chunk {
	t.Helper()
	chunks, err := b.Chunks(t.Context(), scope, ids)
	if err != nil {
		t.Fatalf("Chunks(%v): %v", scope, err)
	}
	return chunks
}

func mustSearch(t *testing.T, b Backend, scope auth.Scope, query string, k int) []store.Hit {
	t.Helper()
	hits, err := b.SearchChunks(t.Context(), scope, query, k)
	if err != nil {
		t.Fatalf("SearchChunks(%v, %q): %v", scope, query, err)
	}
	return hits
}

func mustSearchMemories(t *testing.T, b Backend, scope auth.Scope, query string, k int) []store.Hit {
	t.Helper()
	hits, err := b.SearchMemories(t.Context(), scope, query, k)
	if err != nil {
		t.Fatalf("SearchMemories(%v, %q): %v", scope, query, err)
	}
	return hits
}

func mustKBVersion(t *testing.T, b Backend, scope auth.Scope) int64 {
	t.Helper()
	v, err := b.KBVersion(t.Context(), scope)
	if err != nil {
		t.Fatalf("KBVersion(%v): %v", scope, err)
	}
	return v
}

func hitIDs(hits []store.Hit) []int64 {
	var ids []int64
	for _, h := range hits {
		ids = append(ids, h.ID)
	}
	return ids
}

func chunkIDs(chunks []store.Chunk) []int64 {
	var ids []int64
	for _, c := range chunks {
		ids = append(ids, c.ID)
	}
	return ids
}

func docIDs(docs []store.Document) []string {
	var ids []string
	for _, d := range docs {
		ids = append(ids, d.ID)
	}
	return ids
}

func sameSet(a, b []int64) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// diffDocument describes how got differs from want in everything but
// CreatedAt, or returns "". Metadata is compared as JSON.
func diffDocument(got, want store.Document) string {
	if got.ID != want.ID || got.Text != want.Text || got.Hash != want.Hash || got.Chunks != want.Chunks || got.Size != want.Size || !jsonEqual(got.Metadata, want.Metadata) {
		return fmt.Sprintf("got {%s %q %s %d %dB %s}, want {%s %q %s %d %dB %s}",
			got.ID, got.Text, got.Hash, got.Chunks, got.Size, got.Metadata, want.ID, want.Text, want.Hash, want.Chunks, want.Size, want.Metadata)
	}
	return ""
}

func jsonEqual(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return fmt.Sprint(x) == fmt.Sprint(y)
}

func diffChunk(got, want store.Chunk) string {
	if got.ID != want.ID || got.DocumentID != want.DocumentID || got.Ordinal != want.Ordinal || got.Text != want.Text || !slices.Equal(got.Embedding, want.Embedding) {
		return fmt.Sprintf("got %+v, want %+v", got, want)
	}
	return ""
}

func diffChunks(got, want []store.Chunk) string {
	if len(got) != len(want) {
		return fmt.Sprintf("got %d chunks %+v, want %d %+v", len(got), got, len(want), want)
	}
	for i := range got {
		if diff := diffChunk(got[i], want[i]); diff != "" {
			return fmt.Sprintf("chunk %d: %s", i, diff)
		}
	}
	return ""
}

func diffMemories(got, want []store.Memory) string {
	if len(got) != len(want) {
		return fmt.Sprintf("got %d memories %+v, want %d %+v", len(got), got, len(want), want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.User != w.User || g.Text != w.Text || !slices.Equal(g.Embedding, w.Embedding) || !g.CreatedAt.Equal(w.CreatedAt) {
			return fmt.Sprintf("memory %d: got %+v, want %+v", i, g, w)
		}
	}
	return ""
}
