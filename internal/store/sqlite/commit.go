package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"sync"

	"github.com/bulkhead-ai/bulkhead/internal/store"
)

// Group commit. Every commit of a tenant database waits for an fsync of its
// WAL (synchronous=FULL): a 2xx means the write is on disk. One fsync costs
// milliseconds on most disks, so concurrent writers of a tenant share it: the
// writes that queue while one commit's fsync runs are then committed
// together, as one transaction.
//
// Semantics. Each write runs inside its own SAVEPOINT of the shared
// transaction, in queue order, and sees the writes queued before it. A write
// whose function fails is rolled back to its savepoint and gets its own
// error; the others go on and commit. If the transaction as a whole fails
// (BEGIN, a savepoint that cannot be rolled back, COMMIT), every write of the
// batch gets that error and none of them is acknowledged. A write whose
// context ends before its turn is skipped with the context's error; once its
// turn has come it runs to the end on a context without cancellation, because
// an interrupted statement inside an explicit transaction makes SQLite roll
// back the whole transaction, and with it the other writers' work.
//
// There is no writer goroutine: the first writer to find no batch running
// leads, commits the queue, and hands the lead to the first writer that
// queued meanwhile, so every batch runs on the goroutine of one of its
// writers and a closed database has nothing left running.

// maxBatch bounds how many writes share one transaction, so one batch does
// not hold the write lock for long.
const maxBatch = 128

// writeFunc is one write: it runs its statements in tx and reports whether
// they should stand.
type writeFunc func(ctx context.Context, tx *sql.Tx) error

type writeReq struct {
	ctx  context.Context
	fn   writeFunc
	err  error
	done chan struct{} // closed when err is set
	lead chan struct{} // closed when this writer is to commit the queue
}

// groupCommit is the queue of a tenant database's writes.
type groupCommit struct {
	mu      sync.Mutex
	queue   []*writeReq
	leading bool // a batch is being committed, or its leader is waking up

	batches, writes uint64 // committed so far, for CommitStats
}

// write runs fn in a write transaction, committed (and synced) before write
// returns nil. See the comment above for what it shares with other writes.
func (t *tenantDB) write(ctx context.Context, fn writeFunc) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &writeReq{ctx: ctx, fn: fn, done: make(chan struct{}), lead: make(chan struct{})}
	g := &t.commit
	g.mu.Lock()
	g.queue = append(g.queue, r)
	lead := !g.leading
	g.leading = true
	g.mu.Unlock()
	if !lead {
		select {
		case <-r.done:
			return r.err
		case <-r.lead:
		}
	}
	t.lead(ctx)
	<-r.done // r was first in the queue, so it was in the batch just committed
	return r.err
}

// lead commits one batch from the queue and passes the lead on.
func (t *tenantDB) lead(ctx context.Context) {
	g := &t.commit
	g.mu.Lock()
	n := min(len(g.queue), maxBatch)
	batch := make([]*writeReq, n)
	copy(batch, g.queue)
	g.queue = append(g.queue[:0], g.queue[n:]...)
	g.mu.Unlock()

	committed := t.commitBatch(context.WithoutCancel(ctx), batch)
	for _, r := range batch {
		close(r.done)
	}
	if committed > 0 {
		t.committed()
	}

	g.mu.Lock()
	if committed > 0 {
		g.batches++
		g.writes += uint64(committed)
	}
	if len(g.queue) > 0 {
		close(g.queue[0].lead)
	} else {
		g.leading = false
	}
	g.mu.Unlock()
}

