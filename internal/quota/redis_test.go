package quota

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bulkhead-ai/bulkhead/internal/config"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/testenv"
)

// redisAddr returns the Redis server tests use.
func redisAddr() string {
	if addr := os.Getenv("BULKHEAD_TEST_REDIS"); addr != "" {
		return addr
	}
	return "127.0.0.1:6379"
}

// redisClient returns a client of the test server, one per call (a call per
// replica), or stops the test if there is none.
func redisClient(t testing.TB) *redis.Client {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: redisAddr(), DialTimeout: time.Second, DialerRetries: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := client.Ping(ctx).Err()
	if err != nil {
		client.Close()
	}
	testenv.Require(t, "Redis", err == nil, "start redis-server or set BULKHEAD_TEST_REDIS (tried "+redisAddr()+")")
	t.Cleanup(func() { client.Close() })
	return client
}

// testPrefix returns a fresh key prefix whose keys are deleted when the test
// ends.
func testPrefix(t testing.TB, client *redis.Client) string {
	t.Helper()
	prefix := "bulkhead-test-" + rand.Text()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		iter := client.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("scan test keys: %v", err)
		}
		if len(keys) > 0 {
			if err := client.Del(ctx, keys...).Err(); err != nil {
				t.Errorf("delete test keys: %v", err)
			}
		}
	})
	return prefix
}

func TestRedis(t *testing.T) {
	client := redisClient(t)
	testBehaviour(t, func(t *testing.T) Limiter { return NewRedis(client, testPrefix(t, client)) })
}

// TestRedisReplicasShareLimits runs two limiters with their own connections,
// as two replicas would, against one set of counters.
func TestRedisReplicasShareLimits(t *testing.T) {
	c1, c2 := redisClient(t), redisClient(t)
	prefix := testPrefix(t, c1)
	replicas := []Limiter{NewRedis(c1, prefix), NewRedis(c2, prefix)}

	t.Run("requests_per_minute", func(t *testing.T) {
		l := Limits{RequestsPerMinute: 3}
		admit(t, replicas[0], "rate", l)()
		admit(t, replicas[1], "rate", l)()
		admit(t, replicas[0], "rate", l)()
		for _, r := range replicas {
			wantLimited(t, r, "rate", l, LimitRequestsPerMinute, 20*time.Second)
		}
	})
	t.Run("max_concurrent", func(t *testing.T) {
		l := Limits{MaxConcurrent: 2}
		r0 := admit(t, replicas[0], "conc", l)
		r1 := admit(t, replicas[1], "conc", l)
		for _, r := range replicas {
			wantLimited(t, r, "conc", l, LimitMaxConcurrent, time.Second)
		}
		r0()
		r2 := admit(t, replicas[1], "conc", l)
		r1()
		r2()
	})
	t.Run("token_budget", func(t *testing.T) {
		l := Limits{TokenBudget: 100, TokensPerMinute: 1000}
		if err := replicas[0].Spend(t.Context(), "budget", l, 60); err != nil {
			t.Fatal(err)
		}
		if err := replicas[1].Spend(t.Context(), "budget", l, 40); err != nil {
			t.Fatal(err)
		}
		for _, r := range replicas {
			wantLimited(t, r, "budget", l, LimitTokenBudget, DefaultBudgetPeriod)
		}
	})
}

// TestRedisCrashedReplicaSlotExpires checks that the concurrency slots of a
// replica that stops renewing them free themselves, and that a live
// replica's long request keeps its slot.
func TestRedisCrashedReplicaSlotExpires(t *testing.T) {
	const ttl = 500 * time.Millisecond
	c1, c2 := redisClient(t), redisClient(t)
	prefix := testPrefix(t, c2) // c1 is closed by the test
	crashing, live := NewRedis(c1, prefix), NewRedis(c2, prefix)
	crashing.leaseTTL, live.leaseTTL = ttl, ttl
	l := Limits{MaxConcurrent: 1}

	long := admit(t, live, "tenant-a", l)
	time.Sleep(3 * ttl) // renewed meanwhile
	wantLimited(t, crashing, "tenant-a", l, LimitMaxConcurrent, time.Second)
	long()

	held := admit(t, crashing, "tenant-a", l)
	defer held() // stops the renewal timer; its Redis call fails harmlessly
	wantLimited(t, live, "tenant-a", l, LimitMaxConcurrent, time.Second)
	c1.Close() // the replica dies without releasing
	start := time.Now()
	for {
		release, err := live.Admit(t.Context(), "tenant-a", l)
		if err == nil {
			release()
			t.Logf("slot of the crashed replica freed after %v (lease TTL %v)", time.Since(start).Round(time.Millisecond), ttl)
			return
		}
		if !errors.Is(err, kind.Limited) {
			t.Fatalf("Admit: %v", err)
		}
		if time.Since(start) > 10*ttl {
			t.Fatalf("slot of the crashed replica still held after %v", time.Since(start))
		}
		time.Sleep(ttl / 10)
	}
}

