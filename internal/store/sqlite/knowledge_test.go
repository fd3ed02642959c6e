package sqlite_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/store/seal"
	"github.com/bulkhead-ai/bulkhead/internal/store/sqlite"
	"github.com/bulkhead-ai/bulkhead/internal/store/storetest"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// checkKnowledgeUnavailable checks that every document, chunk and memory call
// for scope fails and returns nothing; plain is text a write would store.
func checkKnowledgeUnavailable(t *testing.T, db *sqlite.DB, scope auth.Scope, plain string) {
	t.Helper()
	ctx := t.Context()
	if _, _, _, err := db.PutDocument(ctx, scope, storetest.NewDocument(plain, ""), []store.Chunk{{Text: plain}}); err == nil {
		t.Error("PutDocument: got nil error")
	}
	if _, err := db.PutMemory(ctx, scope, store.Memory{Text: plain}); err == nil {
		t.Error("PutMemory: got nil error")
	}
	if err := db.DeleteDocument(ctx, scope, "doc_000000000000000000000000"); err == nil {
		t.Error("DeleteDocument: got nil error")
	}
	if _, err := db.Document(ctx, scope, "doc_000000000000000000000000"); err == nil {
		t.Error("Document: got nil error")
	}
	if docs, err := db.Documents(ctx, scope, "", 0); err == nil || docs != nil {
		t.Errorf("Documents: got %v, %v; want nil and an error", docs, err)
	}
	if chunks, err := db.Chunks(ctx, scope, []int64{1}); err == nil || chunks != nil {
		t.Errorf("Chunks: got %v, %v; want nil and an error", chunks, err)
	}
	if chunks, err := db.ChunkEmbeddings(ctx, scope); err == nil || chunks != nil {
		t.Errorf("ChunkEmbeddings: got %v, %v; want nil and an error", chunks, err)
	}
	if hits, err := db.SearchChunks(ctx, scope, plain, 5); err == nil || hits != nil {
		t.Errorf("SearchChunks: got %v, %v; want nil and an error", hits, err)
	}
	if _, err := db.KBVersion(ctx, scope); err == nil {
		t.Error("KBVersion: got nil error")
	}
	if mems, err := db.Memories(ctx, scope, 0); err == nil || mems != nil {
		t.Errorf("Memories: got %v, %v; want nil and an error", mems, err)
	}
	if hits, err := db.SearchMemories(ctx, scope, plain, 5); err == nil || hits != nil {
		t.Errorf("SearchMemories: got %v, %v; want nil and an error", hits, err)
	}
}

// embedding returns a dim-dimensional embedding derived from seed.
func embedding(dim int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 42))
	v := make([]float32, dim)
	for i := range v {
		v[i] = r.Float32()*2 - 1
	}
	return v
}

func float32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

