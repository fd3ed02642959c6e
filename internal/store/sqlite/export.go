package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/store/seal"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Export returns everything scope's tenant has stored: every session of every
// end user, ordered by (user, session), with its messages decrypted oldest
// first; every document with its text, oldest first; every end user's
// memories, ordered by (user, id), without embeddings (which an export does
// not carry); and the names, never the values, of its secrets. It reads one
// snapshot of the database. Anything that does not decrypt fails the call with
// keyring.ErrDecrypt.
func (db *DB) Export(ctx context.Context, scope auth.Scope) (store.Export, error) {
	if !scope.Valid() {
		return store.Export{}, fmt.Errorf("export: %w", store.ErrNoScope)
	}
	h, c, err := db.acquireAll(ctx, scope)
	if err != nil {
		return store.Export{}, fmt.Errorf("export: %w", err)
	}
	defer db.pool.release(h)
	exp, err := export(ctx, h.v, c)
	if err != nil {
		return store.Export{}, fmt.Errorf("export: %w", err)
	}
	return exp, nil
}

func export(ctx context.Context, tdb *tenantDB, c *keyring.Cipher) (store.Export, error) {
	// A read-only transaction is a plain (deferred) BEGIN: it takes no write
	// lock, and in WAL mode its reads share one snapshot.
	tx, err := tdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return store.Export{}, err
	}
	defer tx.Rollback()

	exp := store.Export{
		Sessions:    []store.ExportedSession{},
		Documents:   []store.Document{},
		Memories:    []store.Memory{},
		SecretNames: []tenant.SecretName{},
	}
	rows, err := tx.StmtContext(ctx, tdb.selectExport).QueryContext(ctx)
	if err != nil {
		return store.Export{}, err
	}
	defer rows.Close()
	var (
		cur                 *store.ExportedSession
		contentCtx, metaCtx string // of cur
	)
	for rows.Next() {
		var (
			user                           tenant.UserID
			session                        tenant.SessionID
			sessionCreated, sessionUpdated string
			id                             sql.NullInt64
			role, created                  sql.NullString
			content, meta                  []byte
		)
		if err := rows.Scan(&user, &session, &sessionCreated, &sessionUpdated,
			&id, &role, &content, &meta, &created); err != nil {
			return store.Export{}, err
		}
		if cur == nil || cur.User != user || cur.Session != session {
			s := store.ExportedSession{User: user, Session: session, Messages: []store.Message{}}
			if s.CreatedAt, err = time.Parse(timeFormat, sessionCreated); err != nil {
				return store.Export{}, err
			}
			if s.UpdatedAt, err = time.Parse(timeFormat, sessionUpdated); err != nil {
				return store.Export{}, err
			}
			exp.Sessions = append(exp.Sessions, s)
			cur = &exp.Sessions[len(exp.Sessions)-1]
			contentCtx, metaCtx = seal.MessageContent(user, session), seal.MessageMeta(user, session)
		}
		if !id.Valid {
			continue // a session without messages
		}
		m, err := openMessage(c, contentCtx, metaCtx, id.Int64, role.String, content, meta, created.String)
		if err != nil {
			return store.Export{}, err
		}
		cur.Messages = append(cur.Messages, m)
	}
	if err := rows.Err(); err != nil {
		return store.Export{}, err
	}

	if exp.Documents, err = documents(ctx, tx.StmtContext(ctx, tdb.selectExportDocuments), c); err != nil {
		return store.Export{}, err
	}
	if exp.Memories, err = exportMemories(ctx, tx.StmtContext(ctx, tdb.selectExportMemories), c); err != nil {
		return store.Export{}, err
	}

	names, err := tx.StmtContext(ctx, tdb.selectSecretNames).QueryContext(ctx)
	if err != nil {
		return store.Export{}, err
	}
	defer names.Close()
	for names.Next() {
		var name tenant.SecretName
		if err := names.Scan(&name); err != nil {
			return store.Export{}, err
		}
		exp.SecretNames = append(exp.SecretNames, name)
	}
	if err := names.Err(); err != nil {
		return store.Export{}, err
	}
	return exp, nil
}

// exportMemories returns every end user's memories, without embeddings.
func exportMemories(ctx context.Context, stmt *sql.Stmt, c *keyring.Cipher) ([]store.Memory, error) {
	rows, err := stmt.QueryContext(ctx)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	mems := []store.Memory{}
	for rows.Next() {
		var (
			m       store.Memory
			text    sql.RawBytes // only read by Open, which copies
			created string
		)
		if err := rows.Scan(&m.ID, &m.User, &text, &created); err != nil {
			return nil, err
		}
		if err := openMemory(c, &m, text, created); err != nil {
			return nil, err
		}
		mems = append(mems, m)
	}
	return mems, rows.Err()
}
