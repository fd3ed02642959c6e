package sqlite_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/store/seal"
	"github.com/bulkhead-ai/bulkhead/internal/store/sqlite"
	"github.com/bulkhead-ai/bulkhead/internal/store/storetest"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// TestRows: a tenant's raw rows are all of its rows and only its own, still
// sealed, with the blind tokens its indexes hold (read back from the
// contentless FTS5 tables), so another backend can take them as they are.
func TestRows(t *testing.T) {
	ctx := t.Context()
	keys := newKeys(t, storetest.Acme, storetest.Globex)
	db := open(t, t.TempDir(), 0, twoTenants, keys.Ring())
	for _, id := range []tenant.ID{storetest.Acme, storetest.Globex} {
		put(t, db, id)
	}
	for _, id := range []tenant.ID{storetest.Acme, storetest.Globex} {
		other := storetest.Globex
		if id == other {
			other = storetest.Acme
		}
		t.Run(string(id), func(t *testing.T) {
			inc := twoTenants.Incarnation(id)
			raw, err := db.Rows(ctx, inc)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]int{"sessions": 1, "messages": 2, "secrets": 1, "documents": 1, "chunks": 2, "memories": 2, "audit": 0}
			if got := raw.Counts(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("counts %v, want %v", got, want)
			}
			c, err := keys.Ring().Cipher(ctx, authtest.Scope(t, id, "alice").Incarnation())
			if err != nil {
				t.Fatal(err)
			}
			for i, ch := range raw.Chunks {
				text, err := c.Open(ch.Text, seal.ChunkText(ch.DocumentID, ch.Ordinal))
				if err != nil {
					t.Fatalf("chunk %d does not open as %s's: %v", i, id, err)
				}
				if want := seal.ChunkBlinder(c).Tokens(string(text)); !slices.Equal(ch.Tokens, want) {
					t.Errorf("chunk %d tokens %v, want %v", i, ch.Tokens, want)
				}
			}
			for _, m := range raw.Memories {
				text, err := c.Open(m.Text, seal.MemoryText(tenant.UserID(m.UserID), m.ID))
				if err != nil {
					t.Fatalf("memory %d does not open as %s's: %v", m.ID, id, err)
				}
				if want := seal.MemoryBlinder(c, tenant.UserID(m.UserID)).Tokens(string(text)); !slices.Equal(m.Tokens, want) {
					t.Errorf("memory %d tokens %v, want %v", m.ID, m.Tokens, want)
				}
			}
			// Sealed: no clear text of its own, nothing of the other's.
			all := fmt.Sprintf("%+v", raw)
			for _, w := range []string{"zebra" + string(id), "kiwi" + string(id), string(id) + "-token", string(other)} {
				if bytes.Contains([]byte(all), []byte(w)) {
					t.Errorf("raw rows of %s hold %q", id, w)
				}
			}
		})
	}
	if _, err := db.Rows(ctx, tenant.NewIncarnation("initech", "0a0a")); err == nil {
		t.Error("Rows of an unknown tenant succeeded")
	}
}

func put(t *testing.T, db *sqlite.DB, id tenant.ID) {
	t.Helper()
	ctx := t.Context()
	scope := authtest.Scope(t, id, "alice")
	w := string(id)
	if err := db.AppendMessages(ctx, scope, "s1", []store.Message{{Role: "user", Content: "hello " + w}, {Role: "assistant", Content: "hi"}}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutSecret(ctx, scope, "crm", []byte(w+"-token")); err != nil {
		t.Fatal(err)
	}
	// A deleted document's chunk ids are taken again by the next one's
	// (SQLite reuses the largest rowid): its deleted postings must not
	// come back with them.
	gone := "deleted words " + w
	goneSum := sha256.Sum256([]byte(gone))
	doc, _, _, err := db.PutDocument(ctx, scope, store.Document{Text: gone, Hash: hex.EncodeToString(goneSum[:])}, []store.Chunk{{Text: gone}, {Text: gone + " two"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteDocument(ctx, scope, doc.ID); err != nil {
		t.Fatal(err)
	}
	text := "zebra" + w + " handbook, zebra" + w + " again"
	sum := sha256.Sum256([]byte(text))
	if _, _, _, err := db.PutDocument(ctx, scope, store.Document{Text: text, Hash: hex.EncodeToString(sum[:])},
		[]store.Chunk{{Text: text}, {Text: "more kiwi" + w}}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"alice likes kiwi" + w + " kiwi" + w, "alice is in lisbon"} {
		if _, err := db.PutMemory(ctx, scope, store.Memory{Text: m}); err != nil {
			t.Fatal(err)
		}
	}
}