// TestKnowledgeFilesHoldNoPlaintext stores documents, chunks, embeddings and
// memories and looks for their text, their terms, their content hashes and
// their embeddings in the raw bytes of every file of the tenant's directory:
// only ciphertexts and blind tokens may be there.
func TestKnowledgeFilesHoldNoPlaintext(t *testing.T) {
	const (
		sentence = "Quixotic zyxwvut marmalade ferments beneath Kilimanjaro glaciers"
		memory   = "Prefers ultramarine origami every Tuesday afternoon"
		meta     = `{"source":"metadata-marker-6d2f"}`
		docs     = 40
	)
	dir := t.TempDir()
	k := newKeys(t, storetest.Acme, storetest.Globex)
	db := open(t, dir, 0, twoTenants, k.Ring())
	ctx := t.Context()
	scope := authtest.Scope(t, storetest.Acme, "alice")

	var (
		ids        []string
		hashes     [][]byte
		embeddings [][]byte
	)
	for i := range docs {
		text := fmt.Sprintf("%s. Copy %d.", sentence, i)
		emb := embedding(384, uint64(i))
		d, _, _, err := db.PutDocument(ctx, scope, storetest.NewDocument(text, meta),
			[]store.Chunk{{Text: sentence, Embedding: emb}, {Text: fmt.Sprintf("Copy %d.", i), Embedding: embedding(384, uint64(1000+i))}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d.ID)
		sum := sha256.Sum256([]byte(text))
		hashes = append(hashes, []byte(d.Hash), sum[:])
		embeddings = append(embeddings, float32Bytes(emb)[:64])
	}
	for i := range 10 {
		if _, err := db.PutMemory(ctx, scope, store.Memory{Text: memory, Embedding: embedding(384, uint64(2000+i))}); err != nil {
			t.Fatal(err)
		}
	}
	// A deleted document leaves old pages behind; they are sealed too.
	if err := db.DeleteDocument(ctx, scope, ids[0]); err != nil {
		t.Fatal(err)
	}

	// The store still finds the document by its rarest word, in any case.
	for _, q := range []string{"zyxwvut", "KILIMANJARO glaciers"} {
		hits, err := db.SearchChunks(ctx, scope, q, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(hits) != docs-1 {
			t.Errorf("SearchChunks(%q): got %d hits, want %d", q, len(hits), docs-1)
		}
	}
	if hits, err := db.SearchMemories(ctx, scope, "ultramarine", 100); err != nil || len(hits) != 10 {
		t.Errorf("SearchMemories(ultramarine): got %d hits, %v; want 10", len(hits), err)
	}

	// What must not be there: the texts, every term of five letters or more
	// (shorter ones occur by chance in binary data), in any case.
	forbidden := [][]byte{[]byte(sentence), []byte(memory), []byte("metadata-marker-6d2f")}
	for _, term := range append(store.Terms(sentence), store.Terms(memory)...) {
		if len(term) >= 5 {
			forbidden = append(forbidden, []byte(term))
		}
	}
	forbidden = append(forbidden, hashes...)
	forbidden = append(forbidden, embeddings...)
	// What must be there, to show the scan sees the data: the document ids
	// (clear) and the blind token of the rare word.
	c, err := k.Ring().Cipher(ctx, tenant.Incarnation(storetest.Acme))
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, c.Derive("blind-index"))
	mac.Write([]byte("zyxwvut"))
	// The index stores terms with their shared prefix compressed away, so
	// look for the token's tail.
	token := ("t" + hex.EncodeToString(mac.Sum(nil))[:24])[9:]

	tenantDir := filepath.Join(dir, twoTenants[storetest.Acme])
	scan := func(when string) {
		t.Helper()
		entries, err := os.ReadDir(tenantDir)
		if err != nil {
			t.Fatal(err)
		}
		var all []byte
		var names []string
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(tenantDir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, fmt.Sprintf("%s (%d bytes)", e.Name(), len(b)))
			lower := bytes.ToLower(b)
			for _, f := range forbidden {
				if bytes.Contains(b, f) || bytes.Contains(lower, bytes.ToLower(f)) {
					t.Errorf("%s: %s holds %q", when, e.Name(), f)
				}
			}
			all = append(all, b...)
		}
		for _, want := range []string{ids[1], ids[docs-1], token} {
			if !bytes.Contains(all, []byte(want)) {
				t.Errorf("%s: %q is in none of %q: the scan misses the data", when, want, names)
			}
		}
		t.Logf("%s: scanned %q", when, names)
	}
	scan("while open")
	raw := rawDB(t, dir, twoTenants[storetest.Acme])
	if _, err := raw.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	scan("after a full checkpoint")
}

