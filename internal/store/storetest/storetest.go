// Package storetest is the conformance suite every tenant data-plane backend
// runs. It checks that a backend keeps tenants, end users and sessions apart and
// refuses calls without an authenticated scope.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Backend is the part of a tenant data-plane backend the suite exercises.
type Backend interface {
	AppendMessages(ctx context.Context, scope auth.Scope, session tenant.SessionID, msgs []store.Message) error
	Messages(ctx context.Context, scope auth.Scope, session tenant.SessionID, limit int) ([]store.Message, error)
}

// The tenants open must provision. Any other tenant is unknown to the backend.
const (
	Acme   tenant.ID = "acme"
	Globex tenant.ID = "globex"
)

// Run runs the suite. open must return a new, empty backend in which the tenants
// Acme and Globex, and no others, are provisioned, and clean it up when t ends.
func Run(t *testing.T, open func(t *testing.T) Backend) {
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, open(t)) })
	t.Run("Limit", func(t *testing.T) { testLimit(t, open(t)) })
	t.Run("TenantsAreSeparate", func(t *testing.T) { testTenantsAreSeparate(t, open(t)) })
	t.Run("UsersAreSeparate", func(t *testing.T) { testUsersAreSeparate(t, open(t)) })
	t.Run("NoScope", func(t *testing.T) { testNoScope(t, open(t)) })
	t.Run("UnknownTenant", func(t *testing.T) { testUnknownTenant(t, open(t)) })
	t.Run("ConcurrentAppends", func(t *testing.T) { testConcurrentAppends(t, open(t)) })
}

func testRoundTrip(t *testing.T, b Backend) {
	scope := auth.TestScope(t, Acme, "alice")
	stamp := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.FixedZone("X", 3600))
	first := []store.Message{
		{Role: "system", Content: "be brief"},
		{Role: "user", Content: "héllo, 世界", CreatedAt: stamp},
	}
	second := []store.Message{
		{Role: "assistant", Content: "", Meta: []byte(`{"tool_calls":[{"id":"c1"}]}`)},
		{Role: "tool", Content: "42", Meta: []byte(`{"tool_call_id":"c1"}`)},
	}
	before := time.Now()
	mustAppend(t, b, scope, "s1", first)
	mustAppend(t, b, scope, "s1", second)
	after := time.Now()

	got := mustRead(t, b, scope, "s1", 0)
	want := append(append([]store.Message(nil), first...), second...)
	if diff := diffMessages(got, want); diff != "" {
		t.Fatalf("Messages(s1) differs: %s", diff)
	}
	if !got[1].CreatedAt.Equal(stamp) {
		t.Errorf("given CreatedAt: got %v, want %v", got[1].CreatedAt, stamp)
	}
	for _, i := range []int{0, 2, 3} {
		c := got[i].CreatedAt
		if c.Before(before.Add(-time.Second)) || c.After(after.Add(time.Second)) {
			t.Errorf("message %d: got CreatedAt %v, want the append time, between %v and %v", i, c, before, after)
		}
		if c.Location() != time.UTC {
			t.Errorf("message %d: got CreatedAt in %v, want UTC", i, c.Location())
		}
	}

	if got := mustRead(t, b, scope, "never-used", 0); len(got) != 0 {
		t.Errorf("unknown session: got %d messages, want 0", len(got))
	}
}

func testLimit(t *testing.T, b Backend) {
	scope := auth.TestScope(t, Acme, "alice")
	var all []store.Message
	for i := range 5 {
		all = append(all, store.Message{Role: "user", Content: fmt.Sprint("m", i)})
	}
	mustAppend(t, b, scope, "s1", all[:2])
	mustAppend(t, b, scope, "s1", all[2:])

	tests := []struct {
		limit int
		want  []store.Message
	}{
		{limit: 0, want: all},
		{limit: -1, want: all},
		{limit: 1, want: all[4:]},
		{limit: 3, want: all[2:]},
		{limit: 5, want: all},
		{limit: 100, want: all},
	}
	for _, tt := range tests {
		got := mustRead(t, b, scope, "s1", tt.limit)
		if diff := diffMessages(got, tt.want); diff != "" {
			t.Errorf("Messages(limit %d) differs: %s", tt.limit, diff)
		}
	}
}