// commitBatch runs the writes of batch in one transaction, sets each one's
// error and returns how many were committed.
func (t *tenantDB) commitBatch(ctx context.Context, batch []*writeReq) int {
	fail := func(err error) {
		for _, r := range batch {
			if r.err == nil {
				r.err = err
			}
		}
	}
	tx, err := t.BeginTx(ctx, nil)
	if err != nil {
		fail(err)
		return 0
	}
	defer tx.Rollback()
	alone := len(batch) == 1
	stand := 0
	for _, r := range batch {
		if r.err = r.ctx.Err(); r.err != nil {
			continue
		}
		if alone {
			// No savepoint needed: a failure rolls back the transaction.
			if r.err = r.fn(ctx, tx); r.err != nil {
				return 0
			}
			stand++
			continue
		}
		if _, err := tx.ExecContext(ctx, "SAVEPOINT write"); err != nil {
			fail(fmt.Errorf("group commit: %w", err))
			return 0
		}
		if r.err = r.fn(ctx, tx); r.err != nil {
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO write"); err != nil {
				fail(fmt.Errorf("group commit: undo a failed write: %w", err))
				return 0
			}
		} else {
			stand++
		}
		if _, err := tx.ExecContext(ctx, "RELEASE write"); err != nil {
			fail(fmt.Errorf("group commit: %w", err))
			return 0
		}
	}
	if stand == 0 {
		return 0
	}
	if err := tx.Commit(); err != nil {
		fail(err)
		return 0
	}
	return stand
}

// deletedOne takes the result of a DELETE and fails with store.ErrNotFound
// if it deleted nothing.
func deletedOne(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// The WAL is checkpointed here, not by SQLite's automatic checkpoint, which
// runs inside a committing writer and fsyncs there, stalling every writer
// queued behind it. After a batch that left the WAL file larger than
// walLimit, a PASSIVE checkpoint runs in the background, beside the writers,
// which WAL mode allows; the next writer then starts the WAL again from its
// beginning and SQLite truncates the file to journal_size_limit (walLimit).
//
// The WAL starts over only when no reader still reads from it, and a steady
// stream of readers (each a snapshot that began while the WAL had frames)
// keeps one there at all times, so the file would grow without end. Past
// 2×walLimit the leader of the writers therefore runs a TRUNCATE checkpoint
// itself before passing the lead on: it waits for the readers of the WAL to
// finish (new readers read the checkpointed file), and the writers wait
// meanwhile in the queue. Run from a background connection instead, it would
// have to win SQLite's write lock against writers that hold it nearly all
// the time, polling in SQLite's busy handler, and it lost for seconds.
const (
	walPages = 1000 // SQLite's default wal_autocheckpoint
	pageSize = 4096 // SQLite's default page size
	walLimit = walPages * pageSize
)

// committed runs after a batch committed, while its leader still leads.
func (t *tenantDB) committed() {
	fi, err := os.Stat(t.path + "-wal")
	if err != nil || fi.Size() <= walLimit || !t.checkpointing.CompareAndSwap(false, true) {
		return
	}
	if fi.Size() > 2*walLimit {
		defer t.checkpointing.Store(false)
		t.checkpoint("TRUNCATE")
		return
	}
	t.background.Add(1)
	go func() {
		defer t.background.Done()
		defer t.checkpointing.Store(false)
		t.checkpoint("PASSIVE")
	}()
}

func (t *tenantDB) checkpoint(mode string) {
	// It is not cancelled: Close waits for it, and the writers for the
	// leader that runs it.
	if _, err := t.ExecContext(context.Background(), "PRAGMA wal_checkpoint("+mode+")"); err != nil {
		t.log.Warn("checkpoint tenant store", "mode", mode, "error", err)
	}
}

// CommitStats reports how many batches (transactions, one WAL fsync each)
// and how many writes the tenant databases now open have committed since
// they were opened: writes/batches is how many writes shared an fsync.
func (db *DB) CommitStats() (batches, writes uint64) {
	db.pool.mu.Lock()
	defer db.pool.mu.Unlock()
	for _, h := range db.pool.entries {
		select {
		case <-h.ready:
		default:
			continue
		}
		if h.err != nil {
			continue
		}
		g := &h.v.commit
		g.mu.Lock()
		batches += g.batches
		writes += g.writes
		g.mu.Unlock()
	}
	return batches, writes
}
