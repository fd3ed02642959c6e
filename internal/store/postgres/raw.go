package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Import writes raw, another backend's rows of inc (store.Raw: sealed as
// stored, blind tokens as indexed), as inc's rows, in one transaction. It
// decrypts nothing. It runs as the application role, in a transaction scoped
// to inc like every other call, so row-level security checks that every row
// lands in inc's tenant_id and the importer needs no privilege the server
// lacks. It refuses an incarnation that already has rows. Message and chunk
// ids are drawn anew (nothing sealed is bound to them; messages keep their
// order); memory ids are kept, as their ciphertexts are bound to them.
func (db *DB) Import(ctx context.Context, inc tenant.Incarnation, raw store.Raw) error {
	id, err := db.locator.StorageID(ctx, inc)
	if err != nil {
		return fmt.Errorf("import rows: locate tenant store: %w", err)
	}
	err = db.inTenant(ctx, id, writeTx, func(ctx context.Context, tx pgx.Tx) error {
		return importRaw(ctx, tenantTx{Tx: tx, id: id}, raw)
	})
	if err != nil {
		return fmt.Errorf("import rows of %s: %w", id, err)
	}
	return nil
}

func importRaw(ctx context.Context, tx tenantTx, raw store.Raw) error {
	for _, t := range tables {
		var used bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tenant_data.`+t+` WHERE tenant_id = $1)`, tx.id).Scan(&used); err != nil {
			return fmt.Errorf("table %s: %w", t, err)
		}
		if used {
			return fmt.Errorf("table %s already holds rows of this tenant", t)
		}
	}
	steps := []struct {
		table string
		write func() error
	}{
		{"sessions", func() error { return importSessions(ctx, tx, raw.Sessions) }},
		{"messages", func() error { return importMessages(ctx, tx, raw.Messages) }},
		{"secrets", func() error { return importSecrets(ctx, tx, raw.Secrets) }},
		{"documents", func() error { return importDocuments(ctx, tx, raw.Documents) }},
		{"chunks", func() error { return importChunks(ctx, tx, raw.Chunks) }},
		{"memories", func() error { return importMemories(ctx, tx, raw.Memories) }},
		{"audit", func() error { return insertAudit(ctx, tx, raw.Audit) }},
	}
	for _, s := range steps {
		if err := s.write(); err != nil {
			return fmt.Errorf("table %s: %w", s.table, err)
		}
	}
	return nil
}

func importSessions(ctx context.Context, tx tenantTx, rows []store.RawSession) error {
	n := len(rows)
	users, sessions, created, updated := make([]string, n), make([]string, n), make([]int64, n), make([]int64, n)
	for i, r := range rows {
		users[i], sessions[i], created[i], updated[i] = r.UserID, r.SessionID, r.CreatedAt.UnixNano(), r.UpdatedAt.UnixNano()
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO tenant_data.sessions (tenant_id, user_id, session_id, created_ns, updated_ns)
		SELECT $1, s.u, s.s, s.c, s.up FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[]) AS s (u, s, c, up)`,
		tx.id, users, sessions, created, updated)
	return err
}

func importMessages(ctx context.Context, tx tenantTx, rows []store.RawMessage) error {
	n := len(rows)
	users, sessions, roles := make([]string, n), make([]string, n), make([]string, n)
	contents, metas, created := make([][]byte, n), make([][]byte, n), make([]int64, n)
	for i, r := range rows {
		users[i], sessions[i], roles[i] = r.UserID, r.SessionID, r.Role
		contents[i], metas[i], created[i] = r.Content, r.Meta, r.CreatedAt.UnixNano()
	}
	// Ids are drawn in the order of the rows, which is the source's.
	_, err := tx.Exec(ctx, `
		INSERT INTO tenant_data.messages (tenant_id, user_id, session_id, role, content, meta, created_ns)
		SELECT $1, m.u, m.s, m.r, m.c, m.m, m.t
		FROM unnest($2::text[], $3::text[], $4::text[], $5::bytea[], $6::bytea[], $7::bigint[]) WITH ORDINALITY AS m (u, s, r, c, m, t, n)
		ORDER BY m.n`,
		tx.id, users, sessions, roles, contents, metas, created)
	return err
}

