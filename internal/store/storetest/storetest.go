// Package storetest is the conformance suite every tenant data-plane backend
// runs. It checks that a backend keeps tenants, end users and sessions apart,
// keeps each tenant's secrets, documents, search results and memories its own
// (and memories each end user's own), exports a tenant's data and nothing
// else, and refuses calls without an authenticated scope.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/secret"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Backend is the part of a tenant data-plane backend the suite exercises.
type Backend interface {
	AppendMessages(ctx context.Context, scope auth.Scope, session tenant.SessionID, msgs []store.Message) error
	Messages(ctx context.Context, scope auth.Scope, session tenant.SessionID, limit int) ([]store.Message, error)
	DeleteSession(ctx context.Context, scope auth.Scope, session tenant.SessionID) error
	PutSecret(ctx context.Context, scope auth.Scope, name tenant.SecretName, value []byte) error
	DeleteSecret(ctx context.Context, scope auth.Scope, name tenant.SecretName) error
	Secrets(ctx context.Context, scope auth.Scope) ([]store.Secret, error)
	Export(ctx context.Context, scope auth.Scope) (store.Export, error)

	PutDocument(ctx context.Context, scope auth.Scope, doc store.Document, chunks []store.Chunk) (store.Document, []store.Chunk, bool, error)
	Document(ctx context.Context, scope auth.Scope, id string) (store.Document, error)
	DeleteDocument(ctx context.Context, scope auth.Scope, id string) error
	Documents(ctx context.Context, scope auth.Scope, after string, limit int) ([]store.Document, error)
	Chunks(ctx context.Context, scope auth.Scope, ids []int64) ([]store.Chunk, error)
	ChunkEmbeddings(ctx context.Context, scope auth.Scope) ([]store.Chunk, error)
	SearchChunks(ctx context.Context, scope auth.Scope, query string, k int) ([]store.Hit, error)
	KBVersion(ctx context.Context, scope auth.Scope) (int64, error)
	PutMemory(ctx context.Context, scope auth.Scope, m store.Memory) (store.Memory, error)
	Memories(ctx context.Context, scope auth.Scope, limit int) ([]store.Memory, error)
	SearchMemories(ctx context.Context, scope auth.Scope, query string, k int) ([]store.Hit, error)
}

// The tenants open must provision. Any other tenant is unknown to the backend.
const (
	Acme   tenant.ID = "acme"
	Globex tenant.ID = "globex"
)

// Run runs the suite. open must return a new, empty backend in which the tenants
// Acme and Globex, and no others, are provisioned, and clean it up when t ends.
// If the backends open returns implement AtRestBackend, Run checks what they
// store at rest too.
func Run(t *testing.T, open func(t *testing.T) Backend) {
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, open(t)) })
	t.Run("Limit", func(t *testing.T) { testLimit(t, open(t)) })
	t.Run("TenantsAreSeparate", func(t *testing.T) { testTenantsAreSeparate(t, open(t)) })
	t.Run("UsersAreSeparate", func(t *testing.T) { testUsersAreSeparate(t, open(t)) })
	t.Run("DeleteSession", func(t *testing.T) { testDeleteSession(t, open(t)) })
	t.Run("NoScope", func(t *testing.T) { testNoScope(t, open(t)) })
	t.Run("UnknownTenant", func(t *testing.T) { testUnknownTenant(t, open(t)) })
	t.Run("ConcurrentAppends", func(t *testing.T) { testConcurrentAppends(t, open(t)) })
	t.Run("Secrets", func(t *testing.T) { testSecrets(t, open(t)) })
	t.Run("InvalidSecretName", func(t *testing.T) { testInvalidSecretName(t, open(t)) })
	t.Run("SecretsAreSeparate", func(t *testing.T) { testSecretsAreSeparate(t, open(t)) })
	t.Run("Export", func(t *testing.T) { testExport(t, open(t)) })
	t.Run("ExportEmpty", func(t *testing.T) { testExportEmpty(t, open(t)) })

	t.Run("DocumentRoundTrip", func(t *testing.T) { testDocumentRoundTrip(t, open(t)) })
	t.Run("InvalidDocument", func(t *testing.T) { testInvalidDocument(t, open(t)) })
	t.Run("DocumentPages", func(t *testing.T) { testDocumentPages(t, open(t)) })
	t.Run("DocumentPutAgain", func(t *testing.T) { testDocumentPutAgain(t, open(t)) })
	t.Run("ConcurrentPutSameDocument", func(t *testing.T) { testConcurrentPutSameDocument(t, open(t)) })
	t.Run("DocumentsAreSeparate", func(t *testing.T) { testDocumentsAreSeparate(t, open(t)) })
	t.Run("DeleteDocument", func(t *testing.T) { testDeleteDocument(t, open(t)) })
	t.Run("Search", func(t *testing.T) { testSearch(t, open(t)) })
	t.Run("KBVersion", func(t *testing.T) { testKBVersion(t, open(t)) })
	t.Run("Memories", func(t *testing.T) { testMemories(t, open(t)) })
	t.Run("MemoriesAreSeparate", func(t *testing.T) { testMemoriesAreSeparate(t, open(t)) })
	t.Run("AnonymousHasNoMemories", func(t *testing.T) { testAnonymousHasNoMemories(t, open(t)) })
	t.Run("ExportKnowledge", func(t *testing.T) { testExportKnowledge(t, open(t)) })
	if _, ok := open(t).(AtRestBackend); ok {
		runAtRest(t, open)
	} else {
		t.Log("the backend's adapter does not implement AtRestBackend: no at-rest checks")
	}
}