// TestRedisKeys checks that every key is under the tenant's prefix and
// expires.
func TestRedisKeys(t *testing.T) {
	client := redisClient(t)
	prefix := testPrefix(t, client)
	r := NewRedis(client, prefix)
	l := Limits{RequestsPerMinute: 10, TokensPerMinute: 100, MaxConcurrent: 2, TokenBudget: 1000, BudgetPeriod: time.Hour}
	release := admit(t, r, "tenant-a", l)
	defer release()
	if err := r.Spend(t.Context(), "tenant-a", l, 10); err != nil {
		t.Fatal(err)
	}
	keys, err := client.Keys(t.Context(), prefix+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 4 {
		t.Errorf("keys = %v; want one per limit", keys)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix+":{tenant-a}:") {
			t.Errorf("key %q does not start with %q", k, prefix+":{tenant-a}:")
		}
		ttl, err := client.PTTL(t.Context(), k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= 0 || ttl > time.Hour+time.Minute {
			t.Errorf("key %q has TTL %v; want in (0, 1h]", k, ttl)
		}
	}
}

// faultClient returns a client of the throwaway server rs, set up as serve
// sets it up.
func faultClient(t *testing.T, rs *testenv.RedisServer) *redis.Client {
	t.Helper()
	client := config.Redis{Addr: rs.Addr}.NewClient(os.Getenv)
	t.Cleanup(func() { client.Close() })
	return client
}

// faultTimeout bounds each Redis call in the fault tests: generous, so that
// a loaded test machine does not fall back while Redis is up and upset the
// exact counts. What the default deadline costs is measured by
// BenchmarkRedisFault in internal/server.
const faultTimeout = 500 * time.Millisecond

// faultRedis returns a limiter on client with faultTimeout.
func faultRedis(client *redis.Client, prefix string) *Redis {
	return NewRedisWith(client, RedisOptions{Prefix: prefix, Timeout: faultTimeout})
}

// slowBound is the generous bound on any one call while Redis is sick: the
// deadline is at most 500ms, this only catches a stall.
const slowBound = 2 * time.Second

// admitFast calls Admit and fails the test if it stalls or errs with
// anything but a rate limit. It reports whether the call was admitted.
func admitFast(t *testing.T, r *Redis, id tenant.Incarnation, l Limits) bool {
	t.Helper()
	start := time.Now()
	release, err := r.Admit(t.Context(), id, l)
	if d := time.Since(start); d > slowBound {
		t.Errorf("Admit(%s) took %v; want under %v", id, d, slowBound)
	}
	if err != nil {
		if !errors.Is(err, kind.Limited) {
			t.Fatalf("Admit(%s) = %v; want admitted or a rate limit, never a backend error", id, err)
		}
		return false
	}
	release()
	return true
}

// admitted admits n requests of id and returns how many were admitted.
func admitted(t *testing.T, r *Redis, id tenant.Incarnation, l Limits, n int) int {
	t.Helper()
	got := 0
	for range n {
		if admitFast(t, r, id, l) {
			got++
		}
	}
	return got
}

// waitRecovered waits until r is back on Redis, calling Admit (which
// probes).
func waitRecovered(t *testing.T, r *Redis) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for r.Fallback() {
		if time.Now().After(deadline) {
			t.Fatal("still on the local fallback 10s after Redis came back")
		}
		admitFast(t, r, "probe", Limits{RequestsPerMinute: 1_000_000})
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRedisFallsBackWhenDown: with no Redis at all, limits are enforced
// locally, per tenant: a tenant over its limit is refused, another tenant
// is not (the negative test), and nothing stalls or errs.
func TestRedisFallsBackWhenDown(t *testing.T) {
	client := config.Redis{Addr: "127.0.0.1:1"}.NewClient(os.Getenv)
	defer client.Close()
	r := NewRedis(client, "bulkhead-test-down")
	l := Limits{RequestsPerMinute: 3, MaxConcurrent: 2, TokensPerMinute: 100}
	if got := admitted(t, r, "tenant-a", l, 5); got != 3 {
		t.Errorf("tenant-a admitted %d of 5 with a local limit of 3", got)
	}
	if !r.Fallback() {
		t.Error("Fallback() = false after consecutive failures")
	}
	if got := admitted(t, r, "tenant-b", l, 3); got != 3 {
		t.Errorf("tenant-b admitted %d of 3 after tenant-a's flood; want all: tenant-a must not use tenant-b's allowance", got)
	}
	wantLimited(t, r, "tenant-b", l, LimitRequestsPerMinute, 30*time.Second)
	// Concurrency is enforced locally too.
	lc := Limits{MaxConcurrent: 1}
	hold := admit(t, r, "tenant-c", lc)
	wantLimited(t, r, "tenant-c", lc, LimitMaxConcurrent, time.Second)
	hold()
	admit(t, r, "tenant-c", lc)()
	// Spent tokens are counted locally.
	if err := r.Spend(t.Context(), "tenant-d", l, 1000); err != nil {
		t.Fatalf("Spend with Redis down = %v; want counted locally", err)
	}
	wantLimited(t, r, "tenant-d", l, LimitTokensPerMinute, 10*time.Minute)
	// Bad input still fails closed.
	if _, err := r.Admit(t.Context(), "", l); err == nil || errors.Is(err, kind.Limited) {
		t.Errorf("Admit with no tenant = %v; want a non-limit error", err)
	}
}

// TestRedisFaultPauseAndStop drives two replicas' limiters on a throwaway
// redis-server that is paused, resumed, killed and restarted: no call
// stalls or errs, a tenant over its limit is still refused during the
// fault while the calm one is not, and once Redis answers again the
// replicas share counters again.
func TestRedisFaultPauseAndStop(t *testing.T) {
	rs := testenv.StartRedis(t)
	prefix := "bulkhead-test-fault"
	r1, r2 := faultRedis(faultClient(t, rs), prefix), faultRedis(faultClient(t, rs), prefix)
	noisy, calm := Limits{RequestsPerMinute: 20, MaxConcurrent: 4}, Limits{RequestsPerMinute: 1_000_000, MaxConcurrent: 4}

	// shared checks that r1 and r2 count tenant id together.
	shared := func(id tenant.Incarnation) {
		t.Helper()
		l := Limits{RequestsPerMinute: 5}
		if got := admitted(t, r1, id, l, 5); got != 5 {
			t.Fatalf("%s: replica 1 admitted %d of 5", id, got)
		}
		wantLimited(t, r2, id, l, LimitRequestsPerMinute, 30*time.Second)
	}
	shared("before")
	if got := admitted(t, r1, "noisy", noisy, 30); got != 20 {
		t.Errorf("noisy admitted %d of 30 with Redis up; want 20", got)
	}

	faults := []struct {
		name         string
		start, after func()
	}{
		{"paused", rs.Pause, rs.Resume},
		{"stopped", rs.Stop, rs.Start},
	}
	for _, f := range faults {
		f.start()
		// A fresh noisy tenant per fault: the local fallback starts it with
		// a full allowance, as it does every tenant.
		id := tenant.Incarnation("noisy-" + f.name)
		if got := admitted(t, r1, id, noisy, 30); got != 20 {
			t.Errorf("%s: noisy admitted %d of 30 on the local fallback; want its limit, 20", f.name, got)
		}
		if got := admitted(t, r1, "calm", calm, 30); got != 30 {
			t.Errorf("%s: calm admitted %d of 30; want all", f.name, got)
		}
		if !r1.Fallback() {
			t.Errorf("%s: Fallback() = false", f.name)
		}
		f.after()
		waitRecovered(t, r1)
		shared(tenant.Incarnation("after-" + f.name))
	}
}

// TestRedisLeaseOutlivesOutage: a concurrency slot held in Redis when it
// stops answering is released without a stall, and if the release could not
// reach Redis the slot expires within the lease TTL once it is back.
func TestRedisLeaseOutlivesOutage(t *testing.T) {
	const ttl = 600 * time.Millisecond
	rs := testenv.StartRedis(t)
	r1, r2 := faultRedis(faultClient(t, rs), "bulkhead-test-lease"), faultRedis(faultClient(t, rs), "bulkhead-test-lease")
	r1.leaseTTL, r2.leaseTTL = ttl, ttl
	l := Limits{MaxConcurrent: 1}
	release := admit(t, r1, "tenant-a", l)
	rs.Pause()
	start := time.Now()
	release() // cannot reach Redis
	if d := time.Since(start); d > slowBound {
		t.Errorf("release with Redis paused took %v", d)
	}
	time.Sleep(2 * ttl) // the lease is not renewed meanwhile
	rs.Resume()
	deadline := time.Now().Add(10 * ttl)
	for !admitFast(t, r2, "tenant-a", l) {
		if time.Now().After(deadline) {
			t.Fatalf("slot released during the pause still held %v after Redis came back", 10*ttl)
		}
		time.Sleep(ttl / 10)
	}
	if r2.Fallback() {
		t.Error("replica 2 admitted on its fallback; want through Redis")
	}
}

// TestRedisBudgetRefusalOutlivesOutage: the local fallback knows nothing of
// the budget spent through Redis, but a tenant Redis refused for its budget
// stays refused while Redis is away, instead of getting a fresh budget.
func TestRedisBudgetRefusalOutlivesOutage(t *testing.T) {
	rs := testenv.StartRedis(t)
	r := faultRedis(faultClient(t, rs), "bulkhead-test-budget")
	l := Limits{TokenBudget: 10, BudgetPeriod: time.Hour}
	admit(t, r, "spent", l)()
	if err := r.Spend(t.Context(), "spent", l, 10); err != nil {
		t.Fatal(err)
	}
	wantLimited(t, r, "spent", l, LimitTokenBudget, time.Hour)
	rs.Stop()
	for range 10 {
		wantLimited(t, r, "spent", l, LimitTokenBudget, time.Hour)
	}
	if !r.Fallback() {
		t.Error("Fallback() = false with Redis stopped")
	}
	// Another tenant is not affected (the negative test).
	admit(t, r, "fresh", l)()
}
