// Package sqlite is the embedded backend of the tenant data plane: every tenant
// has its own SQLite database at <Dir>/<storage id>/tenant.db, so one tenant's
// queries cannot reach another tenant's rows. Databases are opened on first use
// and kept in a bounded pool, so many tenants do not mean many open files.
//
// Message content and meta, secret values, document text, metadata and hash,
// chunk text and embeddings and memory text and embeddings are encrypted with
// the tenant's data key before they reach SQLite, each bound to its place
// (tenant, end user, session, document, column or secret name), so a
// ciphertext moved anywhere else does not decrypt. Roles, timestamps, end-user
// ids, session ids, secret names, document ids, ordinals and chunk counts are
// stored in clear: they are what the rows are indexed and ordered by. The
// full-text indexes (FTS5, BM25) are blind: they hold keyed hashes of terms,
// never terms. Sealing and blinding are package seal's, shared with store/postgres.
package sqlite

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pressly/goose/v3"
	driver "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/layers"
	"github.com/bulkhead-ai/bulkhead/internal/sqliteuri"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/store/seal"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Locator maps an incarnation of a tenant to the opaque name of its storage
// directory. It is consumed here, implemented by the control plane, and fails
// with store.ErrUnknownTenant for an incarnation that is not the tenant's
// current one: a Scope authenticated before its tenant was deleted and
// created again must not reach the new tenant's data.
type Locator interface {
	StorageID(ctx context.Context, inc tenant.Incarnation) (string, error)
}

// provisioned is implemented by a Locator that knows which stores were made
// when their tenant was provisioned (control.Plane): such a store missing
// when the server starts was lost while it was stopped, and is refused
// rather than made again, empty.
type provisioned interface {
	StoreMadeAtProvision(inc tenant.Incarnation) bool
}

// Ciphers hands out the data-key cipher of a tenant's incarnation;
// *keyring.Ring implements it. An error fails the call: nothing is read or
// written without the key.
type Ciphers interface {
	Cipher(ctx context.Context, inc tenant.Incarnation) (*keyring.Cipher, error)
}

// Options configures Open.
type Options struct {
	Dir     string // e.g. DATA/tenants; created 0700 if missing
	MaxOpen int    // max open tenant handles; 0 → sized from the file-descriptor limit (see defaultMaxOpen)
	Locator Locator
	Ciphers Ciphers      // required: encrypts every tenant's content at rest
	Logger  *slog.Logger // nil → discard
}

const (
	connsPerTenant = 4
	fileName       = "tenant.db"
	// timeFormat is fixed-width UTC, so stored times sort as text and
	// round-trip to the nanosecond.
	timeFormat = "2006-01-02T15:04:05.000000000Z07:00"
)

//go:embed migrations/*.sql
var migrations embed.FS

// DB is the set of tenant databases under one directory. It is safe for
// concurrent use.
type DB struct {
	dir        string
	locator    Locator
	ciphers    Ciphers
	log        *slog.Logger
	migrations fs.FS
	schema     int // how many migrations there are: the user_version of an up-to-date database
	pool       *pool[*tenantDB]

	// created serializes creating databases: Create and first use of a
	// store no one created (see openTenant) may race for one file.
	created sync.Mutex

	// shared is the one store every tenant uses when the store layer is
	// switched off (redteamswitch builds only).
	shared struct {
		once sync.Once
		id   string
		c    *keyring.Cipher
	}

	mu sync.Mutex
	// known holds the storage ids whose database exists: found at Open,
	// made by Create, or opened since. A known store whose file is missing
	// or truncated is lost: it is refused, never created again empty.
	known   map[string]bool
	lost    map[string]bool // lost stores already reported to the operator
	missing map[string]bool // stores found missing, reported to the operator
}

// Open prepares the tenant databases under opts.Dir. No tenant database is
// opened until it is used.
func Open(opts Options) (*DB, error) {
	if opts.Dir == "" {
		return nil, errors.New("open tenant stores: no directory")
	}
	if opts.Locator == nil {
		return nil, errors.New("open tenant stores: no locator")
	}
	if opts.Ciphers == nil {
		return nil, errors.New("open tenant stores: no ciphers")
	}
	if opts.MaxOpen < 0 {
		return nil, fmt.Errorf("open tenant stores: MaxOpen %d is negative", opts.MaxOpen)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("open tenant stores: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open tenant stores: %w", err)
	}
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("open tenant stores: %w", err)
	}
	files, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("open tenant stores: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open tenant stores: %w", err)
	}
	known := make(map[string]bool, len(entries))
	for _, e := range entries {
		if e.IsDir() && validStorageID(e.Name()) {
			known[e.Name()] = true
		}
	}
	db := &DB{
		dir:        dir,
		locator:    opts.Locator,
		ciphers:    opts.Ciphers,
		log:        cmp.Or(opts.Logger, slog.New(slog.DiscardHandler)),
		migrations: fsys,
		schema:     len(files),
		known:      known,
		lost:       map[string]bool{},
		missing:    map[string]bool{},
	}
	db.pool = newPool(cmp.Or(opts.MaxOpen, defaultMaxOpen()), db.openTenant, db.log)
	return db, nil
}