// TestKnowledgeCiphertextMoved moves document, chunk and memory ciphertexts
// between tenants, documents, ordinals, users and columns behind the store's
// back: every read of a moved ciphertext must fail with keyring.ErrDecrypt
// and show none of its text.
func TestKnowledgeCiphertextMoved(t *testing.T) {
	const (
		acmeText  = "acme-only-document-5a1c"
		acmeChunk = "acme-only-chunk-0b7e"
		acmeMem   = "acme-only-memory-93d2"
	)
	acmeID, globexID := twoTenants[storetest.Acme], twoTenants[storetest.Globex]
	type fixture struct {
		db            *sqlite.DB
		acme, globex  auth.Scope
		a, b, g       store.Document // acme's a (two chunks) and b, globex's g
		ac, bc, gc    []store.Chunk
		aliceM, bobM  store.Memory
		aliceM2, gMem store.Memory
	}
	chunkOf := func(doc string, ordinal int) string {
		return fmt.Sprintf("SELECT %%s FROM chunks WHERE document_id = '%s' AND ordinal = %d", doc, ordinal)
	}
	tests := []struct {
		name   string
		tamper func(t *testing.T, f *fixture, acme, globex *sql.DB)
		read   func(ctx context.Context, f *fixture) (any, error)
	}{
		{
			name: "chunk text moved to another document",
			tamper: func(t *testing.T, f *fixture, acme, _ *sql.DB) {
				rawExec(t, acme, `UPDATE chunks SET text = (`+fmt.Sprintf(chunkOf(f.a.ID, 0), "text")+`) WHERE document_id = ?`, f.b.ID)
			},
			read: func(ctx context.Context, f *fixture) (any, error) {
				return f.db.Chunks(ctx, f.acme, []int64{f.bc[0].ID})
			},
		},
		{
			name: "chunk text moved to another ordinal",
			tamper: func(t *testing.T, f *fixture, acme, _ *sql.DB) {
				rawExec(t, acme, `UPDATE chunks SET text = (`+fmt.Sprintf(chunkOf(f.a.ID, 0), "text")+`) WHERE document_id = ? AND ordinal = 1`, f.a.ID)
			},
			read: func(ctx context.Context, f *fixture) (any, error) {
				return f.db.Chunks(ctx, f.acme, []int64{f.ac[1].ID})
			},
		},
		{
			name: "chunk ordinals swapped",
			tamper: func(t *testing.T, f *fixture, acme, _ *sql.DB) {
				rawExec(t, acme, `UPDATE chunks SET ordinal = 1 - ordinal + 10 WHERE document_id = ?`, f.a.ID)
				rawExec(t, acme, `UPDATE chunks SET ordinal = ordinal - 10 WHERE document_id = ?`, f.a.ID)
			},
			read: func(ctx context.Context, f *fixture) (any, error) {
				return f.db.Chunks(ctx, f.acme, []int64{f.ac[0].ID})
			},
		},
		{
			name: "chunk text copied to globex",
			tamper: func(t *testing.T, f *fixture, acme, globex *sql.DB) {
				rawExec(t, globex, `UPDATE chunks SET text = ?`, rawBytes(t, acme, fmt.Sprintf(chunkOf(f.a.ID, 0), "text")))
			},
			read: func(ctx context.Context, f *fixture) (any, error) {
				return f.db.Chunks(ctx, f.globex, []int64{f.gc[0].ID})
			},
		},
		{
			name: "document and chunks copied whole to globex",
			tamper: func(t *testing.T, f *fixture, acme, globex *sql.DB) {
				rawExec(t, globex, `DELETE FROM chunks`)
				rawExec(t, globex, `DELETE FROM documents`)
				copyRows(t, acme, globex, `documents`, `id = '`+f.a.ID+`'`)
				copyRows(t, acme, globex, `chunks`, `document_id = '`+f.a.ID+`'`)
			},
			read: func(ctx context.Context, f *fixture) (any, error) {
				d, err := f.db.Document(ctx, f.globex, f.a.ID)
				if !errors.Is(err, keyring.ErrDecrypt) {
					return d, err
				}
				return f.db.Chunks(ctx, f.globex, chunkIDs(f.ac))
			},
		},
		{
			name: "chunk embedding moved to another chunk",
			tamper: func(t *testing.T, f *fixture, acme, _ *sql.DB) {
				rawExec(t, acme, `UPDATE chunks SET embedding = (`+fmt.Sprintf(chunkOf(f.a.ID, 0), "embedding")+`) WHERE document_id = ?`, f.b.ID)
			},
			read: func(ctx context.Context, f *fixture) (any, error) { return f.db.ChunkEmbeddings(ctx, f.acme) },
		},
		{
			name: "chunk text swapped into its embedding",
			tamper: func(t *testing.T, f *fixture, acme, _ *sql.DB) {
				rawExec(t, acme, `UPDATE chunks SET embedding = text WHERE document_id = ?`, f.b.ID)
			},
			read: func(ctx context.Context, f *fixture) (any, error) { return f.db.ChunkEmbeddings(ctx, f.acme) },
		},
		{
			name: "document text moved into a chunk",
			tamper: func(t *testing.T, f *fixture, acme, _ *sql.DB) {
				rawExec(t, acme, `UPDATE chunks SET text = (SELECT text FROM documents WHERE id = ?) WHERE document_id = ?`, f.a.ID, f.b.ID)
			},
			read: func(ctx context.Context, f *fixture) (any, error) {
				return f.db.Chunks(ctx, f.acme, []int64{f.bc[0].ID})
			},
		},
		{
			name: "document text moved to another document",
			tamper: func(t *testing.T, f *fixture, acme, _ *sql.DB) {
				rawExec(t, acme, `UPDATE documents SET text = (SELECT text FROM documents WHERE id = ?) WHERE id = ?`, f.a.ID, f.b.ID)
			},
			read: func(ctx context.Context, f *fixture) (any, error) { return f.db.Document(ctx, f.acme, f.b.ID) },
		},
		{
			name: "document metadata swapped into its hash",
			tamper: func(t *testing.T, f *fixture, acme, _ *sql.DB) {
				rawExec(t, acme, `UPDATE documents SET hash = metadata WHERE id = ?`, f.a.ID)
			},
			read: func(ctx context.Context, f *fixture) (any, error) { return f.db.Documents(ctx, f.acme, "", 0) },
		},
		{
			name: "export meets a moved document text",
			tamper: func(t *testing.T, f *fixture, acme, _ *sql.DB) {
				rawExec(t, acme, `UPDATE documents SET text = (SELECT text FROM documents WHERE id = ?) WHERE id = ?`, f.a.ID, f.b.ID)
			},
			read: func(ctx context.Context, f *fixture) (any, error) { return f.db.Export(ctx, f.acme) },
		},
		{
			name: "memory text moved to another user",
			tamper: func(t *testing.T, f *fixture, acme, _ *sql.DB) {
				rawExec(t, acme, `UPDATE memories SET text = (SELECT text FROM memories WHERE id = ?) WHERE id = ?`, f.aliceM.ID, f.bobM.ID)
			},
			read: func(ctx context.Context, f *fixture) (any, error) {
				return f.db.Memories(ctx, f.acme.WithUser("bob"), 0)
			},
		},
		{
			name: "memory row given to another user",
			tamper: func(t *testing.T, f *fixture, acme, _ *sql.DB) {
				rawExec(t, acme, `UPDATE memories SET user_id = 'bob' WHERE id = ?`, f.aliceM.ID)
			},
			read: func(ctx context.Context, f *fixture) (any, error) {
				return f.db.Memories(ctx, f.acme.WithUser("bob"), 0)
			},
		},
		{
			name: "memory text moved to another memory of its user",
			tamper: func(t *testing.T, f *fixture, acme, _ *sql.DB) {
				rawExec(t, acme, `UPDATE memories SET text = (SELECT text FROM memories WHERE id = ?) WHERE id = ?`, f.aliceM.ID, f.aliceM2.ID)
			},
			read: func(ctx context.Context, f *fixture) (any, error) { return f.db.Memories(ctx, f.acme, 0) },
		},
		{
			name: "memory embedding moved to another memory of its user",
			tamper: func(t *testing.T, f *fixture, acme, _ *sql.DB) {
				rawExec(t, acme, `UPDATE memories SET embedding = (SELECT embedding FROM memories WHERE id = ?) WHERE id = ?`, f.aliceM.ID, f.aliceM2.ID)
			},
			read: func(ctx context.Context, f *fixture) (any, error) { return f.db.Memories(ctx, f.acme, 0) },
		},
		{
			name: "memory copied whole to globex's same user",
			tamper: func(t *testing.T, f *fixture, acme, globex *sql.DB) {
				rawExec(t, globex, `DELETE FROM memories`)
				copyRows(t, acme, globex, `memories`, `user_id = 'alice'`)
			},
			read: func(ctx context.Context, f *fixture) (any, error) { return f.db.Memories(ctx, f.globex, 0) },
		},
		{
			name: "globex's export meets a copied memory",
			tamper: func(t *testing.T, f *fixture, acme, globex *sql.DB) {
				rawExec(t, globex, `UPDATE memories SET text = ?`, rawBytes(t, acme, `SELECT text FROM memories WHERE id = ?`, f.aliceM.ID))
			},
			read: func(ctx context.Context, f *fixture) (any, error) { return f.db.Export(ctx, f.globex) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, dir := openTwo(t)
			ctx := t.Context()
			f := &fixture{db: db, acme: authtest.Scope(t, storetest.Acme, "alice"), globex: authtest.Scope(t, storetest.Globex, "alice")}
			put := func(scope auth.Scope, text string, chunks ...string) (store.Document, []store.Chunk) {
				var cs []store.Chunk
				for i, c := range chunks {
					cs = append(cs, store.Chunk{Text: c, Embedding: embedding(8, uint64(i))})
				}
				d, stored, _, err := db.PutDocument(ctx, scope, storetest.NewDocument(text, `{"acme":"meta"}`), cs)
				if err != nil {
					t.Fatal(err)
				}
				return d, stored
			}
			remember := func(scope auth.Scope, text string) store.Memory {
				m, err := db.PutMemory(ctx, scope, store.Memory{Text: text, Embedding: embedding(8, 7)})
				if err != nil {
					t.Fatal(err)
				}
				return m
			}
			f.a, f.ac = put(f.acme, acmeText, acmeChunk, "acme second chunk")
			f.b, f.bc = put(f.acme, "acme document b", "acme chunk of b")
			f.g, f.gc = put(f.globex, "globex document", "globex chunk")
			f.bobM = remember(f.acme.WithUser("bob"), "bob's memory")
			f.aliceM = remember(f.acme, acmeMem)
			f.aliceM2 = remember(f.acme, "alice's second memory")
			f.gMem = remember(f.globex, "globex alice's memory")

			tt.tamper(t, f, rawDB(t, dir, acmeID), rawDB(t, dir, globexID))

			got, err := tt.read(ctx, f)
			if !errors.Is(err, keyring.ErrDecrypt) {
				t.Errorf("read after tampering: got error %v, want %v", err, keyring.ErrDecrypt)
			}
			shown := fmt.Sprintf("%+v %v", got, err)
			for _, plain := range []string{acmeText, acmeChunk, acmeMem} {
				if strings.Contains(shown, plain) {
					t.Errorf("read after tampering shows %q: %s", plain, shown)
				}
			}
		})
	}
}

