package postgres

import "github.com/jackc/pgx/v5/pgxpool"

// Pool exposes the store's connections to the tests, which check that a
// connection carries no tenant once a transaction is over.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }
