package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/store/seal"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// exportTx reads one snapshot: every statement of the export sees the same
// data.
var exportTx = pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}

// Export returns everything scope's tenant has stored, as the SQLite
// backend's Export does: every session of every end user, ordered by (user,
// session), with its messages oldest first; every document with its text,
// oldest first; every end user's memories by (user, id), without embeddings;
// and the names, never the values, of its secrets. It reads one snapshot.
func (db *DB) Export(ctx context.Context, scope auth.Scope) (store.Export, error) {
	if !scope.Valid() {
		return store.Export{}, fmt.Errorf("export: %w", store.ErrNoScope)
	}
	var exp store.Export
	err := db.run(ctx, scope, exportTx, func(ctx context.Context, tx tenantTx) error {
		var err error
		exp, err = export(ctx, tx)
		return err
	})
	if err != nil {
		return store.Export{}, fmt.Errorf("export: %w", err)
	}
	return exp, nil
}

func export(ctx context.Context, tx tenantTx) (store.Export, error) {
	exp := store.Export{SecretNames: []tenant.SecretName{}}
	// Every session, with its messages if it has any; a session without
	// messages is one row of NULLs.
	rows, err := tx.Query(ctx, `
		SELECT s.user_id, s.session_id, s.created_ns, s.updated_ns, m.id, m.role, m.content, m.meta, m.created_ns
		FROM tenant_data.sessions s LEFT JOIN tenant_data.messages m
			ON m.tenant_id = s.tenant_id AND m.user_id = s.user_id AND m.session_id = s.session_id
		WHERE s.tenant_id = $1
		ORDER BY s.user_id COLLATE "C", s.session_id COLLATE "C", m.id`, tx.id)
	if err != nil {
		return store.Export{}, err
	}
	var (
		user                tenant.UserID
		session             tenant.SessionID
		sCreated, sUpdated  int64
		id, mCreated        *int64
		role                *string
		content, meta       []byte
		cur                 *store.ExportedSession
		contentCtx, metaCtx string
	)
	exp.Sessions = []store.ExportedSession{}
	_, err = pgx.ForEachRow(rows, []any{&user, &session, &sCreated, &sUpdated, &id, &role, &content, &meta, &mCreated}, func() error {
		if cur == nil || cur.User != user || cur.Session != session {
			exp.Sessions = append(exp.Sessions, store.ExportedSession{
				User: user, Session: session, CreatedAt: unixTime(sCreated), UpdatedAt: unixTime(sUpdated),
				Messages: []store.Message{},
			})
			cur = &exp.Sessions[len(exp.Sessions)-1]
			contentCtx, metaCtx = seal.MessageContent(user, session), seal.MessageMeta(user, session)
		}
		if id == nil {
			return nil // a session without messages
		}
		m, err := openMessage(tx.c, contentCtx, metaCtx, *id, *role, content, meta, *mCreated)
		if err != nil {
			return err
		}
		cur.Messages = append(cur.Messages, m)
		return nil
	})
	if err != nil {
		return store.Export{}, err
	}

	if exp.Documents, err = documents(ctx, tx, `SELECT `+documentColumns+` FROM tenant_data.documents
		WHERE tenant_id = $1 ORDER BY created_ns, seq`); err != nil {
		return store.Export{}, err
	}

	rows, err = tx.Query(ctx, `
		SELECT id, user_id, text, created_ns FROM tenant_data.memories
		WHERE tenant_id = $1 ORDER BY user_id COLLATE "C", id`, tx.id)
	if err != nil {
		return store.Export{}, err
	}
	exp.Memories, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Memory, error) {
		var (
			m       store.Memory
			text    []byte
			created int64
		)
		if err := row.Scan(&m.ID, &m.User, &text, &created); err != nil {
			return store.Memory{}, err
		}
		return m, openMemory(tx.c, &m, text, created)
	})
	if err != nil {
		return store.Export{}, err
	}
	exp.Memories = nonNil(exp.Memories)

	rows, err = tx.Query(ctx, `SELECT name FROM tenant_data.secrets WHERE tenant_id = $1 ORDER BY name COLLATE "C"`, tx.id)
	if err != nil {
		return store.Export{}, err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[tenant.SecretName])
	if err != nil {
		return store.Export{}, err
	}
	exp.SecretNames = nonNil(names)
	return exp, nil
}
