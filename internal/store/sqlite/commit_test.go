package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// oneStore locates every tenant at the same storage id; the tests here
// reach the tenantDB directly and never encrypt.
type oneStore string

func (s oneStore) StorageID(context.Context, tenant.Incarnation) (string, error) {
	return string(s), nil
}

type noCiphers struct{}

func (noCiphers) Cipher(context.Context, tenant.Incarnation) (*keyring.Cipher, error) {
	return nil, errors.New("no keys in this test")
}

// openTenantDB opens a store and returns its one tenant database, held
// until the test ends.
func openTenantDB(t *testing.T) *tenantDB {
	t.Helper()
	db, err := Open(Options{Dir: t.TempDir(), Locator: oneStore("store0001"), Ciphers: noCiphers{}})
	if err != nil {
		t.Fatal(err)
	}
	h, err := db.pool.acquire(t.Context(), "store0001")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.pool.release(h)
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	if _, err := h.v.ExecContext(t.Context(), "CREATE TABLE t (v TEXT)"); err != nil {
		t.Fatal(err)
	}
	return h.v
}

func insert(v string) writeFunc {
	return func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO t (v) VALUES (?)", v)
		return err
	}
}

func rows(t *testing.T, tdb *tenantDB) []string {
	t.Helper()
	rs, err := tdb.QueryContext(t.Context(), "SELECT v FROM t ORDER BY rowid")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var got []string
	for rs.Next() {
		var v string
		if err := rs.Scan(&v); err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// queued waits until n writes wait behind the running batch.
func queued(t *testing.T, tdb *tenantDB, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		tdb.commit.mu.Lock()
		got := len(tdb.commit.queue)
		tdb.commit.mu.Unlock()
		if got == n {
			return
		}
	}
	t.Fatalf("%d writes never queued", n)
}

var errRefused = errors.New("refused")

// TestGroupCommit holds a first write open, queues more behind it, and
// checks that they commit together as one batch and that each write gets
// its own outcome: a failed or cancelled one leaves nothing and does not
// take the others down; a broken transaction fails them all and commits
// none.
func TestGroupCommit(t *testing.T) {
	tests := []struct {
		name string
		// Each write is a value to insert and how it ends.
		writes []write
		want   []string // rows after the batch (besides the first write's)
	}{
		{"all succeed", []write{{v: "a"}, {v: "b"}, {v: "c"}}, []string{"a", "b", "c"}},
		{"one fails", []write{{v: "a"}, {v: "b", fail: true}, {v: "c"}}, []string{"a", "c"}},
		{"one cancelled while queued", []write{{v: "a"}, {v: "b", cancel: true}, {v: "c"}}, []string{"a", "c"}},
		{"all fail", []write{{v: "a", fail: true}, {v: "b", fail: true}}, nil},
		{"transaction broken", []write{{v: "a"}, {v: "b", breaks: true}, {v: "c"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			tdb := openTenantDB(t)
			started, release := make(chan struct{}), make(chan struct{})
			firstDone := make(chan error, 1)
			go func() {
				firstDone <- tdb.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
					close(started)
					<-release
					return insert("first")(ctx, tx)
				})
			}()
			<-started // the first write leads, alone, and holds its batch open
			errs := make([]error, len(tt.writes))
			cancels := make([]context.CancelFunc, len(tt.writes))
			var wg sync.WaitGroup
			for i, w := range tt.writes {
				wctx, cancel := context.WithCancel(ctx)
				cancels[i] = cancel
				wg.Go(func() { errs[i] = tdb.write(wctx, w.fn()) })
				queued(t, tdb, i+1) // in this order
			}
			for i, w := range tt.writes {
				if w.cancel {
					cancels[i]()
				}
			}
			close(release)
			wg.Wait()
			for _, cancel := range cancels {
				cancel()
			}
			if err := <-firstDone; err != nil {
				t.Fatalf("first write: %v", err)
			}

			if got, want := rows(t, tdb), append([]string{"first"}, tt.want...); !slices.Equal(got, want) {
				t.Errorf("rows: got %q, want %q", got, want)
			}
			broken := slices.ContainsFunc(tt.writes, func(w write) bool { return w.breaks })
			for i, w := range tt.writes {
				switch {
				case w.cancel && !errors.Is(errs[i], context.Canceled):
					t.Errorf("write %s: got %v, want context.Canceled", w.v, errs[i])
				case w.fail && !errors.Is(errs[i], errRefused):
					t.Errorf("write %s: got %v, want its own error", w.v, errs[i])
				case broken && errs[i] == nil:
					t.Errorf("write %s in a broken batch: got nil error", w.v)
				case !broken && !w.cancel && !w.fail && errs[i] != nil:
					t.Errorf("write %s: %v", w.v, errs[i])
				}
			}
			batches, writes := tdb.commit.batches, tdb.commit.writes
			wantBatches, wantWrites := uint64(2), uint64(1+len(tt.want))
			if len(tt.want) == 0 {
				wantBatches = 1
			}
			if batches != wantBatches || writes != wantWrites {
				t.Errorf("committed %d writes in %d batches, want %d in %d", writes, batches, wantWrites, wantBatches)
			}
		})
	}
}