// copyRows copies the rows of table matching where from one raw database to
// another, column for column.
func copyRows(t *testing.T, from, to *sql.DB, table, where string) {
	t.Helper()
	rows, err := from.QueryContext(t.Context(), `SELECT * FROM `+table+` WHERE `+where)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	insert := `INSERT INTO ` + table + ` (` + strings.Join(cols, ", ") + `) VALUES (?` + strings.Repeat(", ?", len(cols)-1) + `)`
	n := 0
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		rawExec(t, to, insert, vals...)
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatalf("copy %s where %s: no rows", table, where)
	}
}

func chunkIDs(chunks []store.Chunk) []int64 {
	var ids []int64
	for _, c := range chunks {
		ids = append(ids, c.ID)
	}
	return ids
}

// TestKBVersionAfterDrop checks that a tenant's recreated database does not
// repeat a knowledge-base version handed out before, which a cache may hold.
func TestKBVersionAfterDrop(t *testing.T) {
	db, _ := openTwo(t)
	ctx := t.Context()
	scope := authtest.Scope(t, storetest.Acme, "alice")
	var before int64
	for i := range 3 {
		if _, _, _, err := db.PutDocument(ctx, scope, storetest.NewDocument(fmt.Sprint("text ", i), ""), nil); err != nil {
			t.Fatal(err)
		}
		v, err := db.KBVersion(ctx, scope)
		if err != nil {
			t.Fatal(err)
		}
		if v <= before {
			t.Fatalf("KBVersion after put %d: got %d, want more than %d", i, v, before)
		}
		before = v
	}
	if err := db.Drop(ctx, acmeIncarnation); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := db.PutDocument(ctx, scope, storetest.NewDocument("text after drop", ""), nil); err != nil {
		t.Fatal(err)
	}
	after, err := db.KBVersion(ctx, scope)
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Errorf("KBVersion after Drop and a put: got %d, want more than %d, the last before the Drop", after, before)
	}
}

