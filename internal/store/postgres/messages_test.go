package postgres_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/store/storetest"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

func benchStore(b *testing.B) (*fixture, auth.Scope) {
	b.Helper()
	return newFixture(b), authtest.Scope(b, storetest.Acme, "alice")
}

// benchTurn is one chat turn, as in the SQLite backend's benchmarks.
var benchTurn = storetest.BenchTurn

func BenchmarkAppendMessages(b *testing.B) {
	db, scope := benchStore(b)
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if err := db.AppendMessages(ctx, scope, "s1", benchTurn); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendMessagesParallel appends turns from many goroutines, each
// to its own session, as concurrent chats do.
func BenchmarkAppendMessagesParallel(b *testing.B) {
	db, scope := benchStore(b)
	ctx := b.Context()
	b.ReportAllocs()
	var sessions atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		session := tenant.SessionID(fmt.Sprint("s", sessions.Add(1)))
		for pb.Next() {
			if err := db.AppendMessages(ctx, scope, session, benchTurn); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkMessages reads the last 20 messages of a 100-message session.
func BenchmarkMessages(b *testing.B) {
	db, scope := benchStore(b)
	ctx := b.Context()
	for range 50 {
		if err := db.AppendMessages(ctx, scope, "s1", benchTurn); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		msgs, err := db.Messages(ctx, scope, "s1", 20)
		if err != nil {
			b.Fatal(err)
		}
		if len(msgs) != 20 {
			b.Fatalf("got %d messages, want 20", len(msgs))
		}
	}
}
