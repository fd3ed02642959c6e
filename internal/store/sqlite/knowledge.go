package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/store/seal"
)

// PutDocument stores doc and its chunks, with the chunks' blind index rows,
// in one transaction, and returns them as stored. doc.ID is assigned ("doc_"
// and 24 hex digits) when empty; a given one must be 1-128 of
// [A-Za-z0-9._:-], and one the tenant already uses for another text is an
// error wrapping kind.Conflict. doc.Hash must be the hex SHA-256 of doc.Text
// and doc.Metadata, when set, JSON; otherwise the error wraps kind.Invalid.
// doc.Chunks and doc.CreatedAt are set by the store, as are each chunk's
// DocumentID and Ordinal (its position in chunks) and ID (assigned in order).
//
// If the tenant already has a document with doc.Hash, nothing is written and
// that document is returned, with its chunks and created false, so ingesting
// a text again is a no-op. Hashes are compared per tenant: another tenant's
// identical text is another document.
func (db *DB) PutDocument(ctx context.Context, scope auth.Scope, doc store.Document, chunks []store.Chunk) (store.Document, []store.Chunk, bool, error) {
	if !scope.Valid() {
		return store.Document{}, nil, false, fmt.Errorf("put document: %w", store.ErrNoScope)
	}
	if err := store.CheckDocument(doc); err != nil {
		return store.Document{}, nil, false, fmt.Errorf("put document: %w", err)
	}
	h, c, err := db.acquireAll(ctx, scope)
	if err != nil {
		return store.Document{}, nil, false, fmt.Errorf("put document: %w", err)
	}
	defer db.pool.release(h)
	stored, out, created, err := putDocument(ctx, h.v, c, doc, chunks)
	if err != nil {
		return store.Document{}, nil, false, fmt.Errorf("put document: %w", err)
	}
	return stored, out, created, nil
}

// sealedChunk is a chunk as stored: text and embedding encrypted, terms
// blinded.
type sealedChunk struct {
	text, embedding []byte // embedding nil → NULL
	terms           string
}

func putDocument(ctx context.Context, tdb *tenantDB, c *keyring.Cipher, doc store.Document, chunks []store.Chunk) (store.Document, []store.Chunk, bool, error) {
	now := time.Now().UTC()
	if doc.ID == "" {
		doc.ID = store.NewDocumentID()
	}
	if len(doc.Metadata) == 0 {
		doc.Metadata = nil
	}
	doc.Chunks = len(chunks)
	doc.Size = len(doc.Text)
	doc.CreatedAt = now

	// Encrypt and blind before queueing for the write lock: neither needs it.
	mac := seal.DocumentHashMAC(c, doc.Hash)
	text := c.Seal([]byte(doc.Text), seal.DocumentText(doc.ID))
	hash := c.Seal([]byte(doc.Hash), seal.DocumentHash(doc.ID))
	var meta []byte
	if doc.Metadata != nil {
		meta = c.Seal(doc.Metadata, seal.DocumentMetadata(doc.ID))
	}
	bl := seal.ChunkBlinder(c)
	sealed := make([]sealedChunk, len(chunks))
	out := make([]store.Chunk, len(chunks))
	for i, ch := range chunks {
		sealed[i] = sealedChunk{
			text:      c.Seal([]byte(ch.Text), seal.ChunkText(doc.ID, i)),
			embedding: seal.Embedding(c, ch.Embedding, seal.ChunkEmbedding(doc.ID, i)),
			terms:     bl.Document(ch.Text),
		}
		out[i] = store.Chunk{DocumentID: doc.ID, Ordinal: i, Text: ch.Text, Embedding: ch.Embedding}
	}

	var (
		existing  store.Document
		existingC []store.Chunk
		found     bool
	)
	err := tdb.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var id string
		err := tx.StmtContext(ctx, tdb.selectDocumentIDByMAC).QueryRowContext(ctx, mac).Scan(&id)
		switch {
		case err == nil:
			found = true
			if existing, err = readDocument(ctx, tx.StmtContext(ctx, tdb.selectDocument), c, id); err != nil {
				return err
			}
			existingC, err = documentChunks(ctx, tx.StmtContext(ctx, tdb.selectDocumentChunks), c, id)
			return err
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		var one int
		err = tx.StmtContext(ctx, tdb.selectDocumentExists).QueryRowContext(ctx, doc.ID).Scan(&one)
		switch {
		case err == nil:
			return fmt.Errorf("%w: document %s holds another text", kind.Conflict, doc.ID)
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}

		if _, err := tx.StmtContext(ctx, tdb.insertDocument).ExecContext(ctx,
			doc.ID, mac, hash, text, meta, doc.Chunks, now.Format(timeFormat)); err != nil {
			return err
		}
		insertChunk := tx.StmtContext(ctx, tdb.insertChunk)
		insertIndex := tx.StmtContext(ctx, tdb.insertChunkIndex)
		for i, s := range sealed {
			res, err := insertChunk.ExecContext(ctx, doc.ID, i, s.text, s.embedding)
			if err != nil {
				return err
			}
			if out[i].ID, err = res.LastInsertId(); err != nil {
				return err
			}
			if _, err := insertIndex.ExecContext(ctx, out[i].ID, s.terms); err != nil {
				return err
			}
		}
		return bumpKBVersion(ctx, tx, tdb)
	})
	switch {
	case err != nil:
		return store.Document{}, nil, false, err
	case found:
		return existing, existingC, false, nil
	}
	return doc, out, true, nil
}