func importSecrets(ctx context.Context, tx tenantTx, rows []store.RawSecret) error {
	n := len(rows)
	names, values, updated := make([]string, n), make([][]byte, n), make([]int64, n)
	for i, r := range rows {
		names[i], values[i], updated[i] = r.Name, r.Value, r.UpdatedAt.UnixNano()
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO tenant_data.secrets (tenant_id, name, value, updated_ns)
		SELECT $1, s.n, s.v, s.u FROM unnest($2::text[], $3::bytea[], $4::bigint[]) AS s (n, v, u)`,
		tx.id, names, values, updated)
	return err
}

func importDocuments(ctx context.Context, tx tenantTx, rows []store.RawDocument) error {
	n := len(rows)
	ids, macs, hashes, texts, metas := make([]string, n), make([][]byte, n), make([][]byte, n), make([][]byte, n), make([][]byte, n)
	chunks, created := make([]int32, n), make([]int64, n)
	for i, r := range rows {
		ids[i], macs[i], hashes[i], texts[i], metas[i] = r.ID, r.HashMAC, r.Hash, r.Text, r.Metadata
		chunks[i], created[i] = int32(r.Chunks), r.CreatedAt.UnixNano()
	}
	// seq is drawn in the source's order, which breaks ties of created_ns.
	_, err := tx.Exec(ctx, `
		INSERT INTO tenant_data.documents (tenant_id, id, hash_mac, hash, text, metadata, chunks, created_ns)
		SELECT $1, d.id, d.mac, d.h, d.t, d.m, d.c, d.ns
		FROM unnest($2::text[], $3::bytea[], $4::bytea[], $5::bytea[], $6::bytea[], $7::integer[], $8::bigint[])
			WITH ORDINALITY AS d (id, mac, h, t, m, c, ns, n)
		ORDER BY d.n`,
		tx.id, ids, macs, hashes, texts, metas, chunks, created)
	return err
}

// importChunks writes the chunks, their postings and the tenant's corpus
// statistics (bumpKnowledge, as PutDocument does).
func importChunks(ctx context.Context, tx tenantTx, rows []store.RawChunk) error {
	n := len(rows)
	docs, ordinals, texts, embeddings, lengths := make([]string, n), make([]int32, n), make([][]byte, n), make([][]byte, n), make([]int32, n)
	tokens := make([][]string, n)
	var total int64
	for i, r := range rows {
		docs[i], ordinals[i], texts[i], embeddings[i] = r.DocumentID, int32(r.Ordinal), r.Text, r.Embedding
		tokens[i], lengths[i] = r.Tokens, int32(len(r.Tokens))
		total += int64(len(r.Tokens))
	}
	ids := make([]int64, n)
	result, err := tx.Query(ctx, `
		INSERT INTO tenant_data.chunks (tenant_id, document_id, ordinal, text, embedding, length)
		SELECT $1, c.d, c.o, c.t, c.e, c.l
		FROM unnest($2::text[], $3::integer[], $4::bytea[], $5::bytea[], $6::integer[]) WITH ORDINALITY AS c (d, o, t, e, l, n)
		ORDER BY c.n
		RETURNING document_id, ordinal, id`,
		tx.id, docs, ordinals, texts, embeddings, lengths)
	if err != nil {
		return err
	}
	at := make(map[string]map[int]int, n) // document → ordinal → index in rows
	for i, r := range rows {
		if at[r.DocumentID] == nil {
			at[r.DocumentID] = map[int]int{}
		}
		at[r.DocumentID][r.Ordinal] = i
	}
	var doc string
	var ordinal int
	var id int64
	if _, err := pgx.ForEachRow(result, []any{&doc, &ordinal, &id}, func() error {
		ids[at[doc][ordinal]] = id
		return nil
	}); err != nil {
		return err
	}
	if err := insertTerms(ctx, tx, "chunk_terms", "chunk_id", ids, tokens); err != nil {
		return fmt.Errorf("postings: %w", err)
	}
	return bumpKnowledge(ctx, tx, int64(n), total)
}

// importMemories writes the memories with their own ids, then moves the
// shared id sequence past them, so a memory stored later draws a free id.
// setval would need UPDATE on the sequence, which the application role does
// not have; nextval, which it has, draws up to the largest id instead.
func importMemories(ctx context.Context, tx tenantTx, rows []store.RawMemory) error {
	if len(rows) == 0 {
		return nil
	}
	n := len(rows)
	ids, users, texts, embeddings := make([]int64, n), make([]string, n), make([][]byte, n), make([][]byte, n)
	lengths, created := make([]int32, n), make([]int64, n)
	tokens := make([][]string, n)
	var top int64
	for i, r := range rows {
		ids[i], users[i], texts[i], embeddings[i] = r.ID, r.UserID, r.Text, r.Embedding
		tokens[i], lengths[i], created[i] = r.Tokens, int32(len(r.Tokens)), r.CreatedAt.UnixNano()
		top = max(top, r.ID)
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO tenant_data.memories (tenant_id, id, user_id, text, embedding, length, created_ns)
		SELECT $1, m.id, m.u, m.t, m.e, m.l, m.c
		FROM unnest($2::bigint[], $3::text[], $4::bytea[], $5::bytea[], $6::integer[], $7::bigint[]) AS m (id, u, t, e, l, c)`,
		tx.id, ids, users, texts, embeddings, lengths, created); err != nil {
		return err
	}
	if err := insertTerms(ctx, tx, "memory_terms", "memory_id", ids, tokens); err != nil {
		return fmt.Errorf("postings: %w", err)
	}
	var next int64
	if err := tx.QueryRow(ctx, `SELECT nextval('tenant_data.memories_id_seq')`).Scan(&next); err != nil {
		return fmt.Errorf("memory ids: %w", err)
	}
	if next < top {
		if _, err := tx.Exec(ctx, `SELECT max(nextval('tenant_data.memories_id_seq')) FROM generate_series(1, $1::bigint)`, top-next); err != nil {
			return fmt.Errorf("memory ids: %w", err)
		}
	}
	return nil
}

// RowCounts returns how many rows inc has in each table store.Raw holds, by
// the names of store.Raw.Counts, to compare an import with its source.
func (db *DB) RowCounts(ctx context.Context, inc tenant.Incarnation) (map[string]int, error) {
	id, err := db.locator.StorageID(ctx, inc)
	if err != nil {
		return nil, fmt.Errorf("count rows: locate tenant store: %w", err)
	}
	out := map[string]int{}
	err = db.inTenant(ctx, id, readTx, func(ctx context.Context, tx pgx.Tx) error {
		for t := range (store.Raw{}).Counts() {
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM tenant_data.`+t+` WHERE tenant_id = $1`, id).Scan(&n); err != nil {
				return fmt.Errorf("table %s: %w", t, err)
			}
			out[t] = n
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count rows of %s: %w", id, err)
	}
	return out, nil
}
