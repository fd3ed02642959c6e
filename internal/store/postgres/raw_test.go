package postgres_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/store/sqlite"
	"github.com/bulkhead-ai/bulkhead/internal/store/storetest"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// fillSQLite writes one of everything for tenant id through the SQLite
// store, as the server would, with words that name the tenant.
func fillSQLite(t *testing.T, db *sqlite.DB, id tenant.ID) {
	t.Helper()
	ctx := t.Context()
	scope := authtest.Scope(t, id, "alice")
	w := string(id)
	if err := db.AppendMessages(ctx, scope, "s1", []store.Message{
		{Role: "user", Content: "first from " + w}, {Role: "assistant", Content: "second", Meta: json.RawMessage(`{"name":"x"}`)},
		{Role: "user", Content: "third"},
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutSecret(ctx, scope, "crm", []byte(w+"-token")); err != nil {
		t.Fatal(err)
	}
	for i, text := range []string{"the " + w + " handbook zebra" + w, "shipping takes days", "invoices monthly"} {
		doc := store.Document{Text: text, Hash: hashText(text), Metadata: json.RawMessage(`{"n":1}`)}
		if _, _, _, err := db.PutDocument(ctx, scope, doc, []store.Chunk{{Text: text, Embedding: []float32{float32(i), 1}}, {Text: "more " + text}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, text := range []string{"alice likes kiwi" + w, "alice is in lisbon", "alice pays yearly"} {
		if _, err := db.PutMemory(ctx, scope, store.Memory{Text: text, Embedding: []float32{1, 2}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.AppendAudit(ctx, scope, []store.AuditRecord{{Type: "test.one", Data: json.RawMessage(`{"a":1}`)}, {Type: "test.two", Data: json.RawMessage(`{}`)}}); err != nil {
		t.Fatal(err)
	}
}

func hashText(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// openSQLite opens a SQLite store under the same keys as f's.
func openSQLite(t *testing.T, f *fixture) *sqlite.DB {
	t.Helper()
	src, err := sqlite.Open(sqlite.Options{Dir: t.TempDir(), Locator: storetest.TwoTenants, Ciphers: f.keys.Ring()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// TestImportFromSQLite copies both tenants' rows from SQLite as they are and
// reads them back through the PostgreSQL store with the same keys: the same
// export, the same audit log, the same embeddings, and searches that find
// the same things.
func TestImportFromSQLite(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	src := openSQLite(t, f)
	for _, id := range []tenant.ID{storetest.Acme, storetest.Globex} {
		fillSQLite(t, src, id)
		inc := storetest.TwoTenants.Incarnation(id)
		raw, err := src.Rows(ctx, inc)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Import(ctx, inc, raw); err != nil {
			t.Fatalf("import %s: %v", id, err)
		}
		counts, err := f.RowCounts(ctx, inc)
		if err != nil || !reflect.DeepEqual(counts, raw.Counts()) {
			t.Fatalf("%s: row counts %v (%v), want %v", id, counts, err, raw.Counts())
		}
		// Importing again is refused: it would double the rows.
		if err := f.Import(ctx, inc, raw); err == nil || !strings.Contains(err.Error(), "already holds rows") {
			t.Fatalf("second import of %s: %v, want a refusal", id, err)
		}
	}
	for _, id := range []tenant.ID{storetest.Acme, storetest.Globex} {
		t.Run(string(id), func(t *testing.T) {
			scope := authtest.Scope(t, id, "alice")
			same(t, "export", func(b backend) (any, error) { return b.Export(ctx, scope) }, src, f)
			same(t, "audit", func(b backend) (any, error) { return b.AuditRecords(ctx, scope, 0, 0) }, src, f)
			same(t, "secrets", func(b backend) (any, error) { return b.Secrets(ctx, scope) }, src, f)
			same(t, "embeddings", func(b backend) (any, error) {
				cs, err := b.ChunkEmbeddings(ctx, scope)
				for i := range cs {
					cs[i].ID = 0 // drawn anew: nothing is bound to it
				}
				return cs, err
			}, src, f)
			same(t, "memory search", func(b backend) (any, error) {
				hits, err := b.SearchMemories(ctx, scope, "kiwi"+string(id), 5)
				ids := make([]int64, len(hits))
				for i, h := range hits {
					ids[i] = h.ID
				}
				return ids, err
			}, src, f)
			same(t, "chunk search", func(b backend) (any, error) {
				hits, err := b.SearchChunks(ctx, scope, "zebra"+string(id), 5)
				if err != nil {
					return nil, err
				}
				ids := make([]int64, len(hits))
				for i, h := range hits {
					ids[i] = h.ID
				}
				cs, err := b.Chunks(ctx, scope, ids)
				texts := make([]string, len(cs))
				for i, c := range cs {
					texts[i] = c.Text
				}
				slices.Sort(texts)
				if len(texts) == 0 {
					return nil, fmt.Errorf("no hit")
				}
				return texts, err
			}, src, f)
			// A memory stored after the import draws an id past the
			// imported ones.
			if _, err := f.PutMemory(ctx, scope, store.Memory{Text: "after the move"}); err != nil {
				t.Errorf("put a memory after the import: %v", err)
			}
		})
	}
}

// backend is what TestImportFromSQLite reads from both stores.
type backend interface {
	Export(ctx context.Context, scope auth.Scope) (store.Export, error)
	AuditRecords(ctx context.Context, scope auth.Scope, after int64, limit int) ([]store.AuditRecord, error)
	Secrets(ctx context.Context, scope auth.Scope) ([]store.Secret, error)
	ChunkEmbeddings(ctx context.Context, scope auth.Scope) ([]store.Chunk, error)
	SearchMemories(ctx context.Context, scope auth.Scope, query string, k int) ([]store.Hit, error)
	SearchChunks(ctx context.Context, scope auth.Scope, query string, k int) ([]store.Hit, error)
	Chunks(ctx context.Context, scope auth.Scope, ids []int64) ([]store.Chunk, error)
}

// same checks that read gives equal results (compared as JSON, with
// embeddings) from the SQLite source and the PostgreSQL copy.
func same(t *testing.T, what string, read func(backend) (any, error), src *sqlite.DB, dst *fixture) {
	t.Helper()
	want, err := read(src)
	if err != nil {
		t.Fatalf("%s from SQLite: %v", what, err)
	}
	got, err := read(dst.DB)
	if err != nil {
		t.Fatalf("%s from PostgreSQL: %v", what, err)
	}
	if !reflect.DeepEqual(deep(t, got), deep(t, want)) {
		t.Errorf("%s differs:\n got %s\nwant %s", what, deep(t, got), deep(t, want))
	}
}

// deep renders v as JSON, embeddings included (they are json:"-").
func deep(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if cs, ok := v.([]store.Chunk); ok {
		for _, c := range cs {
			b = fmt.Appendf(b, " %v", c.Embedding)
		}
	}
	return string(b)
}

// TestImportedCiphertextStaysBound: another tenant's rows imported under a
// tenant's storage do not open with that tenant's key, as if they had been
// moved by hand; the copy is only ever of a tenant into its own storage.
func TestImportedCiphertextStaysBound(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	src := openSQLite(t, f)
	fillSQLite(t, src, storetest.Globex)
	raw, err := src.Rows(ctx, storetest.TwoTenants.Incarnation(storetest.Globex))
	if err != nil {
		t.Fatal(err)
	}
	acme := storetest.TwoTenants.Incarnation(storetest.Acme)
	if err := f.Import(ctx, acme, raw); err != nil {
		t.Fatal(err)
	}
	scope := authtest.Scope(t, storetest.Acme, "alice")
	if _, err := f.Export(ctx, scope); err == nil {
		t.Error("acme's key opened globex's rows")
	}
	if s, err := f.Secrets(ctx, scope); err == nil && len(s) > 0 {
		t.Errorf("acme's key opened globex's secrets: %v", s)
	}
	// And globex, whose storage holds nothing, sees none of it.
	if e, err := f.Export(ctx, authtest.Scope(t, storetest.Globex, "alice")); err != nil || len(e.Sessions)+len(e.Documents)+len(e.Memories) != 0 {
		t.Errorf("globex export after an import into acme: %+v, %v", e, err)
	}
}
