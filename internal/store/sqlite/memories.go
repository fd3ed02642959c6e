package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/store/seal"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// PutMemory stores m for scope's end user, whatever m.User says, and returns
// it as stored, with ID and CreatedAt assigned. Text and embedding are
// encrypted, bound to the user and the id; the index holds tokens keyed by
// the user as well. The anonymous user (the empty id) cannot have memories,
// since it stands for any number of people: the error wraps kind.Invalid.
func (db *DB) PutMemory(ctx context.Context, scope auth.Scope, m store.Memory) (store.Memory, error) {
	if !scope.Valid() {
		return store.Memory{}, fmt.Errorf("put memory: %w", store.ErrNoScope)
	}
	user := scope.User()
	if err := store.CheckMemoryUser(user); err != nil {
		return store.Memory{}, fmt.Errorf("put memory: %w", err)
	}
	h, c, err := db.acquireAll(ctx, scope)
	if err != nil {
		return store.Memory{}, fmt.Errorf("put memory: %w", err)
	}
	defer db.pool.release(h)
	stored, err := putMemory(ctx, h.v, c, user, m)
	if err != nil {
		return store.Memory{}, fmt.Errorf("put memory: %w", err)
	}
	return stored, nil
}

func putMemory(ctx context.Context, tdb *tenantDB, c *keyring.Cipher, user tenant.UserID, m store.Memory) (store.Memory, error) {
	now := time.Now().UTC()
	terms := seal.MemoryBlinder(c, user).Document(m.Text)

	var id int64
	err := tdb.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		// The ciphertexts are bound to the id, so it is chosen before the
		// insert, inside the write; sealing a memory is a few microseconds.
		if err := tx.StmtContext(ctx, tdb.nextMemoryID).QueryRowContext(ctx).Scan(&id); err != nil {
			return err
		}
		text := c.Seal([]byte(m.Text), seal.MemoryText(user, id))
		embedding := seal.Embedding(c, m.Embedding, seal.MemoryEmbedding(user, id))
		if _, err := tx.StmtContext(ctx, tdb.insertMemory).ExecContext(ctx,
			id, user, text, embedding, now.Format(timeFormat)); err != nil {
			return err
		}
		_, err := tx.StmtContext(ctx, tdb.insertMemoryIndex).ExecContext(ctx, id, terms, user)
		return err
	})
	if err != nil {
		return store.Memory{}, err
	}
	return store.Memory{ID: id, User: user, Text: m.Text, Embedding: m.Embedding, CreatedAt: now}, nil
}

// Memories returns the last limit memories of scope's end user, newest
// first, with their embeddings; limit <= 0 means all. The anonymous user has
// none. Anything that does not decrypt fails the call with
// keyring.ErrDecrypt.
func (db *DB) Memories(ctx context.Context, scope auth.Scope, limit int) ([]store.Memory, error) {
	if !scope.Valid() {
		return nil, fmt.Errorf("read memories: %w", store.ErrNoScope)
	}
	user := scope.User()
	if _, err := tenant.ParseUserID(string(user)); err != nil {
		return nil, fmt.Errorf("read memories: %w: %w", kind.Invalid, err)
	}
	h, c, err := db.acquireAll(ctx, scope)
	if err != nil {
		return nil, fmt.Errorf("read memories: %w", err)
	}
	defer db.pool.release(h)
	if user == "" {
		return []store.Memory{}, nil
	}
	mems, err := memories(ctx, h.v, c, user, limit)
	if err != nil {
		return nil, fmt.Errorf("read memories: %w", err)
	}
	return mems, nil
}

func memories(ctx context.Context, tdb *tenantDB, c *keyring.Cipher, user tenant.UserID, limit int) ([]store.Memory, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	rows, err := tdb.selectMemories.QueryContext(ctx, user, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	mems := []store.Memory{}
	for rows.Next() {
		var (
			m               = store.Memory{User: user}
			text, embedding sql.RawBytes // only read by Open, which copies
			created         string
		)
		if err := rows.Scan(&m.ID, &text, &embedding, &created); err != nil {
			return nil, err
		}
		if err := openMemory(c, &m, text, created); err != nil {
			return nil, err
		}
		if m.Embedding, err = seal.OpenEmbedding(c, embedding, seal.MemoryEmbedding(user, m.ID)); err != nil {
			return nil, fmt.Errorf("memory %d embedding: %w", m.ID, err)
		}
		mems = append(mems, m)
	}
	return mems, rows.Err()
}

// openMemory decrypts the text of m, whose ID and User are set, and parses
// its creation time.
func openMemory(c *keyring.Cipher, m *store.Memory, text []byte, created string) error {
	t, err := c.Open(text, seal.MemoryText(m.User, m.ID))
	if err != nil {
		return fmt.Errorf("memory %d text: %w", m.ID, err)
	}
	m.Text = string(t)
	if m.CreatedAt, err = time.Parse(timeFormat, created); err != nil {
		return fmt.Errorf("memory %d: %w", m.ID, err)
	}
	return nil
}

// SearchMemories ranks scope's end user's memories, and no one else's,
// against query with BM25 over the blind index and returns the best k, best
// first, as SearchChunks does. The anonymous user has no memories.
func (db *DB) SearchMemories(ctx context.Context, scope auth.Scope, query string, k int) ([]store.Hit, error) {
	if !scope.Valid() {
		return nil, fmt.Errorf("search memories: %w", store.ErrNoScope)
	}
	user := scope.User()
	if _, err := tenant.ParseUserID(string(user)); err != nil {
		return nil, fmt.Errorf("search memories: %w: %w", kind.Invalid, err)
	}
	h, c, err := db.acquireAll(ctx, scope)
	if err != nil {
		return nil, fmt.Errorf("search memories: %w", err)
	}
	defer db.pool.release(h)
	if user == "" {
		return []store.Hit{}, nil
	}
	// The tokens are keyed by the user, so another user's memories cannot
	// match; the user_id filter says so again.
	hits, err := search(ctx, h.v.searchMemories, match(seal.MemoryBlinder(c, user).Query(query)), k, user)
	if err != nil {
		return nil, fmt.Errorf("search memories: %w", err)
	}
	return hits, nil
}