// sealedMessage is a message as stored: content and meta encrypted.
type sealedMessage struct {
	role          string
	content, meta []byte // meta nil → NULL
	created       string
}

// AppendMessages appends msgs to the session of scope's end user, in one
// transaction. A message with a zero CreatedAt gets the current time. Content
// and meta are encrypted with the tenant's key; an empty meta is stored as
// NULL and read back as nil.
func (db *DB) AppendMessages(ctx context.Context, scope auth.Scope, session tenant.SessionID, msgs []store.Message) error {
	if err := check(scope, session); err != nil {
		return fmt.Errorf("append messages: %w", err)
	}
	h, c, err := db.acquire(ctx, scope)
	if err != nil {
		return fmt.Errorf("append messages: %w", err)
	}
	defer db.pool.release(h)
	if err := appendMessages(ctx, h.v, c, scope.User(), session, msgs); err != nil {
		return fmt.Errorf("append messages: %w", err)
	}
	return nil
}

func appendMessages(ctx context.Context, tdb *tenantDB, c *keyring.Cipher, user tenant.UserID, session tenant.SessionID, msgs []store.Message) error {
	now := time.Now().UTC()
	// Encrypt before queueing for the write lock: sealing needs no lock.
	sealed := make([]sealedMessage, len(msgs))
	contentCtx, metaCtx := seal.MessageContent(user, session), seal.MessageMeta(user, session)
	for i, m := range msgs {
		created := m.CreatedAt
		if created.IsZero() {
			created = now
		}
		sealed[i] = sealedMessage{
			role:    m.Role,
			content: c.Seal([]byte(m.Content), contentCtx),
			created: created.UTC().Format(timeFormat),
		}
		if len(m.Meta) > 0 {
			sealed[i].meta = c.Seal(m.Meta, metaCtx)
		}
	}

	return tdb.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.StmtContext(ctx, tdb.upsertSession).ExecContext(ctx,
			user, session, now.Format(timeFormat), now.Format(timeFormat)); err != nil {
			return err
		}
		insert := tx.StmtContext(ctx, tdb.insertMessage)
		for _, m := range sealed {
			if _, err := insert.ExecContext(ctx, user, session, m.role, m.content, m.meta, m.created); err != nil {
				return err
			}
		}
		return nil
	})
}

// Messages returns the last limit messages of the session of scope's end user,
// oldest first; limit <= 0 means all. An unknown session has no messages. A
// message that does not decrypt fails the call with keyring.ErrDecrypt.
func (db *DB) Messages(ctx context.Context, scope auth.Scope, session tenant.SessionID, limit int) ([]store.Message, error) {
	if err := check(scope, session); err != nil {
		return nil, fmt.Errorf("read messages: %w", err)
	}
	h, c, err := db.acquire(ctx, scope)
	if err != nil {
		return nil, fmt.Errorf("read messages: %w", err)
	}
	defer db.pool.release(h)
	msgs, err := messages(ctx, h.v, c, scope.User(), session, limit)
	if err != nil {
		return nil, fmt.Errorf("read messages: %w", err)
	}
	return msgs, nil
}

// DeleteSession removes the session of scope's end user and its messages;
// store.ErrNotFound if there is none.
func (db *DB) DeleteSession(ctx context.Context, scope auth.Scope, session tenant.SessionID) error {
	if err := check(scope, session); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	h, _, err := db.acquire(ctx, scope)
	if err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	defer db.pool.release(h)
	user := scope.User()
	err = h.v.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE user_id = ? AND session_id = ?`, user, session); err != nil {
			return err
		}
		return deletedOne(tx.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = ? AND session_id = ?`, user, session))
	})
	if err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