type write struct {
	v      string
	fail   bool // the write's function fails after inserting
	breaks bool // the write's function ends the transaction
	cancel bool // the write's context ends while it waits in the queue
}

func (w write) fn() writeFunc {
	return func(ctx context.Context, tx *sql.Tx) error {
		if err := insert(w.v)(ctx, tx); err != nil {
			return err
		}
		switch {
		case w.fail:
			return fmt.Errorf("write %s: %w", w.v, errRefused)
		case w.breaks:
			_, err := tx.ExecContext(ctx, "ROLLBACK")
			return err
		}
		return nil
	}
}

// TestDurablePragmas checks what a 2xx relies on, on every connection:
// commits fsync the WAL (synchronous=FULL), and a connection cannot create
// the file.
func TestDurablePragmas(t *testing.T) {
	tdb := openTenantDB(t)
	ctx := t.Context()
	conns := make([]*sql.Conn, connsPerTenant)
	for i := range conns {
		c, err := tdb.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	for i, c := range conns {
		var sync, limit int
		var mode string
		if err := c.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, "PRAGMA journal_size_limit").Scan(&limit); err != nil {
			t.Fatal(err)
		}
		if sync != 2 || mode != "wal" || limit != walLimit {
			t.Errorf("connection %d: synchronous %d, journal_mode %s, journal_size_limit %d; want 2 (FULL), wal, %d",
				i, sync, mode, limit, walLimit)
		}
	}
}

// TestWALBounded writes to one tenant database for 30 s from concurrent
// writers while readers keep scanning it (each scan holds a snapshot that
// keeps a PASSIVE checkpoint from finishing), and samples the WAL file's
// size: it must stay within a small multiple of walLimit, the
// checkpointing threshold (SQLite's wal_autocheckpoint × page size).
func TestWALBounded(t *testing.T) {
	const (
		run     = 30 * time.Second
		writers = 8
		readers = 2
		rowSize = 32 << 10
		keep    = 250 // rows kept, so the table stays a few MB
		bound   = 4 * walLimit
	)
	tdb := openTenantDB(t)
	ctx, stop := context.WithTimeout(t.Context(), run)
	defer stop()
	wal := tdb.path + "-wal"
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		maxSize  int64
		samples  int
		written  int64
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil && ctx.Err() == nil {
			firstErr = err
		}
	}
	row := make([]byte, rowSize)
	for range writers {
		wg.Go(func() {
			for ctx.Err() == nil {
				err := tdb.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
					res, err := tx.ExecContext(ctx, "INSERT INTO t (v) VALUES (?)", row)
					if err != nil {
						return err
					}
					id, err := res.LastInsertId()
					if err != nil {
						return err
					}
					_, err = tx.ExecContext(ctx, "DELETE FROM t WHERE rowid <= ?", id-keep)
					return err
				})
				if err != nil {
					fail(err)
					return
				}
				mu.Lock()
				written += rowSize
				mu.Unlock()
			}
		})
	}
	for range readers {
		wg.Go(func() {
			for ctx.Err() == nil {
				var n int64
				if err := tdb.QueryRowContext(ctx, "SELECT coalesce(sum(length(v)), 0) FROM t").Scan(&n); err != nil {
					fail(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			fi, err := os.Stat(wal)
			if err != nil {
				continue // between a TRUNCATE and the next write there may be none
			}
			mu.Lock()
			maxSize = max(maxSize, fi.Size())
			samples++
			mu.Unlock()
		}
	})
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	t.Logf("wrote %d MB in %v, %d batches; largest WAL of %d samples: %d KB (bound %d KB)",
		written>>20, run, tdb.commit.batches, samples, maxSize>>10, bound>>10)
	if written < 2*bound {
		t.Fatalf("wrote only %d bytes: too few to test the bound", written)
	}
	if maxSize > bound {
		t.Errorf("WAL grew to %d bytes, want at most %d (4 × %d)", maxSize, bound, walLimit)
	}
}