// bumpKBVersion moves the knowledge-base version past both its last value and
// the current time, so that a database recreated after a Drop does not hand
// out a version some cache saw before.
func bumpKBVersion(ctx context.Context, tx *sql.Tx, tdb *tenantDB) error {
	_, err := tx.StmtContext(ctx, tdb.bumpKBVersion).ExecContext(ctx, time.Now().UnixNano())
	return err
}

// Document returns scope's tenant's document id, with its text. An id the
// tenant does not have, including another tenant's, is an error wrapping
// store.ErrNotFound. Anything that does not decrypt fails the call with
// keyring.ErrDecrypt.
func (db *DB) Document(ctx context.Context, scope auth.Scope, id string) (store.Document, error) {
	if !scope.Valid() {
		return store.Document{}, fmt.Errorf("read document: %w", store.ErrNoScope)
	}
	h, c, err := db.acquireAll(ctx, scope)
	if err != nil {
		return store.Document{}, fmt.Errorf("read document: %w", err)
	}
	defer db.pool.release(h)
	if !store.ValidDocumentID(id) {
		return store.Document{}, fmt.Errorf("read document: %w", store.ErrNotFound)
	}
	d, err := readDocument(ctx, h.v.selectDocument, c, id)
	if err != nil {
		return store.Document{}, fmt.Errorf("read document: %w", err)
	}
	return d, nil
}

func readDocument(ctx context.Context, stmt *sql.Stmt, c *keyring.Cipher, id string) (store.Document, error) {
	var (
		hash, text, meta []byte
		chunks, sealed   int
		created          string
	)
	err := stmt.QueryRowContext(ctx, id).Scan(&hash, &text, &meta, &chunks, &created, &sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Document{}, store.ErrNotFound
	}
	if err != nil {
		return store.Document{}, err
	}
	return openDocument(c, id, hash, text, meta, chunks, created, sealed)
}

