package postgres

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/store/seal"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// AppendMessages appends msgs to the session of scope's end user, in one
// transaction. A message with a zero CreatedAt gets the current time. Content
// and meta are encrypted with the tenant's key; an empty meta is stored as
// NULL and read back as nil.
func (db *DB) AppendMessages(ctx context.Context, scope auth.Scope, session tenant.SessionID, msgs []store.Message) error {
	if err := checkSession(scope, session); err != nil {
		return fmt.Errorf("append messages: %w", err)
	}
	user := scope.User()
	err := db.run(ctx, scope, writeTx, func(ctx context.Context, tx tenantTx) error {
		now := time.Now().UnixNano()
		roles := make([]string, len(msgs))
		contents := make([][]byte, len(msgs))
		metas := make([][]byte, len(msgs))
		created := make([]int64, len(msgs))
		contentCtx, metaCtx := seal.MessageContent(user, session), seal.MessageMeta(user, session)
		for i, m := range msgs {
			roles[i] = m.Role
			contents[i] = tx.c.Seal([]byte(m.Content), contentCtx)
			if len(m.Meta) > 0 {
				metas[i] = tx.c.Seal(m.Meta, metaCtx)
			}
			created[i] = now
			if !m.CreatedAt.IsZero() {
				created[i] = m.CreatedAt.UnixNano()
			}
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO tenant_data.sessions (tenant_id, user_id, session_id, created_ns, updated_ns)
			VALUES ($1, $2, $3, $4, $4)
			ON CONFLICT (tenant_id, user_id, session_id) DO UPDATE SET updated_ns = excluded.updated_ns`,
			tx.id, user, session, now); err != nil {
			return err
		}
		if len(msgs) == 0 {
			return nil
		}
		_, err := tx.Exec(ctx, `
			INSERT INTO tenant_data.messages (tenant_id, user_id, session_id, role, content, meta, created_ns)
			SELECT $1, $2, $3, m.role, m.content, m.meta, m.created_ns
			FROM unnest($4::text[], $5::bytea[], $6::bytea[], $7::bigint[]) WITH ORDINALITY
				AS m (role, content, meta, created_ns, n)
			ORDER BY m.n`,
			tx.id, user, session, roles, contents, metas, created)
		return err
	})
	if err != nil {
		return fmt.Errorf("append messages: %w", err)
	}
	return nil
}

// Messages returns the last limit messages of the session of scope's end user,
// oldest first; limit <= 0 means all. An unknown session has no messages. A
// message that does not decrypt fails the call with keyring.ErrDecrypt.
func (db *DB) Messages(ctx context.Context, scope auth.Scope, session tenant.SessionID, limit int) ([]store.Message, error) {
	if err := checkSession(scope, session); err != nil {
		return nil, fmt.Errorf("read messages: %w", err)
	}
	user := scope.User()
	var msgs []store.Message
	err := db.run(ctx, scope, readTx, func(ctx context.Context, tx tenantTx) error {
		rows, err := tx.Query(ctx, `
			SELECT id, role, content, meta, created_ns FROM tenant_data.messages
			WHERE tenant_id = $1 AND user_id = $2 AND session_id = $3
			ORDER BY id DESC LIMIT $4`, tx.id, user, session, sqlLimit(limit))
		if err != nil {
			return err
		}
		contentCtx, metaCtx := seal.MessageContent(user, session), seal.MessageMeta(user, session)
		msgs, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Message, error) {
			var (
				id            int64
				role          string
				content, meta []byte
				created       int64
			)
			if err := row.Scan(&id, &role, &content, &meta, &created); err != nil {
				return store.Message{}, err
			}
			return openMessage(tx.c, contentCtx, metaCtx, id, role, content, meta, created)
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read messages: %w", err)
	}
	slices.Reverse(msgs)
	return msgs, nil
}

// DeleteSession removes the session of scope's end user and its messages;
// store.ErrNotFound if there is none.
func (db *DB) DeleteSession(ctx context.Context, scope auth.Scope, session tenant.SessionID) error {
	if err := checkSession(scope, session); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	err := db.run(ctx, scope, writeTx, func(ctx context.Context, tx tenantTx) error {
		if _, err := tx.Exec(ctx, `
			DELETE FROM tenant_data.messages WHERE tenant_id = $1 AND user_id = $2 AND session_id = $3`,
			tx.id, scope.User(), session); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `
			DELETE FROM tenant_data.sessions WHERE tenant_id = $1 AND user_id = $2 AND session_id = $3`,
			tx.id, scope.User(), session)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// openMessage decrypts stored message id, sealed under contentCtx and
// metaCtx. A nil meta is NULL.
func openMessage(c *keyring.Cipher, contentCtx, metaCtx string, id int64, role string, content, meta []byte, created int64) (store.Message, error) {
	m := store.Message{Role: role, CreatedAt: unixTime(created)}
	text, err := c.Open(content, contentCtx)
	if err != nil {
		return store.Message{}, fmt.Errorf("message %d content: %w", id, err)
	}
	m.Content = string(text)
	if meta != nil {
		if m.Meta, err = c.Open(meta, metaCtx); err != nil {
			return store.Message{}, fmt.Errorf("message %d meta: %w", id, err)
		}
	}
	return m, nil
}

// checkSession refuses a call without an authenticated scope or a session id.
func checkSession(scope auth.Scope, session tenant.SessionID) error {
	if !scope.Valid() {
		return store.ErrNoScope
	}
	_, err := tenant.ParseSessionID(string(session))
	return err
}

// sqlLimit is limit as a LIMIT argument: NULL, no limit, for limit <= 0.
func sqlLimit(limit int) *int64 {
	if limit <= 0 {
		return nil
	}
	l := int64(limit)
	return &l
}

// unixTime is the time of Unix nanoseconds ns, in UTC.
func unixTime(ns int64) time.Time { return time.Unix(0, ns).UTC() }