// TestMemoryUsersWithSimilarNames checks that end users whose ids differ only
// slightly keep their memories apart, and that ids that could blur the
// encryption contexts are refused.
func TestMemoryUsersWithSimilarNames(t *testing.T) {
	db, _ := openTwo(t)
	ctx := t.Context()
	scope := authtest.Scope(t, storetest.Acme, "a")
	users := []string{"a", "a 1", "a\u00a01", "A", "a1"}
	for _, u := range users {
		if _, err := db.PutMemory(ctx, scope.WithUser(tenant.UserID(u)), store.Memory{Text: "note of " + u}); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range users {
		mems, err := db.Memories(ctx, scope.WithUser(tenant.UserID(u)), 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(mems) != 1 || mems[0].Text != "note of "+u {
			t.Errorf("user %q: got %+v, want only its own note", u, mems)
		}
		hits, err := db.SearchMemories(ctx, scope.WithUser(tenant.UserID(u)), "note", 10)
		if err != nil || len(hits) != 1 || hits[0].ID != mems[0].ID {
			t.Errorf("user %q searches note: got %v, %v; want its own memory only", u, hits, err)
		}
	}
	for _, bad := range []string{"a\x00b", "a\nb", strings.Repeat("u", 300)} {
		if _, err := db.PutMemory(ctx, scope.WithUser(tenant.UserID(bad)), store.Memory{Text: "x"}); err == nil {
			t.Errorf("PutMemory for user %q: got nil error", bad)
		}
		if _, err := db.Memories(ctx, scope.WithUser(tenant.UserID(bad)), 0); err == nil {
			t.Errorf("Memories for user %q: got nil error", bad)
		}
	}
}

func benchDocument(r *rand.Rand, z *rand.Zipf, chunks, dim int) (store.Document, []store.Chunk) {
	cs := make([]store.Chunk, chunks)
	var text strings.Builder
	for i := range cs {
		cs[i] = store.Chunk{Text: storetest.BenchText(z, 1000), Embedding: embedding(dim, r.Uint64())}
		text.WriteString(cs[i].Text)
	}
	return storetest.NewDocument(text.String(), `{"source":"bench"}`), cs
}

// BenchmarkPutDocument stores documents of 10 chunks of ~1,000 characters,
// each with a 384-dimensional embedding.
func BenchmarkPutDocument(b *testing.B) {
	db, scope := benchStore(b)
	ctx := b.Context()
	r := rand.New(rand.NewPCG(1, 2))
	z := rand.NewZipf(r, 1.1, 1, 50000)
	const chunks = 10
	docs := make([]store.Document, 64)
	cs := make([][]store.Chunk, len(docs))
	for i := range docs {
		docs[i], cs[i] = benchDocument(r, z, chunks, 384)
	}
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		d := docs[n%len(docs)]
		d.Text += fmt.Sprint(n) // a new text every time
		d = storetest.NewDocument(d.Text, string(d.Metadata))
		if _, _, created, err := db.PutDocument(ctx, scope, d, cs[n%len(docs)]); err != nil || !created {
			b.Fatalf("PutDocument: created %v, %v", created, err)
		}
		n++
	}
	b.ReportMetric(float64(n*chunks)/b.Elapsed().Seconds(), "chunks/s")
}

// BenchmarkSearchChunks runs three-term BM25 queries, their terms drawn from
// the text's own distribution, over 10,000 chunks of ~1,000 characters.
func BenchmarkSearchChunks(b *testing.B) {
	db, scope := benchStore(b)
	ctx := b.Context()
	r := rand.New(rand.NewPCG(3, 4))
	z := rand.NewZipf(r, 1.1, 1, 50000)
	for range 1000 {
		d, cs := benchDocument(r, z, 10, 384)
		if _, _, _, err := db.PutDocument(ctx, scope, d, cs); err != nil {
			b.Fatal(err)
		}
	}
	queries := make([]string, 100)
	for i := range queries {
		queries[i] = storetest.BenchWord(z) + " " + storetest.BenchWord(z) + " " + storetest.BenchWord(z)
	}
	matches := 0
	for _, q := range queries {
		hits, err := db.SearchChunks(ctx, scope, q, 10000)
		if err != nil {
			b.Fatal(err)
		}
		matches += len(hits)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := db.SearchChunks(ctx, scope, queries[i%len(queries)], 20); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(matches)/float64(len(queries)), "matches/query")
}

// TestIndexWrittenBeforeStemming rewrites a chunk's postings as the index
// held them before terms were stemmed (the words' own tokens): a query with
// the words as written still finds it, and a stemmed chunk is found by any
// form of its words.
func TestIndexWrittenBeforeStemming(t *testing.T) {
	dir := t.TempDir()
	k := newKeys(t, storetest.Acme, storetest.Globex)
	db := open(t, dir, 0, twoTenants, k.Ring())
	ctx := t.Context()
	acme := authtest.Scope(t, storetest.Acme, "")
	const oldText, newText = "Refunds are accepted within thirty days.", "Shipments leave daily."
	_, oldChunks := mustPut(t, db, acme, oldText)
	_, newChunks := mustPut(t, db, acme, newText)

	c, err := k.Ring().Cipher(ctx, acme.Incarnation())
	if err != nil {
		t.Fatal(err)
	}
	bl := seal.ChunkBlinder(c)
	var old []string
	for _, w := range store.Words(oldText) {
		old = append(old, bl.Token(w))
	}
	raw := rawDB(t, dir, twoTenants[storetest.Acme])
	rawExec(t, raw, `DELETE FROM chunks_fts WHERE rowid = ?`, oldChunks[0].ID)
	rawExec(t, raw, `INSERT INTO chunks_fts (rowid, terms) VALUES (?, ?)`, oldChunks[0].ID, strings.Join(old, " "))

	for _, tt := range []struct {
		query string
		want  int64 // 0: nothing
	}{
		{"refunds accepted", oldChunks[0].ID}, // the words as the old index holds them
		{"shipments", newChunks[0].ID},
		{"shipment leaving", newChunks[0].ID}, // another form of a stemmed chunk's words
		{"refund accept", 0},                  // not a word of the old chunk: re-ingest to stem it
	} {
		hits, err := db.SearchChunks(ctx, acme, tt.query, 5)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case tt.want == 0 && len(hits) != 0:
			t.Errorf("search %q: got %v, want nothing", tt.query, hits)
		case tt.want != 0 && (len(hits) != 1 || hits[0].ID != tt.want):
			t.Errorf("search %q: got %v, want chunk %d alone", tt.query, hits, tt.want)
		}
	}
}

func mustPut(t *testing.T, db *sqlite.DB, scope auth.Scope, text string) (store.Document, []store.Chunk) {
	t.Helper()
	d, c, _, err := db.PutDocument(t.Context(), scope, storetest.NewDocument(text, ""), []store.Chunk{{Text: text}})
	if err != nil {
		t.Fatal(err)
	}
	return d, c
}