// openDocument decrypts stored document id. A nil text is not read (a
// listing); a nil meta is NULL; sealed is the length of the sealed text.
func openDocument(c *keyring.Cipher, id string, hash, text, meta []byte, chunks int, created string, sealed int) (store.Document, error) {
	d := store.Document{ID: id, Chunks: chunks, Size: c.OpenedLen(sealed)}
	h, err := c.Open(hash, seal.DocumentHash(id))
	if err != nil {
		return store.Document{}, fmt.Errorf("document %s hash: %w", id, err)
	}
	d.Hash = string(h)
	if text != nil {
		t, err := c.Open(text, seal.DocumentText(id))
		if err != nil {
			return store.Document{}, fmt.Errorf("document %s text: %w", id, err)
		}
		d.Text = string(t)
	}
	if meta != nil {
		if d.Metadata, err = c.Open(meta, seal.DocumentMetadata(id)); err != nil {
			return store.Document{}, fmt.Errorf("document %s metadata: %w", id, err)
		}
	}
	if d.CreatedAt, err = time.Parse(timeFormat, created); err != nil {
		return store.Document{}, fmt.Errorf("document %s: %w", id, err)
	}
	return d, nil
}

// documentChunks returns the chunks of document doc, with text and
// embedding, in order.
func documentChunks(ctx context.Context, stmt *sql.Stmt, c *keyring.Cipher, doc string) ([]store.Chunk, error) {
	rows, err := stmt.QueryContext(ctx, doc)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	chunks := []store.Chunk{}
	for rows.Next() {
		var (
			ch              = store.Chunk{DocumentID: doc}
			text, embedding sql.RawBytes // only read by Open, which copies
		)
		if err := rows.Scan(&ch.ID, &ch.Ordinal, &text, &embedding); err != nil {
			return nil, err
		}
		t, err := c.Open(text, seal.ChunkText(doc, ch.Ordinal))
		if err != nil {
			return nil, fmt.Errorf("chunk %d text: %w", ch.ID, err)
		}
		ch.Text = string(t)
		if ch.Embedding, err = seal.OpenEmbedding(c, embedding, seal.ChunkEmbedding(doc, ch.Ordinal)); err != nil {
			return nil, fmt.Errorf("chunk %d embedding: %w", ch.ID, err)
		}
		chunks = append(chunks, ch)
	}
	return chunks, rows.Err()
}

// DeleteDocument removes scope's tenant's document id with its chunks, their
// embeddings and their index rows, in one transaction. An id the tenant does
// not have, including another tenant's, is an error wrapping
// store.ErrNotFound.
func (db *DB) DeleteDocument(ctx context.Context, scope auth.Scope, id string) error {
	if !scope.Valid() {
		return fmt.Errorf("delete document: %w", store.ErrNoScope)
	}
	h, _, err := db.acquireAll(ctx, scope)
	if err != nil {
		return fmt.Errorf("delete document: %w", err)
	}
	defer db.pool.release(h)
	if !store.ValidDocumentID(id) {
		return fmt.Errorf("delete document: %w", store.ErrNotFound)
	}
	if err := deleteDocument(ctx, h.v, id); err != nil {
		return fmt.Errorf("delete document: %w", err)
	}
	return nil
}

func deleteDocument(ctx context.Context, tdb *tenantDB, id string) error {
	return tdb.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		// The index rows first: they are found through the chunks.
		if _, err := tx.StmtContext(ctx, tdb.deleteDocumentIndex).ExecContext(ctx, id); err != nil {
			return err
		}
		if _, err := tx.StmtContext(ctx, tdb.deleteDocumentChunks).ExecContext(ctx, id); err != nil {
			return err
		}
		if err := deletedOne(tx.StmtContext(ctx, tdb.deleteDocument).ExecContext(ctx, id)); err != nil {
			return err
		}
		return bumpKBVersion(ctx, tx, tdb)
	})
}

