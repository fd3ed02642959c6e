package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Rows returns every stored row of inc, sealed as stored, with the blind
// tokens of the full-text indexes, read in one transaction. It decrypts
// nothing and needs no key: it is for moving a tenant to another backend
// (bulkhead migrate), run while no server uses the data directory.
func (db *DB) Rows(ctx context.Context, inc tenant.Incarnation) (store.Raw, error) {
	id, err := db.locator.StorageID(ctx, inc)
	if err != nil {
		return store.Raw{}, fmt.Errorf("read rows: locate tenant store: %w", err)
	}
	if !validStorageID(id) {
		return store.Raw{}, fmt.Errorf("read rows: invalid storage id %q", id)
	}
	h, err := db.pool.acquire(ctx, id)
	if err != nil {
		return store.Raw{}, fmt.Errorf("read rows: open tenant store: %w", err)
	}
	defer db.pool.release(h)
	if err := h.v.intact(); err != nil {
		return store.Raw{}, fmt.Errorf("read rows: %w", err)
	}
	// One connection: the vocabulary tables below are temporary, the
	// connection's own.
	conn, err := h.v.Conn(ctx)
	if err != nil {
		return store.Raw{}, fmt.Errorf("read rows: %w", err)
	}
	defer conn.Close()
	// The FTS5 tables are contentless, so their terms are read back from
	// the index itself: fts5vocab's instance table lists each token of each
	// row.
	for _, v := range []string{
		`CREATE VIRTUAL TABLE IF NOT EXISTS temp.raw_chunk_terms USING fts5vocab(main, chunks_fts, instance)`,
		`CREATE VIRTUAL TABLE IF NOT EXISTS temp.raw_memory_terms USING fts5vocab(main, memories_fts, instance)`,
	} {
		if _, err := conn.ExecContext(ctx, v); err != nil {
			return store.Raw{}, fmt.Errorf("read rows: %w", err)
		}
	}
	tx, err := conn.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return store.Raw{}, fmt.Errorf("read rows: %w", err)
	}
	defer tx.Rollback()
	var raw store.Raw
	if err := readRaw(ctx, tx, &raw); err != nil {
		return store.Raw{}, fmt.Errorf("read rows of %s: %w", id, err)
	}
	return raw, nil
}

// readRaw reads every table into raw.
func readRaw(ctx context.Context, tx *sql.Tx, raw *store.Raw) error {
	chunkTokens, err := rawTokens(ctx, tx, `SELECT doc, term FROM temp.raw_chunk_terms`)
	if err != nil {
		return fmt.Errorf("table chunks_fts: %w", err)
	}
	memoryTokens, err := rawTokens(ctx, tx, `SELECT doc, term FROM temp.raw_memory_terms WHERE col = 'terms'`)
	if err != nil {
		return fmt.Errorf("table memories_fts: %w", err)
	}
	var created, updated string
	var (
		s  store.RawSession
		m  store.RawMessage
		se store.RawSecret
		d  store.RawDocument
		c  store.RawChunk
		mm store.RawMemory
		a  store.AuditRecord
		id int64
	)
	var data string
	steps := []rawTable{
		{"sessions", `SELECT user_id, session_id, created_at, updated_at FROM sessions ORDER BY user_id, session_id`,
			[]any{&s.UserID, &s.SessionID, &created, &updated}, func() error {
				var err error
				if s.CreatedAt, err = parseTime(created); err == nil {
					s.UpdatedAt, err = parseTime(updated)
				}
				raw.Sessions = append(raw.Sessions, s)
				return err
			}},
		{"messages", `SELECT user_id, session_id, role, content, meta, created_at FROM messages ORDER BY id`,
			[]any{&m.UserID, &m.SessionID, &m.Role, &m.Content, &m.Meta, &created}, func() error {
				var err error
				m.CreatedAt, err = parseTime(created)
				raw.Messages = append(raw.Messages, m)
				return err
			}},
		{"secrets", `SELECT name, value, updated_at FROM secrets ORDER BY name`,
			[]any{&se.Name, &se.Value, &updated}, func() error {
				var err error
				se.UpdatedAt, err = parseTime(updated)
				raw.Secrets = append(raw.Secrets, se)
				return err
			}},
		{"documents", `SELECT id, hash_mac, hash, text, metadata, chunks, created_at FROM documents ORDER BY created_at, rowid`,
			[]any{&d.ID, &d.HashMAC, &d.Hash, &d.Text, &d.Metadata, &d.Chunks, &created}, func() error {
				var err error
				d.CreatedAt, err = parseTime(created)
				raw.Documents = append(raw.Documents, d)
				return err
			}},
		{"chunks", `SELECT id, document_id, ordinal, text, embedding FROM chunks ORDER BY id`,
			[]any{&id, &c.DocumentID, &c.Ordinal, &c.Text, &c.Embedding}, func() error {
				c.Tokens = chunkTokens[id]
				raw.Chunks = append(raw.Chunks, c)
				return nil
			}},
		{"memories", `SELECT id, user_id, text, embedding, created_at FROM memories ORDER BY id`,
			[]any{&mm.ID, &mm.UserID, &mm.Text, &mm.Embedding, &created}, func() error {
				var err error
				mm.CreatedAt, err = parseTime(created)
				mm.Tokens = memoryTokens[mm.ID]
				raw.Memories = append(raw.Memories, mm)
				return err
			}},
		{"audit", `SELECT seq, time, type, data, prev, hash FROM audit ORDER BY seq`,
			[]any{&a.Seq, &created, &a.Type, &data, &a.Prev, &a.Hash}, func() error {
				var err error
				a.Time, err = parseTime(created)
				a.Data = []byte(data)
				raw.Audit = append(raw.Audit, a)
				return err
			}},
	}
	for _, st := range steps {
		if err := scanAll(ctx, tx, st.query, st.dest, st.add); err != nil {
			return fmt.Errorf("table %s: %w", st.table, err)
		}
	}
	return nil
}

// rawTable is one table Rows reads: each row of query is scanned into dest,
// then add keeps it.
type rawTable struct {
	table, query string
	dest         []any
	add          func() error
}

// scanAll runs query and, for each row, scans it into dest and calls add.
// Scanning into fresh []byte each row: database/sql copies them.
func scanAll(ctx context.Context, tx *sql.Tx, query string, dest []any, add func() error) error {
	rows, err := tx.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		if err := add(); err != nil {
			return err
		}
	}
	return rows.Err()
}

// rawTokens reads (row id, token) pairs into each row's sorted tokens.
func rawTokens(ctx context.Context, tx *sql.Tx, query string) (map[int64][]string, error) {
	out := map[int64][]string{}
	var id int64
	var term string
	err := scanAll(ctx, tx, query, []any{&id, &term}, func() error {
		out[id] = append(out[id], term)
		return nil
	})
	for _, t := range out {
		slices.Sort(t)
	}
	return out, err
}

func parseTime(s string) (time.Time, error) { return time.Parse(timeFormat, s) }
