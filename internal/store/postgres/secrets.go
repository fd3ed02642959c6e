package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/secret"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/store/seal"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// PutSecret stores value under name for scope's tenant, replacing any value
// the name had. The value is encrypted with the tenant's key, bound to name.
// Secrets are read from the database on every call, not cached: another
// replica may have changed them.
func (db *DB) PutSecret(ctx context.Context, scope auth.Scope, name tenant.SecretName, value []byte) error {
	if err := store.CheckSecret(scope, name); err != nil {
		return fmt.Errorf("put secret: %w", err)
	}
	err := db.run(ctx, scope, writeTx, func(ctx context.Context, tx tenantTx) error {
		_, err := tx.Exec(ctx, `
			INSERT INTO tenant_data.secrets (tenant_id, name, value, updated_ns) VALUES ($1, $2, $3, $4)
			ON CONFLICT (tenant_id, name) DO UPDATE SET value = excluded.value, updated_ns = excluded.updated_ns`,
			tx.id, name, tx.c.Seal(value, seal.Secret(name)), time.Now().UnixNano())
		return err
	})
	if err != nil {
		return fmt.Errorf("put secret %s: %w", name, err)
	}
	return nil
}

// DeleteSecret removes scope's tenant's secret name. A name the tenant does not
// have is an error wrapping store.ErrNotFound.
func (db *DB) DeleteSecret(ctx context.Context, scope auth.Scope, name tenant.SecretName) error {
	if err := store.CheckSecret(scope, name); err != nil {
		return fmt.Errorf("delete secret: %w", err)
	}
	err := db.run(ctx, scope, writeTx, func(ctx context.Context, tx tenantTx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM tenant_data.secrets WHERE tenant_id = $1 AND name = $2`, tx.id, name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete secret %s: %w", name, err)
	}
	return nil
}

// Secrets returns all of scope's tenant's secrets, decrypted, ordered by name.
// A value that does not decrypt fails the call with keyring.ErrDecrypt.
func (db *DB) Secrets(ctx context.Context, scope auth.Scope) ([]store.Secret, error) {
	if !scope.Valid() {
		return nil, fmt.Errorf("read secrets: %w", store.ErrNoScope)
	}
	var secrets []store.Secret
	err := db.run(ctx, scope, readTx, func(ctx context.Context, tx tenantTx) error {
		rows, err := tx.Query(ctx, `SELECT name, value FROM tenant_data.secrets WHERE tenant_id = $1 ORDER BY name COLLATE "C"`, tx.id)
		if err != nil {
			return err
		}
		secrets, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Secret, error) {
			var (
				name   tenant.SecretName
				sealed []byte
			)
			if err := row.Scan(&name, &sealed); err != nil {
				return store.Secret{}, err
			}
			value, err := tx.c.Open(sealed, seal.Secret(name))
			if err != nil {
				return store.Secret{}, fmt.Errorf("secret %s: %w", name, err)
			}
			return store.Secret{Name: name, Value: secret.New(string(value))}, nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read secrets: %w", err)
	}
	if secrets == nil {
		secrets = []store.Secret{}
	}
	return secrets, nil
}