// Documents returns up to limit (<= 0: all) of scope's tenant's documents,
// without their text, newest first, starting after the document with id
// after ("": from the newest). An after the tenant does not have, including
// another tenant's id, is an error wrapping store.ErrNotFound.
func (db *DB) Documents(ctx context.Context, scope auth.Scope, after string, limit int) ([]store.Document, error) {
	if !scope.Valid() {
		return nil, fmt.Errorf("read documents: %w", store.ErrNoScope)
	}
	h, c, err := db.acquireAll(ctx, scope)
	if err != nil {
		return nil, fmt.Errorf("read documents: %w", err)
	}
	defer db.pool.release(h)
	if after != "" && !store.ValidDocumentID(after) {
		return nil, fmt.Errorf("read documents after %q: %w", after, store.ErrNotFound)
	}
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	docs, err := documents(ctx, h.v.selectDocuments, c, after, limit)
	if err == nil && len(docs) == 0 && after != "" {
		// An empty page: the end of the list, or a cursor that names
		// nothing, which the caller should hear of.
		var one int
		if err = h.v.selectDocumentExists.QueryRowContext(ctx, after).Scan(&one); errors.Is(err, sql.ErrNoRows) {
			err = store.ErrNotFound
		}
	}
	if err != nil {
		return nil, fmt.Errorf("read documents: %w", err)
	}
	return docs, nil
}

// documents runs stmt, which takes args and selects id, hash, text (or NULL),
// metadata, chunks, created_at and the length of the sealed text, and
// decrypts the rows.
func documents(ctx context.Context, stmt *sql.Stmt, c *keyring.Cipher, args ...any) ([]store.Document, error) {
	rows, err := stmt.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	docs := []store.Document{}
	for rows.Next() {
		var (
			id, created      string
			hash, text, meta sql.RawBytes // only read by Open, which copies
			chunks, sealed   int
		)
		if err := rows.Scan(&id, &hash, &text, &meta, &chunks, &created, &sealed); err != nil {
			return nil, err
		}
		d, err := openDocument(c, id, hash, text, meta, chunks, created, sealed)
		if err != nil {
			return nil, err
		}
		docs = append(docs, d)
	}
	return docs, rows.Err()
}

// Chunks returns scope's tenant's chunks ids, with text, document id and
// ordinal but no embedding, in the order of ids. Ids the tenant does not have
// are skipped.
func (db *DB) Chunks(ctx context.Context, scope auth.Scope, ids []int64) ([]store.Chunk, error) {
	if !scope.Valid() {
		return nil, fmt.Errorf("read chunks: %w", store.ErrNoScope)
	}
	h, c, err := db.acquireAll(ctx, scope)
	if err != nil {
		return nil, fmt.Errorf("read chunks: %w", err)
	}
	defer db.pool.release(h)
	chunks, err := readChunks(ctx, h.v, c, ids)
	if err != nil {
		return nil, fmt.Errorf("read chunks: %w", err)
	}
	return chunks, nil
}