func messages(ctx context.Context, tdb *tenantDB, c *keyring.Cipher, user tenant.UserID, session tenant.SessionID, limit int) ([]store.Message, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	rows, err := tdb.selectMessages.QueryContext(ctx, user, session, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	contentCtx, metaCtx := seal.MessageContent(user, session), seal.MessageMeta(user, session)
	var msgs []store.Message
	for rows.Next() {
		var (
			id            int64
			role, created string
			content, meta sql.RawBytes // only read by Open, which copies
		)
		if err := rows.Scan(&id, &role, &content, &meta, &created); err != nil {
			return nil, err
		}
		m, err := openMessage(c, contentCtx, metaCtx, id, role, content, meta, created)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	}
	return msgs, rows.Err()
}

// openMessage decrypts stored message id, sealed under contentCtx and
// metaCtx. A nil meta is NULL.
func openMessage(c *keyring.Cipher, contentCtx, metaCtx string, id int64, role string, content, meta []byte, created string) (store.Message, error) {
	m := store.Message{Role: role}
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
	if m.CreatedAt, err = time.Parse(timeFormat, created); err != nil {
		return store.Message{}, fmt.Errorf("message %d: %w", id, err)
	}
	return m, nil
}

// Drop closes the database of incarnation inc (stored under inc.Storage()),
// once the operations using it have finished, and removes its directory. It
// is used when a tenant is deleted, and takes the incarnation rather than
// asking the locator because by then the control plane no longer knows it.
// Operations for the storage id that start meanwhile wait for Drop, and later
// ones open a new, empty database.
func (db *DB) Drop(ctx context.Context, inc tenant.Incarnation) error {
	return db.drop(ctx, inc.Storage())
}

func (db *DB) drop(ctx context.Context, storageID string) error {
	if !validStorageID(storageID) {
		return fmt.Errorf("drop tenant store: invalid storage id %q", storageID)
	}
	dir := filepath.Join(db.dir, storageID)
	err := db.pool.drop(ctx, storageID, func() error {
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		db.forget(storageID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("drop tenant store: %w", err)
	}
	db.log.Info("dropped tenant store", "storage_id", storageID)
	return nil
}

// OpenHandles reports how many tenant databases are open or being opened.
func (db *DB) OpenHandles() int { return db.pool.opened() }

// Close waits for the operations in flight, closes every tenant database and
// makes later operations fail.
func (db *DB) Close() error {
	if err := db.pool.close(); err != nil {
		return fmt.Errorf("close tenant stores: %w", err)
	}
	return nil
}

// check refuses a call without an authenticated scope or a session id.
func check(scope auth.Scope, session tenant.SessionID) error {
	if !scope.Valid() {
		return store.ErrNoScope
	}
	if _, err := tenant.ParseSessionID(string(session)); err != nil {
		return err
	}
	return nil
}

// acquire locates the database of scope's tenant, finds the tenant's cipher
// and takes a handle to the database from the pool; the caller must release
// it. The cipher is found before the database is opened, so a tenant without
// a usable key gets no file.
func (db *DB) acquire(ctx context.Context, scope auth.Scope) (*handle[*tenantDB], *keyring.Cipher, error) {
	if scope.Incarnation().Tenant() != scope.Tenant() {
		return nil, nil, store.ErrNoScope
	}
	id, err := db.locator.StorageID(ctx, scope.Incarnation())
	if err != nil {
		return nil, nil, fmt.Errorf("locate tenant store: %w", err)
	}
	if !validStorageID(id) {
		return nil, nil, fmt.Errorf("locate tenant store: invalid storage id %q", id)
	}
	if p, ok := db.locator.(provisioned); ok && !db.isKnown(id) && p.StoreMadeAtProvision(scope.Incarnation()) {
		return nil, nil, db.missingStore(id)
	}
	c, err := db.ciphers.Cipher(ctx, scope.Incarnation())
	if err != nil {
		return nil, nil, fmt.Errorf("tenant key: %w", err)
	}
	if layers.Off("store") { // redteamswitch builds only: every tenant gets the first tenant's store and key
		id, c = db.firstStore(id, c)
	} else if c == nil || c.Tenant() != scope.Tenant() {
		return nil, nil, errors.New("tenant key: cipher is not the tenant's")
	}
	h, err := db.pool.acquire(ctx, id)
	if err != nil {
		return nil, nil, fmt.Errorf("open tenant store: %w", err)
	}
	// The tenant may have been deleted while its store was opening. Once
	// this check passes, a delete's Drop waits for this handle's release, so
	// the work lands in the old store and goes with it; if it fails, opening
	// may have re-created the dropped directory, and it goes now.
	if _, err := db.locator.StorageID(ctx, scope.Incarnation()); err != nil {
		db.pool.release(h)
		if derr := db.drop(context.WithoutCancel(ctx), id); derr != nil {
			db.log.Warn("remove store of a deleted tenant", "storage_id", id, "error", derr.Error())
		}
		return nil, nil, fmt.Errorf("locate tenant store: %w", err)
	}
	// An open database whose file was deleted or truncated would take
	// writes into an unlinked or broken file: refuse it, and close it.
	if err := h.v.intact(); err != nil {
		h.v.abandoned.Store(true)
		db.pool.release(h)
		if derr := db.pool.drop(ctx, id, func() error { return nil }); derr != nil && !errors.Is(derr, errClosed) {
			db.log.Warn("close a lost tenant store", "storage_id", id, "error", derr.Error())
		}
		return nil, nil, db.lostStore(id, err)
	}
	return h, c, nil
}

// firstStore is the store layer switched off (redteamswitch builds only, see
// package layers): the classic missing namespace, every tenant's reads and
// writes going to one store, here the first one acquired.
func (db *DB) firstStore(id string, c *keyring.Cipher) (string, *keyring.Cipher) {
	db.shared.once.Do(func() { db.shared.id, db.shared.c = id, c })
	return db.shared.id, db.shared.c
}

// DropOrphans removes every storage directory under the store's directory
// whose name keep does not report as a tenant's, and returns the names
// removed. It runs at start, before any request: a delete cut short by a
// crash (the control record, keys and data key are gone, the files not yet)
// leaves a directory no tenant owns, and this finishes it.
func (db *DB) DropOrphans(ctx context.Context, keep func(storageID string) bool) ([]string, error) {
	entries, err := os.ReadDir(db.dir)
	if err != nil {
		return nil, fmt.Errorf("list tenant stores: %w", err)
	}
	var removed []string
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || !validStorageID(name) || keep(name) {
			continue
		}
		if err := db.drop(ctx, name); err != nil {
			return removed, err
		}
		removed = append(removed, name)
	}
	return removed, nil
}

// tenantDB is one open tenant database. Writers queue on write in Go rather
// than in SQLite's busy handler, which sleeps for milliseconds at a time.
type tenantDB struct {
	*sql.DB
	commit groupCommit
	path   string      // of the database file
	file   os.FileInfo // the file as opened, to notice it replaced, removed or cut
	// abandoned is set when the file was found lost: closing the database
	// would checkpoint the WAL into what is left of the file and delete
	// the WAL, destroying what the operator could still recover, so Close
	// leaves its connections open until the process ends.
	abandoned atomic.Bool

	// Statements are prepared once per database: preparing costs more than
	// running them.
	upsertSession, insertMessage, selectMessages *sql.Stmt
	upsertSecret, deleteSecret, selectSecrets    *sql.Stmt
	selectSecretNames, selectExport              *sql.Stmt

	insertDocument, selectDocumentIDByMAC, selectDocumentExists *sql.Stmt
	selectDocument, selectDocuments, selectDocumentChunks       *sql.Stmt
	deleteDocumentIndex, deleteDocumentChunks, deleteDocument   *sql.Stmt
	insertChunk, insertChunkIndex, selectChunks                 *sql.Stmt
	selectChunkEmbeddings, searchChunks                         *sql.Stmt
	selectKBVersion, bumpKBVersion                              *sql.Stmt
	nextMemoryID, insertMemory, insertMemoryIndex               *sql.Stmt
	selectMemories, searchMemories                              *sql.Stmt
	selectExportDocuments, selectExportMemories                 *sql.Stmt

	prepare       sync.Mutex     // serializes preparing a group
	prepared      [2]atomic.Bool // by group: set once its statements are
	secrets       secretCache
	log           *slog.Logger
	checkpointing atomic.Bool
	background    sync.WaitGroup
}

// statement is one prepared statement of a tenantDB: where it goes, and its
// SQL.
type statement struct {
	dst func(*tenantDB) **sql.Stmt
	sql string
}

// Statements are prepared in two groups: those of a chat turn (history and
// secrets), when the database is opened, and the others on first use, by
// acquireAll, so that a pool miss for a chat turn prepares 7 statements,
// not 32. Preparing is most of what opening costs.
var (
	groups     = [...][]statement{chatStatements, otherStatements}
	statements = slices.Concat(chatStatements, otherStatements)
)

var chatStatements = []statement{
	{func(t *tenantDB) **sql.Stmt { return &t.upsertSession }, `
		INSERT INTO sessions (user_id, session_id, created_at, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (user_id, session_id) DO UPDATE SET updated_at = excluded.updated_at`},
	{func(t *tenantDB) **sql.Stmt { return &t.insertMessage }, `
		INSERT INTO messages (user_id, session_id, role, content, meta, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`},
	{func(t *tenantDB) **sql.Stmt { return &t.selectMessages }, `
		SELECT id, role, content, meta, created_at FROM (
			SELECT id, role, content, meta, created_at FROM messages
			WHERE user_id = ? AND session_id = ?
			ORDER BY id DESC LIMIT ?
		) ORDER BY id`},
	{func(t *tenantDB) **sql.Stmt { return &t.upsertSecret }, `
		INSERT INTO secrets (name, value, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`},
	{func(t *tenantDB) **sql.Stmt { return &t.deleteSecret }, `
		DELETE FROM secrets WHERE name = ?`},
	{func(t *tenantDB) **sql.Stmt { return &t.selectSecrets }, `
		SELECT name, value FROM secrets ORDER BY name`},
	{func(t *tenantDB) **sql.Stmt { return &t.selectSecretNames }, `
		SELECT name FROM secrets ORDER BY name`},
}

var otherStatements = []statement{
	// Every session, with its messages if it has any, in (user, session,
	// message) order; a session without messages is one row of NULLs.
	{func(t *tenantDB) **sql.Stmt { return &t.selectExport }, `
		SELECT s.user_id, s.session_id, s.created_at, s.updated_at,
			m.id, m.role, m.content, m.meta, m.created_at
		FROM sessions s LEFT JOIN messages m
			ON m.user_id = s.user_id AND m.session_id = s.session_id
		ORDER BY s.user_id, s.session_id, m.id`},

	{func(t *tenantDB) **sql.Stmt { return &t.insertDocument }, `
		INSERT INTO documents (id, hash_mac, hash, text, metadata, chunks, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`},
	{func(t *tenantDB) **sql.Stmt { return &t.selectDocumentIDByMAC }, `
		SELECT id FROM documents WHERE hash_mac = ?`},
	{func(t *tenantDB) **sql.Stmt { return &t.selectDocumentExists }, `
		SELECT 1 FROM documents WHERE id = ?`},
	{func(t *tenantDB) **sql.Stmt { return &t.selectDocument }, `
		SELECT hash, text, metadata, chunks, created_at, length(text) FROM documents WHERE id = ?`},
	// A page of the listing, newest first: the documents after ?1 (none:
	// from the newest), at most ?2 (-1: all).
	{func(t *tenantDB) **sql.Stmt { return &t.selectDocuments }, `
		SELECT id, hash, NULL, metadata, chunks, created_at, length(text) FROM documents
		WHERE ?1 = '' OR (created_at, rowid) < (SELECT created_at, rowid FROM documents WHERE id = ?1)
		ORDER BY created_at DESC, rowid DESC LIMIT ?2`},
	{func(t *tenantDB) **sql.Stmt { return &t.selectDocumentChunks }, `
		SELECT id, ordinal, text, embedding FROM chunks WHERE document_id = ? ORDER BY ordinal`},
	{func(t *tenantDB) **sql.Stmt { return &t.deleteDocumentIndex }, `
		DELETE FROM chunks_fts WHERE rowid IN (SELECT id FROM chunks WHERE document_id = ?)`},
	{func(t *tenantDB) **sql.Stmt { return &t.deleteDocumentChunks }, `
		DELETE FROM chunks WHERE document_id = ?`},
	{func(t *tenantDB) **sql.Stmt { return &t.deleteDocument }, `
		DELETE FROM documents WHERE id = ?`},
	{func(t *tenantDB) **sql.Stmt { return &t.insertChunk }, `
		INSERT INTO chunks (document_id, ordinal, text, embedding) VALUES (?, ?, ?, ?)`},
	{func(t *tenantDB) **sql.Stmt { return &t.insertChunkIndex }, `
		INSERT INTO chunks_fts (rowid, terms) VALUES (?, ?)`},
	{func(t *tenantDB) **sql.Stmt { return &t.selectChunks }, `
		SELECT id, document_id, ordinal, text FROM chunks
		WHERE id IN (SELECT value FROM json_each(?))`},
	{func(t *tenantDB) **sql.Stmt { return &t.selectChunkEmbeddings }, `
		SELECT id, document_id, ordinal, embedding FROM chunks
		WHERE embedding IS NOT NULL ORDER BY id`},
	// bm25() is lower for better matches. Ordering by it explicitly, rather
	// than by FTS5's rank column, lets SQLite keep only the best LIMIT rows;
	// rank prepares a sorting statement on every query and is slower.
	{func(t *tenantDB) **sql.Stmt { return &t.searchChunks }, `
		SELECT rowid, bm25(chunks_fts) AS score FROM chunks_fts
		WHERE chunks_fts MATCH ? ORDER BY score, rowid LIMIT ?`},
	{func(t *tenantDB) **sql.Stmt { return &t.selectKBVersion }, `
		SELECT version FROM kb_version WHERE id = 1`},
	{func(t *tenantDB) **sql.Stmt { return &t.bumpKBVersion }, `
		UPDATE kb_version SET version = max(version + 1, ?) WHERE id = 1`},
	{func(t *tenantDB) **sql.Stmt { return &t.nextMemoryID }, `
		SELECT coalesce(max(id), 0) + 1 FROM memories`},
	{func(t *tenantDB) **sql.Stmt { return &t.insertMemory }, `
		INSERT INTO memories (id, user_id, text, embedding, created_at) VALUES (?, ?, ?, ?, ?)`},
	{func(t *tenantDB) **sql.Stmt { return &t.insertMemoryIndex }, `
		INSERT INTO memories_fts (rowid, terms, user_id) VALUES (?, ?, ?)`},
	{func(t *tenantDB) **sql.Stmt { return &t.selectMemories }, `
		SELECT id, text, embedding, created_at FROM memories
		WHERE user_id = ? ORDER BY id DESC LIMIT ?`},
	{func(t *tenantDB) **sql.Stmt { return &t.searchMemories }, `
		SELECT rowid, bm25(memories_fts) AS score FROM memories_fts
		WHERE memories_fts MATCH ? AND user_id = ? ORDER BY score, rowid LIMIT ?`},
	// Export: documents oldest first, with text; memories by (user, id).
	{func(t *tenantDB) **sql.Stmt { return &t.selectExportDocuments }, `
		SELECT id, hash, text, metadata, chunks, created_at, length(text) FROM documents
		ORDER BY created_at, rowid`},
	{func(t *tenantDB) **sql.Stmt { return &t.selectExportMemories }, `
		SELECT id, user_id, text, created_at FROM memories ORDER BY user_id, id`},
}

// Close closes the statements and the database.
func (t *tenantDB) Close() error {
	t.background.Wait()
	var errs []error
	t.prepare.Lock()
	defer t.prepare.Unlock()
	for _, st := range statements {
		if s := *st.dst(t); s != nil {
			errs = append(errs, s.Close())
		}
	}
	if t.abandoned.Load() {
		return errors.Join(errs...)
	}
	return errors.Join(append(errs, t.DB.Close())...)
}

// openTenant opens the database stored under id. Every miss of the pool
// pays for it, so it does as little as it can: check the file, open the
// connection (PRAGMAs in the DSN, run per connection), read user_version
// and prepare the statements. Creating and migrating run once per
// incarnation, in create, or when the schema is older than this binary.
func (db *DB) openTenant(ctx context.Context, id string) (*tenantDB, error) {
	if db.isLost(id) {
		return nil, fmt.Errorf("open tenant store: %w: it was found missing or damaged before", store.ErrLost)
	}
	if !db.isKnown(id) {
		// A store no one created: a tenant provisioned before stores were
		// created at provisioning, or one made without the lifecycle.
		if err := db.create(ctx, id); err != nil {
			return nil, err
		}
		db.log.Warn("created a tenant store on first use, not at provisioning", "storage_id", id)
	}
	path := filepath.Join(db.dir, id, fileName)
	fi, err := checkFile(path)
	if err != nil {
		return nil, db.lostStore(id, err)
	}
	uri, err := dsn(path, false)
	if err != nil {
		return nil, err
	}
	sqlDB, err := sql.Open("sqlite", uri)
	if err != nil {
		return nil, err
	}
	sqlDB.SetMaxOpenConns(connsPerTenant)
	sqlDB.SetMaxIdleConns(connsPerTenant)
	var version int
	if err := sqlDB.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		if damaged(err) {
			// Left open, not closed: see tenantDB.abandoned.
			return nil, db.lostStore(id, err)
		}
		return nil, errors.Join(fmt.Errorf("read schema version: %w", err), sqlDB.Close())
	}
	if version < db.schema {
		if err := db.migrate(ctx, sqlDB); err != nil {
			return nil, errors.Join(err, sqlDB.Close())
		}
	}
	tdb := &tenantDB{DB: sqlDB, path: path, file: fi, log: db.log.With("storage_id", id)}
	if err := tdb.prepareGroup(ctx, 0); err != nil {
		return nil, errors.Join(err, tdb.Close())
	}
	db.found(id)
	return tdb, nil
}

// prepareGroup prepares the statements of groups[g] unless they are. A
// failure leaves the group to be prepared again by the next call.
func (t *tenantDB) prepareGroup(ctx context.Context, g int) error {
	if t.prepared[g].Load() {
		return nil
	}
	t.prepare.Lock()
	defer t.prepare.Unlock()
	if t.prepared[g].Load() {
		return nil
	}
	for _, st := range groups[g] {
		dst := st.dst(t)
		if *dst != nil {
			continue
		}
		s, err := t.PrepareContext(ctx, st.sql)
		if err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
		*dst = s
	}
	t.prepared[g].Store(true)
	return nil
}

// acquireAll is acquire for the calls that use statements beyond a chat
// turn's (knowledge, memories, export): it prepares them first.
func (db *DB) acquireAll(ctx context.Context, scope auth.Scope) (*handle[*tenantDB], *keyring.Cipher, error) {
	h, c, err := db.acquire(ctx, scope)
	if err != nil {
		return nil, nil, err
	}
	if err := h.v.prepareGroup(ctx, 1); err != nil {
		db.pool.release(h)
		return nil, nil, err
	}
	return h, c, nil
}

// Create makes the database of incarnation inc, empty and migrated. The
// lifecycle calls it when it provisions a tenant; from then on, a database
// that disappears is refused with store.ErrLost, never made again. Creating
// a store that exists does nothing.
func (db *DB) Create(ctx context.Context, inc tenant.Incarnation) error {
	id, err := db.locator.StorageID(ctx, inc)
	if err != nil {
		return fmt.Errorf("create tenant store: %w", err)
	}
	if !validStorageID(id) {
		return fmt.Errorf("create tenant store: invalid storage id %q", id)
	}
	if err := db.create(ctx, id); err != nil {
		return fmt.Errorf("create tenant store: %w", err)
	}
	return nil
}

// create makes the database stored under id unless it is known, and
// migrates it.
func (db *DB) create(ctx context.Context, id string) error {
	db.created.Lock()
	defer db.created.Unlock()
	if db.isKnown(id) {
		return nil
	}
	dir := filepath.Join(db.dir, id)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	// Create the file before SQLite does, so it is 0600; SQLite gives its
	// -wal and -shm files the mode of the database file.
	path := filepath.Join(dir, fileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	uri, err := dsn(path, true)
	if err != nil {
		return err
	}
	sqlDB, err := sql.Open("sqlite", uri)
	if err != nil {
		return err
	}
	sqlDB.SetMaxOpenConns(1)
	err = db.migrate(ctx, sqlDB)
	if err == nil {
		// Move the schema from the WAL into the file, so that from now on
		// a file without a header is a damaged one.
		_, err = sqlDB.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)")
	}
	if err = errors.Join(err, sqlDB.Close()); err != nil {
		return err
	}
	// The new names must survive a power loss too.
	if err := errors.Join(syncDir(dir), syncDir(db.dir)); err != nil {
		return err
	}
	db.found(id)
	return nil
}

// migrate brings the schema of sqlDB up to date and records its version in
// user_version, so that opening it next time reads one number instead.
func (db *DB) migrate(ctx context.Context, sqlDB *sql.DB) error {
	migrator, err := goose.NewProvider(goose.DialectSQLite3, sqlDB, db.migrations, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := migrator.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := sqlDB.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", db.schema)); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// syncDir flushes directory dir, so the names created in it are on disk.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// checkFile returns the info of the database file at path, or an error if it
// is missing or is not (any longer) a whole SQLite database.
func checkFile(path string) (os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var header [100]byte
	if _, err := io.ReadFull(f, header[:]); err != nil {
		return nil, fmt.Errorf("%s: %d bytes, no database header", path, fi.Size())
	}
	if !bytes.HasPrefix(header[:], []byte("SQLite format 3\x00")) {
		return nil, fmt.Errorf("%s: not a SQLite database", path)
	}
	page := int64(binary.BigEndian.Uint16(header[16:18]))
	if page == 1 {
		page = 65536
	}
	if page < 512 || fi.Size()%page != 0 {
		return nil, fmt.Errorf("%s: %d bytes, not whole pages of %d", path, fi.Size(), page)
	}
	// The size in pages the header records is valid when its change
	// counter matches the one at offset 92, and only without a WAL to
	// replay: a checkpoint cut short (a crash, a disk gone) writes page 1
	// before the pages past the file's end, and the WAL still holds them.
	pages := int64(binary.BigEndian.Uint32(header[28:32]))
	if wal, err := os.Stat(path + "-wal"); err == nil && wal.Size() > 0 {
		return fi, nil
	}
	if bytes.Equal(header[24:28], header[92:96]) && fi.Size() < pages*page {
		return nil, fmt.Errorf("%s: %d bytes, the header says %d pages of %d", path, fi.Size(), pages, page)
	}
	return fi, nil
}

// damaged reports whether err is SQLite finding its file corrupt or not a
// database.
func damaged(err error) bool {
	var e *driver.Error
	if !errors.As(err, &e) {
		return false
	}
	const corrupt, notADB = 11, 26 // SQLITE_CORRUPT, SQLITE_NOTADB
	code := e.Code() & 0xff
	return code == corrupt || code == notADB
}

// intact reports, as an error, whether the database file was removed,
// replaced or cut short since t was opened.
func (t *tenantDB) intact() error {
	fi, err := os.Stat(t.path)
	switch {
	case err != nil:
		return err
	case !os.SameFile(fi, t.file):
		return fmt.Errorf("%s was replaced", t.path)
	case fi.Size() < t.file.Size() || fi.Size()%512 != 0:
		// In WAL mode only a checkpoint writes the file, and it never
		// shrinks it (no auto_vacuum, no VACUUM).
		return fmt.Errorf("%s: cut from %d to %d bytes", t.path, t.file.Size(), fi.Size())
	}
	return nil
}

// lostStore reports store id lost: the operator hears it once, the caller
// gets store.ErrLost.
func (db *DB) lostStore(id string, cause error) error {
	db.mu.Lock()
	first := !db.lost[id]
	db.lost[id] = true
	db.mu.Unlock()
	if first {
		db.log.Error("tenant store lost: its database file is missing or damaged; it stays refused until it is restored and the server restarted",
			"storage_id", id, "error", cause.Error())
	}
	return fmt.Errorf("open tenant store: %w: %v", store.ErrLost, cause)
}

// missingStore refuses store id, whose tenant's control record says it was
// made at provisioning, and which is not there. Unlike a lost store it is
// not refused for good: the control record is committed before the store is
// made, so a reader that walks the tenants (the guard's start-up index) can
// come between the two, and the store's creation a moment later must then
// still succeed. A store that is truly gone stays refused all the same, as
// nothing makes it again.
func (db *DB) missingStore(id string) error {
	db.mu.Lock()
	first := !db.missing[id]
	db.missing[id] = true
	db.mu.Unlock()
	cause := "its directory is missing, though it was made when the tenant was provisioned"
	if first {
		db.log.Error("tenant store lost: "+cause+"; it stays refused until it is restored and the server restarted", "storage_id", id)
	}
	return fmt.Errorf("open tenant store: %w: %s", store.ErrLost, cause)
}

func (db *DB) isKnown(id string) bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.known[id]
}

func (db *DB) isLost(id string) bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.lost[id]
}

// found records that store id exists.
func (db *DB) found(id string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.known[id] = true
}

// forget records that store id was removed on purpose.
func (db *DB) forget(id string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	delete(db.known, id)
	delete(db.lost, id)
}

// dsn returns the driver name for the database file at path (a file: URI, see
// sqliteuri.File). Every transaction takes
// the write lock at BEGIN (_txlock=immediate), so a read-then-write transaction
// never fails with SQLITE_BUSY halfway through; reads run outside transactions.
// synchronous(FULL) makes every commit fsync the WAL before it returns (NORMAL
// does not, in WAL mode): a write acknowledged is on disk. Only create may make
// the file (mode=rwc); otherwise a connection opened after the file was removed
// fails instead of starting an empty database (mode=rw).
func dsn(path string, create bool) (string, error) {
	mode := "rw"
	if create {
		mode = "rwc"
	}
	q := url.Values{
		"_pragma": {
			"busy_timeout(5000)",
			"journal_mode(WAL)",
			"synchronous(FULL)",
			"wal_autocheckpoint(0)",
			fmt.Sprintf("journal_size_limit(%d)", walLimit),
			"foreign_keys(ON)",
		},
		"_txlock": {"immediate"},
		"mode":    {mode},
	}
	return sqliteuri.File(path, q)
}

// validStorageID reports whether id is 8 to 64 of [a-z0-9], so that it is one
// safe path component.
func validStorageID(id string) bool {
	if len(id) < 8 || len(id) > 64 {
		return false
	}
	for _, c := range []byte(id) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// OpenTenants returns how many tenant databases are open (or opening).
func (db *DB) OpenTenants() int { return db.pool.opened() }
