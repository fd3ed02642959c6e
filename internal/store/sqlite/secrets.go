package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/secret"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/store/seal"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// PutSecret stores value under name for scope's tenant, replacing any value
// the name had. Secrets belong to the tenant, not to an end user. The value is
// encrypted with the tenant's key, bound to name.
func (db *DB) PutSecret(ctx context.Context, scope auth.Scope, name tenant.SecretName, value []byte) error {
	if err := store.CheckSecret(scope, name); err != nil {
		return fmt.Errorf("put secret: %w", err)
	}
	h, c, err := db.acquire(ctx, scope)
	if err != nil {
		return fmt.Errorf("put secret: %w", err)
	}
	defer db.pool.release(h)
	sealed := c.Seal(value, seal.Secret(name))
	now := time.Now().UTC().Format(timeFormat)

	tdb := h.v
	defer tdb.secrets.invalidate()
	err = tdb.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.StmtContext(ctx, tdb.upsertSecret).ExecContext(ctx, name, sealed, now)
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
	h, _, err := db.acquire(ctx, scope)
	if err != nil {
		return fmt.Errorf("delete secret: %w", err)
	}
	defer db.pool.release(h)

	tdb := h.v
	defer tdb.secrets.invalidate()
	err = tdb.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return deletedOne(tx.StmtContext(ctx, tdb.deleteSecret).ExecContext(ctx, name))
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
	h, c, err := db.acquire(ctx, scope)
	if err != nil {
		return nil, fmt.Errorf("read secrets: %w", err)
	}
	defer db.pool.release(h)
	// Every request reads its tenant's secrets (to redact them), so the
	// decrypted set is kept with the open database until a secret changes.
	cached, gen, ok := h.v.secrets.get(c)
	if ok {
		return cached, nil
	}
	secrets, err := readSecrets(ctx, h.v, c)
	if err != nil {
		return nil, err
	}
	h.v.secrets.put(c, gen, secrets)
	return slices.Clone(secrets), nil
}

func readSecrets(ctx context.Context, tdb *tenantDB, c *keyring.Cipher) ([]store.Secret, error) {
	rows, err := tdb.selectSecrets.QueryContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("read secrets: %w", err)
	}
	defer rows.Close()
	secrets := []store.Secret{}
	for rows.Next() {
		var (
			name   tenant.SecretName
			sealed []byte
		)
		if err := rows.Scan(&name, &sealed); err != nil {
			return nil, fmt.Errorf("read secrets: %w", err)
		}
		value, err := c.Open(sealed, seal.Secret(name))
		if err != nil {
			return nil, fmt.Errorf("read secret %s: %w", name, err)
		}
		secrets = append(secrets, store.Secret{Name: name, Value: secret.New(string(value))})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read secrets: %w", err)
	}
	return secrets, nil
}

// secretCache holds one tenant's decrypted secrets. An entry is valid only
// for the cipher it was read with (a replaced data key rereads, and fails)
// and only if no write happened since the read began.
type secretCache struct {
	mu     sync.Mutex
	gen    uint64
	cipher *keyring.Cipher
	list   []store.Secret
	valid  bool
}

func (sc *secretCache) get(c *keyring.Cipher) ([]store.Secret, uint64, bool) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.valid && sc.cipher == c {
		return slices.Clone(sc.list), sc.gen, true
	}
	return nil, sc.gen, false
}

func (sc *secretCache) put(c *keyring.Cipher, gen uint64, list []store.Secret) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.gen == gen {
		sc.cipher, sc.list, sc.valid = c, list, true
	}
}

func (sc *secretCache) invalidate() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.gen++
	sc.cipher, sc.list, sc.valid = nil, nil, false
}
