package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/store/seal"
)

// PutDocument stores doc and its chunks, with the chunks' blind index rows,
// in one transaction, and returns them as stored, as the SQLite backend's
// PutDocument does: doc.ID is assigned when empty, one the tenant uses for
// another text is an error wrapping kind.Conflict, a malformed one, hash or
// metadata an error wrapping kind.Invalid; chunk ids are assigned in order.
// If the tenant already has a document with doc.Hash, nothing is written and
// that document is returned, with its chunks and created false.
func (db *DB) PutDocument(ctx context.Context, scope auth.Scope, doc store.Document, chunks []store.Chunk) (store.Document, []store.Chunk, bool, error) {
	if !scope.Valid() {
		return store.Document{}, nil, false, fmt.Errorf("put document: %w", store.ErrNoScope)
	}
	if err := store.CheckDocument(doc); err != nil {
		return store.Document{}, nil, false, fmt.Errorf("put document: %w", err)
	}
	var (
		stored  store.Document
		out     []store.Chunk
		created bool
	)
	err := db.run(ctx, scope, writeTx, func(ctx context.Context, tx tenantTx) error {
		var err error
		stored, out, created, err = putDocument(ctx, tx, doc, chunks)
		return err
	})
	if err != nil {
		return store.Document{}, nil, false, fmt.Errorf("put document: %w", err)
	}
	return stored, out, created, nil
}

