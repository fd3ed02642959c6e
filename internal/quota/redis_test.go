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

	"github.com/bulkhead-ai/bulkhead/internal/kind"
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

// TestRedisFailsClosed checks that an unreachable Redis denies, with an error
// that is not a rate limit.
func TestRedisFailsClosed(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond, DialerRetries: 1, MaxRetries: -1})
	defer client.Close()
	r := NewRedis(client, "bulkhead-test-down")
	l := Limits{RequestsPerMinute: 10}
	release, err := r.Admit(t.Context(), "tenant-a", l)
	if err == nil || release != nil {
		t.Fatalf("Admit with Redis down = (release %v, %v); want an error and no release", release != nil, err)
	}
	var le *LimitedError
	if errors.As(err, &le) || errors.Is(err, kind.Limited) {
		t.Errorf("Admit with Redis down = %v; want a backend error, not a rate limit", err)
	}
	if err := r.Spend(t.Context(), "tenant-a", Limits{TokensPerMinute: 10}, 5); err == nil {
		t.Errorf("Spend with Redis down = nil; want an error")
	}
}