func testTenantsAreSeparate(t *testing.T, b Backend) {
	acme := auth.TestScope(t, Acme, "alice")
	globex := auth.TestScope(t, Globex, "alice")
	mustAppend(t, b, acme, "s1", []store.Message{{Role: "user", Content: "acme secret"}})
	mustAppend(t, b, globex, "s1", []store.Message{{Role: "user", Content: "globex secret"}})
	mustAppend(t, b, globex, "globex-only", []store.Message{{Role: "user", Content: "globex private"}})

	tests := []struct {
		name    string
		scope   auth.Scope
		session tenant.SessionID
		want    []string
	}{
		{"acme reads its s1", acme, "s1", []string{"acme secret"}},
		{"globex reads its s1", globex, "s1", []string{"globex secret"}},
		{"acme names globex's session", acme, "globex-only", nil},
		{"globex reads its own session", globex, "globex-only", []string{"globex private"}},
	}
	for _, tt := range tests {
		got := contents(mustRead(t, b, tt.scope, tt.session, 0))
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

func testUsersAreSeparate(t *testing.T, b Backend) {
	alice := auth.TestScope(t, Acme, "alice")
	bob := alice.WithUser("bob")
	anon := alice.WithUser("")
	mustAppend(t, b, alice, "s1", []store.Message{{Role: "user", Content: "from alice"}})
	mustAppend(t, b, bob, "s1", []store.Message{{Role: "user", Content: "from bob"}})

	tests := []struct {
		name  string
		scope auth.Scope
		want  []string
	}{
		{"alice", alice, []string{"from alice"}},
		{"bob", bob, []string{"from bob"}},
		{"anonymous", anon, nil},
	}
	for _, tt := range tests {
		got := contents(mustRead(t, b, tt.scope, "s1", 0))
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s reads s1: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

func testNoScope(t *testing.T, b Backend) {
	ctx := t.Context()
	var zero auth.Scope
	err := b.AppendMessages(ctx, zero, "s1", []store.Message{{Role: "user", Content: "x"}})
	if !errors.Is(err, store.ErrNoScope) {
		t.Errorf("AppendMessages with zero scope: got error %v, want %v", err, store.ErrNoScope)
	}
	msgs, err := b.Messages(ctx, zero, "s1", 0)
	if !errors.Is(err, store.ErrNoScope) {
		t.Errorf("Messages with zero scope: got error %v, want %v", err, store.ErrNoScope)
	}
	if len(msgs) != 0 {
		t.Errorf("Messages with zero scope: got %d messages, want 0", len(msgs))
	}
}

func testUnknownTenant(t *testing.T, b Backend) {
	ctx := t.Context()
	scope := auth.TestScope(t, "initech", "alice")
	err := b.AppendMessages(ctx, scope, "s1", []store.Message{{Role: "user", Content: "x"}})
	if !errors.Is(err, store.ErrUnknownTenant) {
		t.Errorf("AppendMessages for unknown tenant: got error %v, want %v", err, store.ErrUnknownTenant)
	}
	msgs, err := b.Messages(ctx, scope, "s1", 0)
	if !errors.Is(err, store.ErrUnknownTenant) {
		t.Errorf("Messages for unknown tenant: got error %v, want %v", err, store.ErrUnknownTenant)
	}
	if len(msgs) != 0 {
		t.Errorf("Messages for unknown tenant: got %d messages, want 0", len(msgs))
	}
}

func testConcurrentAppends(t *testing.T, b Backend) {
	const writers, perWriter = 20, 10
	ctx := t.Context()
	// Writers share tenants, users and session ids in every combination, so a
	// message that lands in the wrong place shows up in another's session.
	scopeOf := func(w int) auth.Scope {
		id := Acme
		if w%2 == 1 {
			id = Globex
		}
		return auth.TestScope(t, id, tenant.UserID(fmt.Sprint("user", w%4/2)))
	}
	sessionOf := func(w int) tenant.SessionID { return tenant.SessionID(fmt.Sprint("s", w/4)) }

	var wg sync.WaitGroup
	errs := make(chan error, writers*perWriter)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				msg := store.Message{Role: "user", Content: fmt.Sprintf("w%d-%d", w, i)}
				if err := b.AppendMessages(ctx, scopeOf(w), sessionOf(w), []store.Message{msg}); err != nil {
					errs <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	for w := range writers {
		var want []string
		for i := range perWriter {
			want = append(want, fmt.Sprintf("w%d-%d", w, i))
		}
		got := contents(mustRead(t, b, scopeOf(w), sessionOf(w), 0))
		if !slices.Equal(got, want) {
			t.Errorf("writer %d's session: got %q, want %q", w, got, want)
		}
	}
}

func mustAppend(t *testing.T, b Backend, scope auth.Scope, session tenant.SessionID, msgs []store.Message) {
	t.Helper()
	if err := b.AppendMessages(t.Context(), scope, session, msgs); err != nil {
		t.Fatalf("AppendMessages(%v, %s): %v", scope, session, err)
	}
}

func mustRead(t *testing.T, b Backend, scope auth.Scope, session tenant.SessionID, limit int) []store.Message {
	t.Helper()
	msgs, err := b.Messages(t.Context(), scope, session, limit)
	if err != nil {
		t.Fatalf("Messages(%v, %s, %d): %v", scope, session, limit, err)
	}
	return msgs
}

func contents(msgs []store.Message) []string {
	var s []string
	for _, m := range msgs {
		s = append(s, m.Content)
	}
	return s
}

// diffMessages describes the first difference between got and want in role,
// content and meta, or returns "". CreatedAt is checked by the callers.
func diffMessages(got, want []store.Message) string {
	if len(got) != len(want) {
		return fmt.Sprintf("got %d messages %q, want %d %q", len(got), contents(got), len(want), contents(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Role != w.Role || g.Content != w.Content || !bytes.Equal(g.Meta, w.Meta) {
			return fmt.Sprintf("message %d: got {%q %q %q}, want {%q %q %q}", i, g.Role, g.Content, g.Meta, w.Role, w.Content, w.Meta)
		}
	}
	return ""
}
