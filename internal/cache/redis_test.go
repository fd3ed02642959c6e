package cache

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bulkhead-ai/bulkhead/internal/config"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/testenv"
)

// testRedis returns a client for BULKHEAD_TEST_REDIS (host:port or a
// redis:// URL; default 127.0.0.1:6379), or stops the test via testenv.
func testRedis(t *testing.T) *redis.Client {
	t.Helper()
	addr := os.Getenv("BULKHEAD_TEST_REDIS")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	opts := &redis.Options{Addr: addr}
	if strings.Contains(addr, "://") {
		var err error
		if opts, err = redis.ParseURL(addr); err != nil {
			t.Fatalf("BULKHEAD_TEST_REDIS=%q: %v", addr, err)
		}
	}
	opts.DialTimeout = 2 * time.Second
	client := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	err := client.Ping(ctx).Err()
	if err != nil {
		client.Close()
	}
	testenv.Require(t, "Redis", err == nil, fmt.Sprintf("start redis-server or set BULKHEAD_TEST_REDIS (tried %s: %v)", addr, err))
	t.Cleanup(func() { client.Close() })
	return client
}

// testPrefix returns a fresh random prefix (with glob characters in it, to
// exercise escaping) and deletes every key under it when the test ends.
func testPrefix(t *testing.T, client *redis.Client) string {
	t.Helper()
	prefix := "bulkhead-test:" + rand.Text() + ":[*?]:"
	t.Cleanup(func() {
		// t.Context is already cancelled when cleanups run.
		ctx := context.Background()
		if err := deleteByPrefix(ctx, client, prefix); err != nil {
			t.Errorf("clean up %q: %v", prefix, err)
		}
		if keys, _, err := client.Scan(ctx, 0, globEscape(prefix)+"*", 1000).Result(); err != nil || len(keys) > 0 {
			t.Errorf("after clean-up: keys %q, err %v", keys, err)
		}
	})
	return prefix
}

func redisBackend() backendCase {
	return backendCase{"redis", func(t *testing.T) Backend {
		client := testRedis(t)
		return NewRedis(client, testPrefix(t, client))
	}}
}

func TestRedisBackend(t *testing.T) { testBackend(t, redisBackend()) }