func putDocument(ctx context.Context, tx tenantTx, doc store.Document, chunks []store.Chunk) (store.Document, []store.Chunk, bool, error) {
	now := time.Now().UTC()
	if doc.ID == "" {
		doc.ID = store.NewDocumentID()
	}
	if len(doc.Metadata) == 0 {
		doc.Metadata = nil
	}
	doc.Chunks = len(chunks)
	doc.Size = len(doc.Text)
	doc.CreatedAt = time.Unix(0, now.UnixNano()).UTC()
	c := tx.c
	mac := seal.DocumentHashMAC(c, doc.Hash)

	existing := func() (store.Document, []store.Chunk, bool, error) {
		var id string
		err := tx.QueryRow(ctx, `SELECT id FROM tenant_data.documents WHERE tenant_id = $1 AND hash_mac = $2`, tx.id, mac).Scan(&id)
		if err != nil {
			return store.Document{}, nil, false, err
		}
		d, err := readDocument(ctx, tx, id)
		if err != nil {
			return store.Document{}, nil, false, err
		}
		dc, err := documentChunks(ctx, tx, id)
		return d, dc, false, err
	}
	if d, dc, created, err := existing(); !errors.Is(err, pgx.ErrNoRows) {
		return d, dc, created, err
	}

	var meta []byte
	if doc.Metadata != nil {
		meta = c.Seal(doc.Metadata, seal.DocumentMetadata(doc.ID))
	}
	// A concurrent put of the same text waits here for the first one's
	// commit, then inserts nothing and returns what the first stored.
	tag, err := tx.Exec(ctx, `
		INSERT INTO tenant_data.documents (tenant_id, id, hash_mac, hash, text, metadata, chunks, created_ns)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
		tx.id, doc.ID, mac, c.Seal([]byte(doc.Hash), seal.DocumentHash(doc.ID)),
		c.Seal([]byte(doc.Text), seal.DocumentText(doc.ID)), meta, doc.Chunks, now.UnixNano())
	if err != nil {
		return store.Document{}, nil, false, err
	}
	if tag.RowsAffected() == 0 {
		d, dc, created, err := existing()
		if errors.Is(err, pgx.ErrNoRows) {
			return store.Document{}, nil, false, fmt.Errorf("%w: document %s holds another text", kind.Conflict, doc.ID)
		}
		return d, dc, created, err
	}

	bl := seal.ChunkBlinder(c)
	texts := make([][]byte, len(chunks))
	embeddings := make([][]byte, len(chunks))
	lengths := make([]int32, len(chunks))
	tokens := make([][]string, len(chunks))
	var total int64
	out := make([]store.Chunk, len(chunks))
	for i, ch := range chunks {
		texts[i] = c.Seal([]byte(ch.Text), seal.ChunkText(doc.ID, i))
		embeddings[i] = seal.Embedding(c, ch.Embedding, seal.ChunkEmbedding(doc.ID, i))
		tokens[i] = bl.Tokens(ch.Text)
		lengths[i] = int32(len(tokens[i]))
		total += int64(len(tokens[i]))
		out[i] = store.Chunk{DocumentID: doc.ID, Ordinal: i, Text: ch.Text, Embedding: ch.Embedding}
	}
	if len(chunks) > 0 {
		// Identities are drawn in the order of the rows, which is the
		// ordinals'.
		rows, err := tx.Query(ctx, `
			INSERT INTO tenant_data.chunks (tenant_id, document_id, ordinal, text, embedding, length)
			SELECT $1, $2, c.n - 1, c.text, c.embedding, c.length
			FROM unnest($3::bytea[], $4::bytea[], $5::integer[]) WITH ORDINALITY AS c (text, embedding, length, n)
			ORDER BY c.n
			RETURNING ordinal, id`, tx.id, doc.ID, texts, embeddings, lengths)
		if err != nil {
			return store.Document{}, nil, false, err
		}
		var ordinal int
		var id int64
		_, err = pgx.ForEachRow(rows, []any{&ordinal, &id}, func() error {
			out[ordinal].ID = id
			return nil
		})
		if err != nil {
			return store.Document{}, nil, false, err
		}
		ids := make([]int64, len(out))
		for i, ch := range out {
			ids[i] = ch.ID
		}
		if err := insertTerms(ctx, tx, "chunk_terms", "chunk_id", ids, tokens); err != nil {
			return store.Document{}, nil, false, err
		}
	}
	if err := bumpKnowledge(ctx, tx, int64(len(chunks)), total); err != nil {
		return store.Document{}, nil, false, err
	}
	return doc, out, true, nil
}

// insertTerms writes the postings of the rows ids, whose sorted tokens are
// tokens, into table (chunk_terms or memory_terms), whose idColumn names the
// row: one row per distinct token, with its frequency and the row's length.
func insertTerms(ctx context.Context, tx tenantTx, table, idColumn string, ids []int64, tokens [][]string) error {
	var (
		terms        []string
		postIDs      []int64
		tfs, lengths []int32
	)
	for i, id := range ids {
		toks := tokens[i]
		for j := 0; j < len(toks); {
			k := j
			for k < len(toks) && toks[k] == toks[j] {
				k++
			}
			terms, postIDs = append(terms, toks[j]), append(postIDs, id)
			tfs, lengths = append(tfs, int32(k-j)), append(lengths, int32(len(toks)))
			j = k
		}
	}
	if len(terms) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `INSERT INTO tenant_data.`+table+` (tenant_id, term, `+idColumn+`, tf, length)
		SELECT $1, t.term, t.id, t.tf, t.length
		FROM unnest($2::text[], $3::bigint[], $4::integer[], $5::integer[]) AS t (term, id, tf, length)`,
		tx.id, terms, postIDs, tfs, lengths)
	return err
}

// bumpKnowledge moves the knowledge-base version past both its last value and
// the current time, so that a tenant dropped and stored again does not hand
// out a version some cache saw before, and adds chunks and terms to the
// corpus statistics.
func bumpKnowledge(ctx context.Context, tx tenantTx, chunks, terms int64) error {
	_, err := tx.Exec(ctx, `
		INSERT INTO tenant_data.knowledge AS k (tenant_id, version, chunks, terms) VALUES ($1, $2, $3, $4)
		ON CONFLICT (tenant_id) DO UPDATE SET version = greatest(k.version + 1, excluded.version),
			chunks = k.chunks + excluded.chunks, terms = k.terms + excluded.terms`,
		tx.id, time.Now().UnixNano(), chunks, terms)
	return err
}

// Document returns scope's tenant's document id, with its text. An id the
// tenant does not have, including another tenant's, is an error wrapping
// store.ErrNotFound.
func (db *DB) Document(ctx context.Context, scope auth.Scope, id string) (store.Document, error) {
	if !scope.Valid() {
		return store.Document{}, fmt.Errorf("read document: %w", store.ErrNoScope)
	}
	var d store.Document
	err := db.run(ctx, scope, readTx, func(ctx context.Context, tx tenantTx) error {
		if !store.ValidDocumentID(id) {
			return store.ErrNotFound
		}
		var err error
		d, err = readDocument(ctx, tx, id)
		return err
	})
	if err != nil {
		return store.Document{}, fmt.Errorf("read document: %w", err)
	}
	return d, nil
}

const documentColumns = `id, hash, text, metadata, chunks, created_ns, octet_length(text)`

func readDocument(ctx context.Context, tx tenantTx, id string) (store.Document, error) {
	rows, err := tx.Query(ctx, `SELECT `+documentColumns+` FROM tenant_data.documents WHERE tenant_id = $1 AND id = $2`, tx.id, id)
	if err != nil {
		return store.Document{}, err
	}
	d, err := pgx.CollectExactlyOneRow(rows, documentRow(tx.c))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Document{}, store.ErrNotFound
	}
	return d, err
}

// documentRow decrypts a row of documentColumns. A NULL text is not read (a
// listing); a NULL metadata is none; the last column is the length of the
// sealed text.
func documentRow(c *keyring.Cipher) pgx.RowToFunc[store.Document] {
	return func(row pgx.CollectableRow) (store.Document, error) {
		var (
			d                store.Document
			hash, text, meta []byte
			created          int64
			sealed           int
		)
		if err := row.Scan(&d.ID, &hash, &text, &meta, &d.Chunks, &created, &sealed); err != nil {
			return store.Document{}, err
		}
		d.CreatedAt = unixTime(created)
		d.Size = c.OpenedLen(sealed)
		h, err := c.Open(hash, seal.DocumentHash(d.ID))
		if err != nil {
			return store.Document{}, fmt.Errorf("document %s hash: %w", d.ID, err)
		}
		d.Hash = string(h)
		if text != nil {
			t, err := c.Open(text, seal.DocumentText(d.ID))
			if err != nil {
				return store.Document{}, fmt.Errorf("document %s text: %w", d.ID, err)
			}
			d.Text = string(t)
		}
		if meta != nil {
			if d.Metadata, err = c.Open(meta, seal.DocumentMetadata(d.ID)); err != nil {
				return store.Document{}, fmt.Errorf("document %s metadata: %w", d.ID, err)
			}
		}
		return d, nil
	}
}

// documentChunks returns the chunks of document doc, with text and
// embedding, in order.
func documentChunks(ctx context.Context, tx tenantTx, doc string) ([]store.Chunk, error) {
	rows, err := tx.Query(ctx, `
		SELECT id, ordinal, text, embedding FROM tenant_data.chunks
		WHERE tenant_id = $1 AND document_id = $2 ORDER BY ordinal`, tx.id, doc)
	if err != nil {
		return nil, err
	}
	chunks, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Chunk, error) {
		var (
			ch              = store.Chunk{DocumentID: doc}
			text, embedding []byte
		)
		if err := row.Scan(&ch.ID, &ch.Ordinal, &text, &embedding); err != nil {
			return store.Chunk{}, err
		}
		t, err := tx.c.Open(text, seal.ChunkText(doc, ch.Ordinal))
		if err != nil {
			return store.Chunk{}, fmt.Errorf("chunk %d text: %w", ch.ID, err)
		}
		ch.Text = string(t)
		if ch.Embedding, err = seal.OpenEmbedding(tx.c, embedding, seal.ChunkEmbedding(doc, ch.Ordinal)); err != nil {
			return store.Chunk{}, fmt.Errorf("chunk %d embedding: %w", ch.ID, err)
		}
		return ch, nil
	})
	return nonNil(chunks), err
}

// DeleteDocument removes scope's tenant's document id with its chunks, their
// embeddings and their index rows, in one transaction. An id the tenant does
// not have, including another tenant's, is an error wrapping
// store.ErrNotFound.
func (db *DB) DeleteDocument(ctx context.Context, scope auth.Scope, id string) error {
	if !scope.Valid() {
		return fmt.Errorf("delete document: %w", store.ErrNoScope)
	}
	err := db.run(ctx, scope, writeTx, func(ctx context.Context, tx tenantTx) error {
		if !store.ValidDocumentID(id) {
			return store.ErrNotFound
		}
		var chunks, terms int64
		if err := tx.QueryRow(ctx, `
			SELECT count(*), coalesce(sum(length), 0) FROM tenant_data.chunks
			WHERE tenant_id = $1 AND document_id = $2`, tx.id, id).Scan(&chunks, &terms); err != nil {
			return err
		}
		// The chunks and their index rows go with the document (cascade).
		tag, err := tx.Exec(ctx, `DELETE FROM tenant_data.documents WHERE tenant_id = $1 AND id = $2`, tx.id, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		return bumpKnowledge(ctx, tx, -chunks, -terms)
	})
	if err != nil {
		return fmt.Errorf("delete document: %w", err)
	}
	return nil
}

// Documents returns up to limit (<= 0: all) of scope's tenant's documents,
// without their text, newest first, starting after the document with id
// after ("": from the newest). An after the tenant does not have, including
// another tenant's id, is an error wrapping store.ErrNotFound.
func (db *DB) Documents(ctx context.Context, scope auth.Scope, after string, limit int) ([]store.Document, error) {
	if !scope.Valid() {
		return nil, fmt.Errorf("read documents: %w", store.ErrNoScope)
	}
	var docs []store.Document
	err := db.run(ctx, scope, readTx, func(ctx context.Context, tx tenantTx) error {
		// The cursor: the place of the document after, in the listing's order.
		createdNS, seq := int64(math.MaxInt64), int64(math.MaxInt64)
		if after != "" {
			if !store.ValidDocumentID(after) {
				return store.ErrNotFound
			}
			err := tx.QueryRow(ctx, `SELECT created_ns, seq FROM tenant_data.documents WHERE tenant_id = $1 AND id = $2`,
				tx.id, after).Scan(&createdNS, &seq)
			if errors.Is(err, pgx.ErrNoRows) {
				return store.ErrNotFound
			}
			if err != nil {
				return err
			}
		}
		var lim *int // NULL: no limit
		if limit > 0 {
			lim = &limit
		}
		var err error
		docs, err = documents(ctx, tx, `SELECT id, hash, NULL, metadata, chunks, created_ns, octet_length(text) FROM tenant_data.documents
			WHERE tenant_id = $1 AND (created_ns, seq) < ($2, $3) ORDER BY created_ns DESC, seq DESC LIMIT $4`,
			createdNS, seq, lim)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read documents: %w", err)
	}
	return docs, nil
}

// documents runs query, which takes the tenant id, then args, and selects
// documentColumns, and decrypts the rows.
func documents(ctx context.Context, tx tenantTx, query string, args ...any) ([]store.Document, error) {
	rows, err := tx.Query(ctx, query, append([]any{tx.id}, args...)...)
	if err != nil {
		return nil, err
	}
	docs, err := pgx.CollectRows(rows, documentRow(tx.c))
	return nonNil(docs), err
}

// Chunks returns scope's tenant's chunks ids, with text, document id and
// ordinal but no embedding, in the order of ids. Ids the tenant does not have
// are skipped.
func (db *DB) Chunks(ctx context.Context, scope auth.Scope, ids []int64) ([]store.Chunk, error) {
	if !scope.Valid() {
		return nil, fmt.Errorf("read chunks: %w", store.ErrNoScope)
	}
	var chunks []store.Chunk
	err := db.run(ctx, scope, readTx, func(ctx context.Context, tx tenantTx) error {
		rows, err := tx.Query(ctx, `
			SELECT id, document_id, ordinal, text FROM tenant_data.chunks
			WHERE tenant_id = $1 AND id = ANY($2)`, tx.id, ids)
		if err != nil {
			return err
		}
		found := make(map[int64]store.Chunk, len(ids))
		var (
			ch   store.Chunk
			text []byte
		)
		_, err = pgx.ForEachRow(rows, []any{&ch.ID, &ch.DocumentID, &ch.Ordinal, &text}, func() error {
			t, err := tx.c.Open(text, seal.ChunkText(ch.DocumentID, ch.Ordinal))
			if err != nil {
				return fmt.Errorf("chunk %d text: %w", ch.ID, err)
			}
			found[ch.ID] = store.Chunk{ID: ch.ID, DocumentID: ch.DocumentID, Ordinal: ch.Ordinal, Text: string(t)}
			return nil
		})
		if err != nil {
			return err
		}
		chunks = make([]store.Chunk, 0, len(found))
		for _, id := range ids {
			if ch, ok := found[id]; ok {
				chunks = append(chunks, ch)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read chunks: %w", err)
	}
	return chunks, nil
}

// ChunkEmbeddings returns the ID and Embedding, and nothing else, of every
// chunk of scope's tenant that has an embedding, ordered by ID.
func (db *DB) ChunkEmbeddings(ctx context.Context, scope auth.Scope) ([]store.Chunk, error) {
	if !scope.Valid() {
		return nil, fmt.Errorf("read chunk embeddings: %w", store.ErrNoScope)
	}
	var chunks []store.Chunk
	err := db.run(ctx, scope, readTx, func(ctx context.Context, tx tenantTx) error {
		rows, err := tx.Query(ctx, `
			SELECT id, document_id, ordinal, embedding FROM tenant_data.chunks
			WHERE tenant_id = $1 AND embedding IS NOT NULL ORDER BY id`, tx.id)
		if err != nil {
			return err
		}
		chunks, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Chunk, error) {
			var (
				id        int64
				doc       string
				ordinal   int
				embedding []byte
			)
			if err := row.Scan(&id, &doc, &ordinal, &embedding); err != nil {
				return store.Chunk{}, err
			}
			v, err := seal.OpenEmbedding(tx.c, embedding, seal.ChunkEmbedding(doc, ordinal))
			if err != nil {
				return store.Chunk{}, fmt.Errorf("chunk %d embedding: %w", id, err)
			}
			return store.Chunk{ID: id, Embedding: v}, nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read chunk embeddings: %w", err)
	}
	return nonNil(chunks), nil
}

// BM25 as SQLite's FTS5 computes it, so both backends rank alike: for each
// query term t in a row of length dl, with N rows of average length avgdl of
// which n hold t,
//
//	idf(t) · tf·(k1+1) / (tf + k1·(1 − b + b·dl/avgdl)),  idf(t) = ln((N − n + 0.5)/(n + 0.5))
//
// summed over the terms, with idf at least 1e-6, k1 = 1.2 and b = 0.75 (FTS5's
// constants). $1 is the tenant, $2 the query's tokens, $3 the limit; the
// statistics come from the stats CTE each query supplies.

// bm25Score is the BM25 sum over the matching postings p, each with its
// document frequency df, given the corpus statistics s (k1 = 1.2, b = 0.75).
// Every operand is float8, so no step falls back to numeric arithmetic,
// which is many times slower: the CTEs cast df, tf, length and the
// statistics, and an untyped literal then takes float8.
const bm25Score = `sum(
		greatest(ln((s.n - p.df + 0.5) / (p.df + 0.5)), 1e-6)
		* p.tf * 2.2 / (p.tf + 1.2 * (0.25 + 0.75 * p.length / s.avgdl))
	)`

// searchChunks ranks the tenant's chunks from their postings alone, read
// once through the primary key (tenant_id, term, chunk_id); the corpus
// statistics are the tenant's knowledge row. The query's tokens are
// distinct (seal.Blinder.Query).
const searchChunks = `
	WITH s AS (
		SELECT chunks::float8 AS n, greatest(terms::float8 / greatest(chunks, 1), 1e-9) AS avgdl
		FROM tenant_data.knowledge WHERE tenant_id = $1
	), p AS (
		SELECT chunk_id AS id, tf::float8, length::float8, (count(*) OVER (PARTITION BY term))::float8 AS df
		FROM tenant_data.chunk_terms WHERE tenant_id = $1 AND term = ANY($2::text[])
	)
	` + bm25Rank

// bm25Rank ranks the rows of the postings p with the statistics s and keeps
// the best $3, ties broken by id, as FTS5 does by rowid.
const bm25Rank = `SELECT p.id, ` + bm25Score + ` AS score
	FROM p CROSS JOIN s
	GROUP BY p.id ORDER BY score DESC, p.id LIMIT $3`

// SearchChunks ranks scope's tenant's chunks against query with BM25 over the
// tenant's own blind index and returns the best k, best first; higher Score
// is better. A query without terms (see store.Terms), or k <= 0, finds
// nothing; only the first seal.MaxQueryTerms distinct terms of a query count.
func (db *DB) SearchChunks(ctx context.Context, scope auth.Scope, query string, k int) ([]store.Hit, error) {
	if !scope.Valid() {
		return nil, fmt.Errorf("search chunks: %w", store.ErrNoScope)
	}
	var hits []store.Hit
	err := db.run(ctx, scope, readTx, func(ctx context.Context, tx tenantTx) error {
		var err error
		hits, err = search(ctx, tx, searchChunks, seal.ChunkBlinder(tx.c).Query(query), k)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("search chunks: %w", err)
	}
	return hits, nil
}

// search runs query, a BM25 ranking taking the tenant, the tokens, the limit
// and then args, and returns its (id, score) rows.
func search(ctx context.Context, tx tenantTx, query string, tokens []string, k int, args ...any) ([]store.Hit, error) {
	hits := []store.Hit{}
	if len(tokens) == 0 || k <= 0 {
		return hits, nil
	}
	rows, err := tx.Query(ctx, query, append([]any{tx.id, tokens, k}, args...)...)
	if err != nil {
		return nil, err
	}
	var h store.Hit
	_, err = pgx.ForEachRow(rows, []any{&h.ID, &h.Score}, func() error {
		hits = append(hits, h)
		return nil
	})
	return hits, err
}

// KBVersion returns the version of scope's tenant's knowledge base. It grows
// with every PutDocument that writes and every DeleteDocument that removes,
// and never repeats for a tenant's storage, even across a Drop (it jumps to
// at least the current Unix time in nanoseconds).
func (db *DB) KBVersion(ctx context.Context, scope auth.Scope) (int64, error) {
	if !scope.Valid() {
		return 0, fmt.Errorf("read knowledge base version: %w", store.ErrNoScope)
	}
	var v int64
	err := db.run(ctx, scope, readTx, func(ctx context.Context, tx tenantTx) error {
		err := tx.QueryRow(ctx, `SELECT version FROM tenant_data.knowledge WHERE tenant_id = $1`, tx.id).Scan(&v)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // nothing stored yet
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("read knowledge base version: %w", err)
	}
	return v, nil
}

// nonNil returns s, or an empty slice for nil: results are [] in JSON.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
