package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

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
// the user as well. The anonymous user cannot have memories: the error wraps
// kind.Invalid.
func (db *DB) PutMemory(ctx context.Context, scope auth.Scope, m store.Memory) (store.Memory, error) {
	if !scope.Valid() {
		return store.Memory{}, fmt.Errorf("put memory: %w", store.ErrNoScope)
	}
	user := scope.User()
	if err := store.CheckMemoryUser(user); err != nil {
		return store.Memory{}, fmt.Errorf("put memory: %w", err)
	}
	now := time.Unix(0, time.Now().UnixNano()).UTC()
	var id int64
	err := db.run(ctx, scope, writeTx, func(ctx context.Context, tx tenantTx) error {
		// The ciphertexts are bound to the id, so it is drawn first.
		if err := tx.QueryRow(ctx, `SELECT nextval('tenant_data.memories_id_seq')`).Scan(&id); err != nil {
			return err
		}
		tokens := seal.MemoryBlinder(tx.c, user).Tokens(m.Text)
		if _, err := tx.Exec(ctx, `
			INSERT INTO tenant_data.memories (tenant_id, id, user_id, text, embedding, length, created_ns)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			tx.id, id, user, tx.c.Seal([]byte(m.Text), seal.MemoryText(user, id)),
			seal.Embedding(tx.c, m.Embedding, seal.MemoryEmbedding(user, id)), len(tokens), now.UnixNano()); err != nil {
			return err
		}
		return insertTerms(ctx, tx, "memory_terms", "memory_id", []int64{id}, [][]string{tokens})
	})
	if err != nil {
		return store.Memory{}, fmt.Errorf("put memory: %w", err)
	}
	return store.Memory{ID: id, User: user, Text: m.Text, Embedding: m.Embedding, CreatedAt: now}, nil
}

// Memories returns the last limit memories of scope's end user, newest
// first, with their embeddings; limit <= 0 means all. The anonymous user has
// none.
func (db *DB) Memories(ctx context.Context, scope auth.Scope, limit int) ([]store.Memory, error) {
	if !scope.Valid() {
		return nil, fmt.Errorf("read memories: %w", store.ErrNoScope)
	}
	user := scope.User()
	if _, err := tenant.ParseUserID(string(user)); err != nil {
		return nil, fmt.Errorf("read memories: %w: %w", kind.Invalid, err)
	}
	mems := []store.Memory{}
	err := db.run(ctx, scope, readTx, func(ctx context.Context, tx tenantTx) error {
		if user == "" {
			return nil
		}
		rows, err := tx.Query(ctx, `
			SELECT id, text, embedding, created_ns FROM tenant_data.memories
			WHERE tenant_id = $1 AND user_id = $2 ORDER BY id DESC LIMIT $3`, tx.id, user, sqlLimit(limit))
		if err != nil {
			return err
		}
		mems, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Memory, error) {
			var (
				m               = store.Memory{User: user}
				text, embedding []byte
				created         int64
			)
			if err := row.Scan(&m.ID, &text, &embedding, &created); err != nil {
				return store.Memory{}, err
			}
			if err := openMemory(tx.c, &m, text, created); err != nil {
				return store.Memory{}, err
			}
			if m.Embedding, err = seal.OpenEmbedding(tx.c, embedding, seal.MemoryEmbedding(user, m.ID)); err != nil {
				return store.Memory{}, fmt.Errorf("memory %d embedding: %w", m.ID, err)
			}
			return m, nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read memories: %w", err)
	}
	return nonNil(mems), nil
}

// openMemory decrypts the text of m, whose ID and User are set.
func openMemory(c *keyring.Cipher, m *store.Memory, text []byte, created int64) error {
	t, err := c.Open(text, seal.MemoryText(m.User, m.ID))
	if err != nil {
		return fmt.Errorf("memory %d text: %w", m.ID, err)
	}
	m.Text = string(t)
	m.CreatedAt = unixTime(created)
	return nil
}

// searchMemories ranks one end user's ($4) memories; the corpus statistics
// are that user's memories, so nothing of another user's changes the scores.
// The tokens are keyed by the user, so no other user's posting matches; the
// join on the user says so again.
const searchMemories = `
	WITH s AS (
		SELECT count(*)::float8 AS n, greatest(coalesce(avg(length)::float8, 1), 1e-9) AS avgdl
		FROM tenant_data.memories WHERE tenant_id = $1 AND user_id = $4
	), p AS (
		SELECT t.memory_id AS id, t.tf::float8, t.length::float8, (count(*) OVER (PARTITION BY t.term))::float8 AS df
		FROM tenant_data.memory_terms t
		JOIN tenant_data.memories m ON m.tenant_id = t.tenant_id AND m.id = t.memory_id
		WHERE t.tenant_id = $1 AND m.tenant_id = $1 AND m.user_id = $4 AND t.term = ANY($2::text[])
	)
	` + bm25Rank

// SearchMemories ranks scope's end user's memories, and no one else's,
// against query with BM25 over the blind index and returns the best k, best
// first. The anonymous user has no memories.
func (db *DB) SearchMemories(ctx context.Context, scope auth.Scope, query string, k int) ([]store.Hit, error) {
	if !scope.Valid() {
		return nil, fmt.Errorf("search memories: %w", store.ErrNoScope)
	}
	user := scope.User()
	if _, err := tenant.ParseUserID(string(user)); err != nil {
		return nil, fmt.Errorf("search memories: %w: %w", kind.Invalid, err)
	}
	hits := []store.Hit{}
	err := db.run(ctx, scope, readTx, func(ctx context.Context, tx tenantTx) error {
		if user == "" {
			return nil
		}
		// The tokens are keyed by the user, so another user's memories cannot
		// match; the user_id predicate says so again.
		var err error
		hits, err = search(ctx, tx, searchMemories, seal.MemoryBlinder(tx.c, user).Query(query), k, user)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("search memories: %w", err)
	}
	return hits, nil
}