func TestRedisTTL(t *testing.T) {
	client := testRedis(t)
	prefix := testPrefix(t, client)
	r := NewRedis(client, prefix)
	acme := mustCipher(t, "acme", "acme-key")
	x := New(r, time.Minute)
	mustPut(t, x, acme, fullRequest(), answer("acme"))
	ttl, err := client.PTTL(t.Context(), prefix+mustKey(t, acme, fullRequest())).Result()
	if err != nil || ttl <= 50*time.Second || ttl > time.Minute {
		t.Errorf("PTTL = %v, %v; want about 1m", ttl, err)
	}

	// And Redis really expires it.
	if err := r.Set(t.Context(), "acme:short", []byte("v"), 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, ok, err := r.Get(t.Context(), "acme:short")
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("entry with a 50ms TTL still there after 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A negative TTL means no expiry (not go-redis's KEEPTTL).
	if err := r.Set(t.Context(), "acme:forever", []byte("v"), -time.Second); err != nil {
		t.Fatal(err)
	}
	if ttl, err := client.PTTL(t.Context(), prefix+"acme:forever").Result(); err != nil || ttl != -1 {
		t.Errorf("PTTL of a no-expiry entry = %v, %v; want -1 (no expiry)", ttl, err)
	}
}

// TestRedisDeleteTenantStaysInPrefix: DeleteTenant removes only the tenant's
// keys under its own prefix, even when the prefix holds glob characters that
// would match a neighbour's keys unescaped.
func TestRedisDeleteTenantStaysInPrefix(t *testing.T) {
	client := testRedis(t)
	base := "bulkhead-test:" + rand.Text() + ":"
	mine, neighbour := base+"a*:", base+"abc:"
	t.Cleanup(func() {
		if err := deleteByPrefix(context.Background(), client, base); err != nil {
			t.Errorf("clean up %q: %v", base, err)
		}
	})
	keep := []string{neighbour + "acme:1", base + "acme:1", mine + "acme-corp:1", mine + "acme", mine + "globex:acme:1"}
	gone := []string{mine + "acme:1", mine + "acme:2"}
	for _, k := range append(keep, gone...) {
		if err := client.Set(t.Context(), k, "v", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := NewRedis(client, mine).DeleteTenant(t.Context(), "acme"); err != nil {
		t.Fatalf("DeleteTenant: %v", err)
	}
	for _, k := range keep {
		if n, err := client.Exists(t.Context(), k).Result(); err != nil || n != 1 {
			t.Errorf("%q: exists = %d, %v; want kept", k, n, err)
		}
	}
	for _, k := range gone {
		if n, err := client.Exists(t.Context(), k).Result(); err != nil || n != 0 {
			t.Errorf("%q: exists = %d, %v; want deleted", k, n, err)
		}
	}
}

func TestNewRedisDefaultPrefix(t *testing.T) {
	if r := NewRedis(nil, ""); r.prefix != DefaultRedisPrefix {
		t.Errorf("prefix = %q, want %q", r.prefix, DefaultRedisPrefix)
	}
}

func TestGlobEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"bulkhead:response-cache:", `bulkhead:response\-cache:`},
		{"a*b?c[d]e\\f^", `a\*b\?c\[d\]e\\f\^`},
		{"", ""},
	}
	for _, tt := range tests {
		if got := globEscape(tt.in); got != tt.want {
			t.Errorf("globEscape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestRedisFaultBypassesCache drives a response cache on a throwaway
// redis-server that is paused, resumed, killed and restarted: no call
// stalls, a sick Redis is a miss and never an answer of another tenant,
// the cache is bypassed silently while the breaker is open, and it is used
// again once Redis answers.
func TestRedisFaultBypassesCache(t *testing.T) {
	rs := testenv.StartRedis(t)
	client := config.Redis{Addr: rs.Addr}.NewClient(os.Getenv)
	t.Cleanup(func() { client.Close() })
	// A generous deadline, so that a loaded test machine does not miss
	// while Redis is up; BenchmarkRedisFault in internal/server measures
	// the default.
	backend := NewRedisWith(client, RedisOptions{Prefix: "bulkhead-test-fault:", Timeout: 500 * time.Millisecond})
	x := New(backend, time.Minute)
	acme, globex := mustCipher(t, "acme", "acme-key"), mustCipher(t, "globex", "globex-key")
	req := fullRequest()

	// get looks req up for c and fails the test on a stall, a wrong answer
	// or, unless errOK, an error. It reports whether it hit.
	get := func(c *keyring.Cipher, errOK bool) bool {
		t.Helper()
		start := time.Now()
		v, hit, err := x.Get(t.Context(), c, req)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Get took %v with a deadline of 500ms", d)
		}
		if err != nil && (!errOK || errors.Is(err, ErrForeignEntry)) {
			t.Fatalf("Get(%s) = %v", c.Tenant(), err)
		}
		if hit && v != answer(string(c.Tenant())) {
			t.Fatalf("Get(%s) = %+v; want its own answer", c.Tenant(), v)
		}
		return hit
	}
	// waitUsed waits until the cache is used again (the breaker probes).
	waitUsed := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for backend.Bypassed() {
			if time.Now().After(deadline) {
				t.Fatal("cache still bypassed 10s after Redis came back")
			}
			get(acme, true)
			time.Sleep(50 * time.Millisecond)
		}
	}

	mustPut(t, x, acme, req, answer("acme"))
	if !get(acme, false) || get(globex, false) {
		t.Fatal("with Redis up: want acme's entry for acme only")
	}

	rs.Pause()
	for range 10 {
		if get(acme, true) || get(globex, true) {
			t.Fatal("hit while Redis is paused")
		}
	}
	if !backend.Bypassed() {
		t.Fatal("Bypassed() = false after consecutive timeouts")
	}
	// Open: a silent miss, and puts are dropped without error.
	if _, hit, err := x.Get(t.Context(), acme, req); hit || err != nil {
		t.Errorf("Get while bypassed = hit %v, %v; want a silent miss", hit, err)
	}
	if err := x.Put(t.Context(), globex, req, answer("globex")); err != nil {
		t.Errorf("Put while bypassed = %v; want dropped silently", err)
	}
	rs.Resume()
	waitUsed()
	if !get(acme, false) {
		t.Error("after the pause: acme's entry, still in Redis, is not served")
	}
	if get(globex, false) {
		t.Error("after the pause: globex hit, but its put was dropped while bypassed")
	}

	rs.Stop()
	for range 10 {
		if get(acme, true) {
			t.Fatal("hit while Redis is stopped")
		}
	}
	rs.Start()
	waitUsed()
	if get(acme, false) {
		t.Error("hit on a restarted, empty Redis")
	}
	mustPut(t, x, globex, req, answer("globex"))
	if !get(globex, false) || get(acme, false) {
		t.Error("after the restart: want globex's new entry for globex only")
	}
	// Every key still starts with the tenant's incarnation.
	keys, err := client.Keys(t.Context(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := "bulkhead-test-fault:" + string(globex.Incarnation()) + ":"
	if len(keys) != 1 || !strings.HasPrefix(keys[0], want) {
		t.Errorf("keys after the restart = %q; want one, starting with %q", keys, want)
	}
}

// TestRedisDeleteTenantWhileDown: offboarding does not fail because Redis is
// away; the entries are left to expire (they are unaddressable by a later
// incarnation and do not decrypt once the data key is gone).
func TestRedisDeleteTenantWhileDown(t *testing.T) {
	client := config.Redis{Addr: "127.0.0.1:1"}.NewClient(os.Getenv)
	defer client.Close()
	if err := NewRedis(client, "").DeleteTenant(t.Context(), "acme"); err != nil {
		t.Errorf("DeleteTenant with Redis down = %v; want nil (entries left to expire)", err)
	}
}