func testRoundTrip(t *testing.T, b Backend) {
	scope := authtest.Scope(t, Acme, "alice")
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
	scope := authtest.Scope(t, Acme, "alice")
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
	acme := authtest.Scope(t, Acme, "alice")
	globex := authtest.Scope(t, Globex, "alice")
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
	alice := authtest.Scope(t, Acme, "alice")
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

// testDeleteSession deletes one end user's session: the same session id of
// another tenant, or of another end user, is untouched, and deleting it
// again, or deleting another's, finds nothing.
func testDeleteSession(t *testing.T, b Backend) {
	alice := authtest.Scope(t, Acme, "alice")
	bob := alice.WithUser("bob")
	globex := authtest.Scope(t, Globex, "alice")
	for _, sc := range []auth.Scope{alice, bob, globex} {
		mustAppend(t, b, sc, "s1", []store.Message{{Role: "user", Content: "of " + string(sc.Tenant()) + "/" + string(sc.User())}})
	}
	mustAppend(t, b, globex, "globex-only", []store.Message{{Role: "user", Content: "globex private"}})
	ctx := t.Context()
	if err := b.DeleteSession(ctx, alice, "s1"); err != nil {
		t.Fatalf("DeleteSession: %v", err)
	}
	for _, tc := range []struct {
		name    string
		scope   auth.Scope
		session tenant.SessionID
		want    []string
	}{
		{"alice's s1 is gone", alice, "s1", nil},
		{"bob's s1 stays", bob, "s1", []string{"of acme/bob"}},
		{"globex's s1 stays", globex, "s1", []string{"of globex/alice"}},
	} {
		if got := contents(mustRead(t, b, tc.scope, tc.session, 0)); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct {
		name    string
		session tenant.SessionID
	}{{"again", "s1"}, {"globex's session, named by acme", "globex-only"}, {"never made", "nope"}} {
		if err := b.DeleteSession(ctx, alice, tc.session); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("DeleteSession %s: got %v, want %v", tc.name, err, store.ErrNotFound)
		}
	}
	if got := contents(mustRead(t, b, globex, "globex-only", 0)); !slices.Equal(got, []string{"globex private"}) {
		t.Errorf("globex's own session after acme's delete: got %q", got)
	}
	if err := b.DeleteSession(ctx, auth.Scope{}, "s1"); !errors.Is(err, store.ErrNoScope) {
		t.Errorf("DeleteSession with zero scope: got %v, want %v", err, store.ErrNoScope)
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
	checkRefused(t, b, zero, store.ErrNoScope)
}

// checkRefused checks that every secret and export call for scope fails with
// want and returns nothing.
func checkRefused(t *testing.T, b Backend, scope auth.Scope, want error) {
	t.Helper()
	ctx := t.Context()
	if err := b.PutSecret(ctx, scope, "token", []byte("v")); !errors.Is(err, want) {
		t.Errorf("PutSecret: got error %v, want %v", err, want)
	}
	if err := b.DeleteSecret(ctx, scope, "token"); !errors.Is(err, want) {
		t.Errorf("DeleteSecret: got error %v, want %v", err, want)
	}
	secrets, err := b.Secrets(ctx, scope)
	if !errors.Is(err, want) {
		t.Errorf("Secrets: got error %v, want %v", err, want)
	}
	if len(secrets) != 0 {
		t.Errorf("Secrets: got %d secrets, want 0", len(secrets))
	}
	exp, err := b.Export(ctx, scope)
	if !errors.Is(err, want) {
		t.Errorf("Export: got error %v, want %v", err, want)
	}
	if len(exp.Sessions) != 0 || len(exp.SecretNames) != 0 || len(exp.Documents) != 0 || len(exp.Memories) != 0 {
		t.Errorf("Export: got %d sessions, %d secret names, %d documents and %d memories, want none",
			len(exp.Sessions), len(exp.SecretNames), len(exp.Documents), len(exp.Memories))
	}
	checkKnowledgeRefused(t, b, scope, want)
}

func testUnknownTenant(t *testing.T, b Backend) {
	ctx := t.Context()
	scope := authtest.Scope(t, "initech", "alice")
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
	checkRefused(t, b, scope, store.ErrUnknownTenant)
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
		return authtest.Scope(t, id, tenant.UserID(fmt.Sprint("user", w%4/2)))
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

func testSecrets(t *testing.T, b Backend) {
	ctx := t.Context()
	alice := authtest.Scope(t, Acme, "alice")
	if got := mustSecrets(t, b, alice); len(got) != 0 {
		t.Errorf("fresh tenant: got %d secrets, want 0", len(got))
	}

	binary := []byte{0, 1, 0xfe, 0xff, 'x'}
	token := []byte("token-1")
	mustPut(t, b, alice, "db_password", binary)
	mustPut(t, b, alice, "api_token", token)
	mustPut(t, b, alice, "empty", nil)
	token[0] = 'X' // the backend must have copied the value
	want := []store.Secret{
		{Name: "api_token", Value: secret.New("token-1")},
		{Name: "db_password", Value: secret.New(string(binary))},
		{Name: "empty"},
	}
	if diff := diffSecrets(mustSecrets(t, b, alice), want); diff != "" {
		t.Errorf("after puts: %s", diff)
	}
	// Secrets belong to the tenant, not to an end user.
	if diff := diffSecrets(mustSecrets(t, b, alice.WithUser("bob")), want); diff != "" {
		t.Errorf("another end user of the tenant: %s", diff)
	}

	mustPut(t, b, alice, "api_token", []byte("token-2"))
	want[0].Value = secret.New("token-2")
	if diff := diffSecrets(mustSecrets(t, b, alice), want); diff != "" {
		t.Errorf("after overwrite: %s", diff)
	}

	if err := b.DeleteSecret(ctx, alice, "db_password"); err != nil {
		t.Fatalf("DeleteSecret(db_password): %v", err)
	}
	want = slices.Delete(want, 1, 2)
	if diff := diffSecrets(mustSecrets(t, b, alice), want); diff != "" {
		t.Errorf("after delete: %s", diff)
	}
	for _, name := range []tenant.SecretName{"db_password", "never_stored"} {
		if err := b.DeleteSecret(ctx, alice, name); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("DeleteSecret(%s) of a missing secret: got %v, want %v", name, err, store.ErrNotFound)
		}
	}

	mustPut(t, b, alice, "db_password", []byte("again"))
	want = append(want, store.Secret{Name: "db_password", Value: secret.New("again")})
	slices.SortFunc(want, func(a, b store.Secret) int { return strings.Compare(string(a.Name), string(b.Name)) })
	if diff := diffSecrets(mustSecrets(t, b, alice), want); diff != "" {
		t.Errorf("after put again: %s", diff)
	}
}

func testInvalidSecretName(t *testing.T, b Backend) {
	ctx := t.Context()
	scope := authtest.Scope(t, Acme, "alice")
	for _, name := range []tenant.SecretName{"", "UPPER", ".dot", "-dash", "a/b", "../x", "x\x00y", "a b", tenant.SecretName(strings.Repeat("a", 65))} {
		if err := b.PutSecret(ctx, scope, name, []byte("v")); !errors.Is(err, tenant.ErrInvalid) {
			t.Errorf("PutSecret(%q): got %v, want %v", name, err, tenant.ErrInvalid)
		}
		if err := b.DeleteSecret(ctx, scope, name); !errors.Is(err, tenant.ErrInvalid) {
			t.Errorf("DeleteSecret(%q): got %v, want %v", name, err, tenant.ErrInvalid)
		}
	}
	if got := mustSecrets(t, b, scope); len(got) != 0 {
		t.Errorf("after refused puts: got %d secrets, want 0", len(got))
	}
}

func testSecretsAreSeparate(t *testing.T, b Backend) {
	ctx := t.Context()
	acme := authtest.Scope(t, Acme, "alice")
	globex := authtest.Scope(t, Globex, "alice")
	mustPut(t, b, acme, "api_token", []byte("acme-token"))
	mustPut(t, b, globex, "api_token", []byte("globex-token"))
	mustPut(t, b, globex, "globex_only", []byte("globex-only-value"))
	globexWant := []store.Secret{
		{Name: "api_token", Value: secret.New("globex-token")},
		{Name: "globex_only", Value: secret.New("globex-only-value")},
	}

	if diff := diffSecrets(mustSecrets(t, b, acme), []store.Secret{{Name: "api_token", Value: secret.New("acme-token")}}); diff != "" {
		t.Errorf("acme reads its secrets: %s", diff)
	}
	if diff := diffSecrets(mustSecrets(t, b, globex), globexWant); diff != "" {
		t.Errorf("globex reads its secrets: %s", diff)
	}

	if err := b.DeleteSecret(ctx, acme, "globex_only"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("acme deletes globex's secret: got %v, want %v", err, store.ErrNotFound)
	}
	mustPut(t, b, acme, "api_token", []byte("acme-token-2"))
	if diff := diffSecrets(mustSecrets(t, b, globex), globexWant); diff != "" {
		t.Errorf("globex after acme overwrote its own api_token: %s", diff)
	}
	if err := b.DeleteSecret(ctx, acme, "api_token"); err != nil {
		t.Fatalf("acme deletes its api_token: %v", err)
	}
	if got := mustSecrets(t, b, acme); len(got) != 0 {
		t.Errorf("acme after deleting its only secret: got %d secrets, want 0", len(got))
	}
	if diff := diffSecrets(mustSecrets(t, b, globex), globexWant); diff != "" {
		t.Errorf("globex after acme deleted its own api_token: %s", diff)
	}
	if exp := mustExport(t, b, acme); len(exp.SecretNames) != 0 {
		t.Errorf("acme's export names secrets %q, want none", exp.SecretNames)
	}
}

func testExport(t *testing.T, b Backend) {
	alice := authtest.Scope(t, Acme, "alice")
	bob := alice.WithUser("bob")
	anon := alice.WithUser("")
	globex := authtest.Scope(t, Globex, "alice")

	aliceS1 := []store.Message{
		{Role: "user", Content: "alice asks"},
		{Role: "assistant", Content: "", Meta: []byte(`{"tool_calls":[{"id":"c1"}]}`)},
	}
	aliceS1More := []store.Message{{Role: "tool", Content: "alice tool result", Meta: []byte(`{"tool_call_id":"c1"}`)}}
	aliceS2 := []store.Message{{Role: "user", Content: "alice second session"}}
	bobS1 := []store.Message{{Role: "user", Content: "bob asks"}}
	anonS3 := []store.Message{{Role: "user", Content: "anonymous asks"}}
	mustAppend(t, b, alice, "s1", aliceS1)
	mustAppend(t, b, globex, "s1", []store.Message{{Role: "user", Content: "globex text"}})
	mustAppend(t, b, globex, "globex-only", []store.Message{{Role: "user", Content: "globex private"}})
	mustAppend(t, b, bob, "s1", bobS1)
	mustAppend(t, b, alice, "s2", aliceS2)
	mustAppend(t, b, anon, "s3", anonS3)
	mustAppend(t, b, alice, "s1", aliceS1More)
	mustPut(t, b, alice, "acme_key", []byte("acme-secret-value-1"))
	mustPut(t, b, alice, "a_key", []byte("acme-secret-value-2"))
	mustPut(t, b, globex, "globex_key", []byte("globex-secret-value"))

	exp := mustExport(t, b, alice)
	want := []store.ExportedSession{
		{User: "", Session: "s3", Messages: anonS3},
		{User: "alice", Session: "s1", Messages: append(slices.Clone(aliceS1), aliceS1More...)},
		{User: "alice", Session: "s2", Messages: aliceS2},
		{User: "bob", Session: "s1", Messages: bobS1},
	}
	if len(exp.Sessions) != len(want) {
		var got []string
		for _, s := range exp.Sessions {
			got = append(got, fmt.Sprintf("%s/%s", s.User, s.Session))
		}
		t.Fatalf("exported sessions: got %q, want %d sessions", got, len(want))
	}
	for i, s := range exp.Sessions {
		w := want[i]
		if s.User != w.User || s.Session != w.Session {
			t.Errorf("session %d: got %q/%q, want %q/%q", i, s.User, s.Session, w.User, w.Session)
			continue
		}
		if diff := diffMessages(s.Messages, w.Messages); diff != "" {
			t.Errorf("session %q/%q: %s", s.User, s.Session, diff)
		}
		if s.CreatedAt.IsZero() || s.UpdatedAt.Before(s.CreatedAt) {
			t.Errorf("session %q/%q: got created %v, updated %v; want set, updated not before created", s.User, s.Session, s.CreatedAt, s.UpdatedAt)
		}
		for j, m := range s.Messages {
			if m.CreatedAt.IsZero() {
				t.Errorf("session %q/%q message %d: zero CreatedAt", s.User, s.Session, j)
			}
		}
	}
	if want := []tenant.SecretName{"a_key", "acme_key"}; !slices.Equal(exp.SecretNames, want) {
		t.Errorf("exported secret names: got %q, want %q", exp.SecretNames, want)
	}

	data, err := json.Marshal(exp)
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{"acme-secret-value", "globex", "globex-secret-value"} {
		if bytes.Contains(data, []byte(leak)) {
			t.Errorf("acme's export contains %q: %s", leak, data)
		}
	}

	gexp := mustExport(t, b, globex)
	var got []string
	for _, s := range gexp.Sessions {
		got = append(got, fmt.Sprintf("%s/%s:%q", s.User, s.Session, contents(s.Messages)))
	}
	if want := []string{`alice/globex-only:["globex private"]`, `alice/s1:["globex text"]`}; !slices.Equal(got, want) {
		t.Errorf("globex's export: got %q, want %q", got, want)
	}
	if want := []tenant.SecretName{"globex_key"}; !slices.Equal(gexp.SecretNames, want) {
		t.Errorf("globex's exported secret names: got %q, want %q", gexp.SecretNames, want)
	}
}

func testExportEmpty(t *testing.T, b Backend) {
	globex := authtest.Scope(t, Globex, "alice")
	mustAppend(t, b, globex, "s1", []store.Message{{Role: "user", Content: "globex text"}})
	mustPut(t, b, globex, "globex_key", []byte("globex-secret-value"))

	exp := mustExport(t, b, authtest.Scope(t, Acme, "alice"))
	if exp.Sessions == nil || exp.Documents == nil || exp.Memories == nil || exp.SecretNames == nil {
		t.Errorf("export of a fresh tenant: got nil slices %#v, want empty ones", exp)
	}
	data, err := json.Marshal(exp)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(data), `{"sessions":[],"documents":[],"memories":[],"secret_names":[]}`; got != want {
		t.Errorf("export of a fresh tenant as JSON: got %s, want %s", got, want)
	}
}

func mustPut(t *testing.T, b Backend, scope auth.Scope, name tenant.SecretName, value []byte) {
	t.Helper()
	if err := b.PutSecret(t.Context(), scope, name, value); err != nil {
		t.Fatalf("PutSecret(%v, %s): %v", scope, name, err)
	}
}

func mustSecrets(t *testing.T, b Backend, scope auth.Scope) []store.Secret {
	t.Helper()
	secrets, err := b.Secrets(t.Context(), scope)
	if err != nil {
		t.Fatalf("Secrets(%v): %v", scope, err)
	}
	return secrets
}

func mustExport(t *testing.T, b Backend, scope auth.Scope) store.Export {
	t.Helper()
	exp, err := b.Export(t.Context(), scope)
	if err != nil {
		t.Fatalf("Export(%v): %v", scope, err)
	}
	return exp
}

// diffSecrets describes the first difference between got and want, or returns
// "". Values are compared but never printed.
func diffSecrets(got, want []store.Secret) string {
	names := func(ss []store.Secret) []tenant.SecretName {
		var n []tenant.SecretName
		for _, s := range ss {
			n = append(n, s.Name)
		}
		return n
	}
	if !slices.Equal(names(got), names(want)) {
		return fmt.Sprintf("got secrets %q, want %q", names(got), names(want))
	}
	for i := range got {
		if !got[i].Value.Equal(want[i].Value) {
			return fmt.Sprintf("secret %s: got a %d-byte value, want another, of %d bytes", got[i].Name, got[i].Value.Len(), want[i].Value.Len())
		}
	}
	return ""
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