func readChunks(ctx context.Context, tdb *tenantDB, c *keyring.Cipher, ids []int64) ([]store.Chunk, error) {
	if len(ids) == 0 {
		return []store.Chunk{}, nil
	}
	// The ids go in as one JSON array, so one prepared statement serves any
	// number of them.
	list := []byte{'['}
	for i, id := range ids {
		if i > 0 {
			list = append(list, ',')
		}
		list = strconv.AppendInt(list, id, 10)
	}
	list = append(list, ']')
	rows, err := tdb.selectChunks.QueryContext(ctx, string(list))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	found := make(map[int64]store.Chunk, len(ids))
	for rows.Next() {
		var (
			ch   store.Chunk
			text sql.RawBytes // only read by Open, which copies
		)
		if err := rows.Scan(&ch.ID, &ch.DocumentID, &ch.Ordinal, &text); err != nil {
			return nil, err
		}
		t, err := c.Open(text, seal.ChunkText(ch.DocumentID, ch.Ordinal))
		if err != nil {
			return nil, fmt.Errorf("chunk %d text: %w", ch.ID, err)
		}
		ch.Text = string(t)
		found[ch.ID] = ch
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	chunks := make([]store.Chunk, 0, len(found))
	for _, id := range ids {
		if ch, ok := found[id]; ok {
			chunks = append(chunks, ch)
		}
	}
	return chunks, nil
}

// ChunkEmbeddings returns the ID and Embedding, and nothing else, of every
// chunk of scope's tenant that has an embedding, ordered by ID: what loading
// the tenant's vector index needs.
func (db *DB) ChunkEmbeddings(ctx context.Context, scope auth.Scope) ([]store.Chunk, error) {
	if !scope.Valid() {
		return nil, fmt.Errorf("read chunk embeddings: %w", store.ErrNoScope)
	}
	h, c, err := db.acquireAll(ctx, scope)
	if err != nil {
		return nil, fmt.Errorf("read chunk embeddings: %w", err)
	}
	defer db.pool.release(h)
	chunks, err := chunkEmbeddings(ctx, h.v, c)
	if err != nil {
		return nil, fmt.Errorf("read chunk embeddings: %w", err)
	}
	return chunks, nil
}

func chunkEmbeddings(ctx context.Context, tdb *tenantDB, c *keyring.Cipher) ([]store.Chunk, error) {
	rows, err := tdb.selectChunkEmbeddings.QueryContext(ctx)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	chunks := []store.Chunk{}
	for rows.Next() {
		var (
			id        int64
			doc       string
			ordinal   int
			embedding sql.RawBytes // only read by Open, which copies
		)
		if err := rows.Scan(&id, &doc, &ordinal, &embedding); err != nil {
			return nil, err
		}
		v, err := seal.OpenEmbedding(c, embedding, seal.ChunkEmbedding(doc, ordinal))
		if err != nil {
			return nil, fmt.Errorf("chunk %d embedding: %w", id, err)
		}
		chunks = append(chunks, store.Chunk{ID: id, Embedding: v})
	}
	return chunks, rows.Err()
}

// SearchChunks ranks scope's tenant's chunks against query with BM25 over the
// tenant's own blind index and returns the best k, best first; Score is the
// negated FTS5 bm25(), so higher is better. A query without terms (see
// store.Terms), or k <= 0, finds nothing; only the first 64 distinct terms of
// a query count.
func (db *DB) SearchChunks(ctx context.Context, scope auth.Scope, query string, k int) ([]store.Hit, error) {
	if !scope.Valid() {
		return nil, fmt.Errorf("search chunks: %w", store.ErrNoScope)
	}
	h, c, err := db.acquireAll(ctx, scope)
	if err != nil {
		return nil, fmt.Errorf("search chunks: %w", err)
	}
	defer db.pool.release(h)
	hits, err := search(ctx, h.v.searchChunks, match(seal.ChunkBlinder(c).Query(query)), k)
	if err != nil {
		return nil, fmt.Errorf("search chunks: %w", err)
	}
	return hits, nil
}

// search runs stmt, an FTS5 query taking the MATCH expression, then args,
// then the limit, and returning rowid and bm25().
func search(ctx context.Context, stmt *sql.Stmt, match string, k int, args ...any) ([]store.Hit, error) {
	hits := []store.Hit{}
	if match == "" || k <= 0 {
		return hits, nil
	}
	rows, err := stmt.QueryContext(ctx, append(append([]any{match}, args...), k)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id    int64
			score float64
		)
		if err := rows.Scan(&id, &score); err != nil {
			return nil, err
		}
		hits = append(hits, store.Hit{ID: id, Score: -score})
	}
	return hits, rows.Err()
}

// KBVersion returns the version of scope's tenant's knowledge base. It grows
// with every PutDocument that writes and every DeleteDocument that removes,
// and never repeats for a tenant's storage, even across a Drop (it jumps to
// at least the current Unix time in nanoseconds), so it can key a cache of
// the tenant's vector index.
func (db *DB) KBVersion(ctx context.Context, scope auth.Scope) (int64, error) {
	if !scope.Valid() {
		return 0, fmt.Errorf("read knowledge base version: %w", store.ErrNoScope)
	}
	h, _, err := db.acquireAll(ctx, scope)
	if err != nil {
		return 0, fmt.Errorf("read knowledge base version: %w", err)
	}
	defer db.pool.release(h)
	var v int64
	if err := h.v.selectKBVersion.QueryRowContext(ctx).Scan(&v); err != nil {
		return 0, fmt.Errorf("read knowledge base version: %w", err)
	}
	return v, nil
}
