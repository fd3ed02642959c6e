package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bulkhead-ai/bulkhead/internal/cache"
	"github.com/bulkhead-ai/bulkhead/internal/config"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/quota"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/testenv"
)

// faultSlowBound is the generous bound on any one request while Redis is
// sick: the Redis deadlines are 50 and 100ms, this only catches a stall.
// The figures themselves belong to BenchmarkRedisFault.
const faultSlowBound = 2 * time.Second

// faultPrefix starts every key of the fault tests' own redis-server.
const faultPrefix = "bulkhead-fault"

// faultRedis is a server on a throwaway redis-server, wired as serve wires
// it: one client, a fail-safe limiter and response cache on it.
type faultRedis struct {
	rs      *testenv.RedisServer
	client  *redis.Client
	limiter *quota.Redis
	cache   *cache.Redis
	env     *testEnv
	logs    *lockedBuffer // the operator log of the breakers
}

// newFaultRedis starts the server. timeout bounds each Redis call of the
// limiter and the cache; zero means their defaults.
func newFaultRedis(t testing.TB, timeout time.Duration) *faultRedis {
	t.Helper()
	rs := testenv.StartRedis(t)
	client := config.Redis{Addr: rs.Addr}.NewClient(os.Getenv)
	t.Cleanup(func() { client.Close() })
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	f := &faultRedis{rs: rs, client: client, logs: logs,
		limiter: quota.NewRedisWith(client, quota.RedisOptions{Prefix: faultPrefix, Timeout: timeout, Logger: logger}),
		cache:   cache.NewRedisWith(client, cache.RedisOptions{Prefix: faultPrefix + ":response-cache:", Timeout: timeout, Logger: logger}),
	}
	f.env = newTestEnv(t, envOptions{quota: f.limiter, cache: f.cache})
	return f
}

// recovered waits until both the limiter and the cache use Redis again.
// Traffic must be flowing: the breakers recover by probing with requests.
func (f *faultRedis) recovered(t testing.TB, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for f.limiter.Fallback() || f.cache.Bypassed() {
		if time.Now().After(deadline) {
			t.Fatalf("%v after Redis came back: limiter on fallback %v, cache bypassed %v", within, f.limiter.Fallback(), f.cache.Bypassed())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sharedAgain shows that this replica's limits are counted in Redis again:
// a fresh tenant's requests through the server use up its allowance as
// another replica, with nothing local, sees it. A single call that misses
// its deadline on a loaded machine is counted locally instead, so up to
// three fresh tenants are tried.
func (f *faultRedis) sharedAgain(t testing.TB, name string) {
	t.Helper()
	const rpm = 3
	other := config.Redis{Addr: f.rs.Addr}.NewClient(os.Getenv)
	defer other.Close()
	replica2 := quota.NewRedis(other, faultPrefix)
	for try := range 3 {
		id := fmt.Sprintf("shared-%s-%d", name, try)
		f.env.createTenant(t, map[string]any{"id": id, "limits": map[string]any{"requests_per_minute": rpm}})
		_, key := f.env.newKey(t, id)
		for i := range rpm {
			if r := f.env.chat(t, chatCall{key: key, content: fmt.Sprint("shared ", i)}); r.status != http.StatusOK {
				t.Fatalf("%s request %d: %v", id, i, r)
			}
		}
		tn, err := f.env.plane.Tenant(tenant.ID(id))
		if err != nil {
			t.Fatal(err)
		}
		release, err := replica2.Admit(t.Context(), tn.Incarnation(), quota.Limits{RequestsPerMinute: rpm})
		if err == nil {
			release()
			t.Logf("%s: another replica admitted a request over the limit used up through this one", id)
			continue
		}
		if !errors.Is(err, kind.Limited) {
			t.Fatalf("%s: another replica: %v", id, err)
		}
		return
	}
	t.Errorf("%s: after 3 tenants, requests through this replica are still not counted in Redis", name)
}

// faultSample is one request of the fault scenario.
type faultSample struct {
	tenant  string
	phase   int
	status  int
	latency time.Duration
	err     error
}

// faultPhase is a stretch of the scenario; begin and end act on Redis.
type faultPhase struct {
	name       string
	begin, end func()
}

// faultReport is what runRedisFault measured.
type faultReport struct {
	phases  []string
	samples []faultSample
}

// latency returns tenant's 99th percentile and worst latency in phase i,
// and the number of its requests.
func (r faultReport) latency(tenant string, i int) (p99, worst time.Duration, n int) {
	var lat []time.Duration
	for _, s := range r.samples {
		if s.tenant == tenant && s.phase == i && s.err == nil {
			lat = append(lat, s.latency)
		}
	}
	if len(lat) == 0 {
		return 0, 0, 0
	}
	slices.Sort(lat)
	return lat[(len(lat)-1)*99/100], lat[len(lat)-1], len(lat)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// runRedisFault lets a calm and a noisy tenant chat continuously through a
// server on its own redis-server while Redis is paused for a phase, resumed,
// killed for a phase and restarted.
func runRedisFault(t testing.TB, phase time.Duration) faultReport {
	f := newFaultRedis(t, 0) // the defaults, as serve has them
	env := f.env
	// calm never reaches its limits; noisy is over its rate all the time.
	env.createTenant(t, map[string]any{"id": "calm", "system_prompt": "calm agent",
		"limits": map[string]any{"requests_per_minute": 1_000_000, "max_concurrent": 8}})
	env.createTenant(t, map[string]any{"id": "noisy", "system_prompt": "noisy agent",
		"limits": map[string]any{"requests_per_minute": 12, "max_concurrent": 2}})
	keys := map[string]string{}
	for _, id := range []string{"calm", "noisy"} {
		_, keys[id] = env.newKey(t, id)
	}

	var rep faultReport
	phases := []faultPhase{
		{name: "before"},
		{name: "paused", begin: f.rs.Pause, end: f.rs.Resume},
		{name: "resumed"},
		{name: "stopped", begin: f.rs.Stop, end: f.rs.Start},
		{name: "restarted"},
	}
	for _, p := range phases {
		rep.phases = append(rep.phases, p.name)
	}
	var (
		mu      sync.Mutex
		current int
	)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	worker := func(tenant string, n int) {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			mu.Lock()
			ph := current
			mu.Unlock()
			start := time.Now()
			// A few distinct questions: some answers come from the cache.
			r, err := env.sendChat(ctx, chatCall{key: keys[tenant], content: fmt.Sprintf("question %d", (n*1000+i)%7), extra: cacheable})
			s := faultSample{tenant: tenant, phase: ph, status: r.status, latency: time.Since(start), err: err}
			if err != nil && ctx.Err() != nil {
				return // the scenario ended mid-request
			}
			mu.Lock()
			rep.samples = append(rep.samples, s)
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}
	for n := range 2 {
		wg.Add(2)
		go worker("calm", n)
		go worker("noisy", n)
	}
	for i, p := range phases {
		mu.Lock()
		current = i
		mu.Unlock()
		if p.begin != nil {
			p.begin()
		}
		time.Sleep(phase)
		if p.end != nil {
			p.end()
		}
		switch p.name {
		case "resumed", "restarted":
			f.recovered(t, phase)
			f.sharedAgain(t, p.name)
		}
	}
	stop()
	wg.Wait()

	// Every request answered, none with a 5xx, none stalled; the calm
	// tenant never limited, the noisy one limited in every phase.
	for _, s := range rep.samples {
		switch {
		case s.err != nil:
			t.Errorf("%s, %s: request failed: %v", s.tenant, rep.phases[s.phase], s.err)
		case s.status >= 500:
			t.Errorf("%s, %s: status %d", s.tenant, rep.phases[s.phase], s.status)
		case s.latency > faultSlowBound:
			t.Errorf("%s, %s: request took %v", s.tenant, rep.phases[s.phase], s.latency)
		case s.tenant == "calm" && s.status != http.StatusOK:
			t.Errorf("calm, %s: status %d, want 200", rep.phases[s.phase], s.status)
		}
	}
	for i, name := range rep.phases {
		var ok, limited int
		for _, s := range rep.samples {
			if s.tenant == "noisy" && s.phase == i {
				switch s.status {
				case http.StatusOK:
					ok++
				case http.StatusTooManyRequests:
					limited++
				}
			}
		}
		if limited == 0 {
			t.Errorf("noisy, %s: no 429 in %d requests; its limit must hold during the fault too", name, ok)
		}
		p99, worst, n := rep.latency("calm", i)
		t.Logf("%-9s calm: %4d requests, p99 %6.1f ms, max %6.1f ms; noisy: %d admitted, %d refused",
			name, n, ms(p99), ms(worst), ok, limited)
	}
	// Each breaker says once per outage that it opened, not per request.
	for _, name := range []string{"redis rate limits", "redis response cache"} {
		opened := 0
		for _, line := range strings.Split(f.logs.String(), "\n") {
			if strings.Contains(line, "circuit breaker open") && strings.Contains(line, `breaker="`+name+`"`) {
				opened++
			}
		}
		// Once per outage; a loaded machine may add a spurious one, but
		// hundreds of requests ran during the outages.
		if opened < 1 || opened > 5 {
			t.Errorf("breaker %q logged opening %d times over 2 outages; want about once per outage:\n%s", name, opened, f.logs.String())
		}
	}
	return rep
}

// TestRedisFault is the must-show fault test: Redis paused for a few
// seconds, resumed, killed, restarted, under continuous traffic of two
// tenants. Run with -v for the calm tenant's p99 in every phase.
func TestRedisFault(t *testing.T) {
	runRedisFault(t, 2*time.Second)
}

// BenchmarkRedisFault reports the calm tenant's p99 latency before the
// fault, while Redis is paused and while it is stopped (5s each), once:
//
//	go test ./internal/server -run '^$' -bench BenchmarkRedisFault -benchtime 1x -v
func BenchmarkRedisFault(b *testing.B) {
	rep := runRedisFault(b, 5*time.Second)
	for i, name := range rep.phases {
		p99, worst, _ := rep.latency("calm", i)
		b.ReportMetric(ms(p99), "p99-ms-"+name)
		b.ReportMetric(ms(worst), "max-ms-"+name)
	}
}

// TestRedisFallbackKeepsTenantsApart is the negative test of the fallback:
// while Redis is paused, tenant a's flood cannot use tenant b's allowance
// (the local limiter is keyed per incarnation too), and neither before,
// during nor after the fault is a cached answer of one tenant served to the
// other: every cache key starts with the tenant's incarnation.
func TestRedisFallbackKeepsTenantsApart(t *testing.T) {
	// Generous deadlines: with Redis up, a loaded test machine must not
	// fall back and miss the cache this test counts on.
	f := newFaultRedis(t, 500*time.Millisecond)
	env := f.env
	keys := map[string]string{}
	for _, id := range []string{"a", "b", "probe"} {
		rpm := 5
		if id == "probe" { // drives the breakers' recovery, never limited
			rpm = 1_000_000
		}
		env.createTenant(t, map[string]any{"id": id, "system_prompt": "agent of " + id,
			"limits": map[string]any{"requests_per_minute": rpm}})
		_, keys[id] = env.newKey(t, id)
	}
	// ask sends content for tenant id, which must be answered with a 200,
	// and reports whether the answer came from the cache; an answer made
	// for the other tenant fails the test.
	ask := func(id, content string) bool {
		t.Helper()
		r := env.chat(t, chatCall{key: keys[id], content: content, extra: cacheable})
		if r.status != http.StatusOK {
			t.Fatalf("%s: %v", id, r)
		}
		if !bytes.Contains(r.body, []byte("agent of "+id)) {
			t.Fatalf("%s was served another tenant's answer: %s", id, r.body)
		}
		return r.header.Get("X-Bulkhead-Cache") == "hit"
	}
	if ask("a", "same question") || !ask("a", "same question") {
		t.Fatal("a's repeated question is not a cache hit with Redis up")
	}
	if ask("b", "same question") {
		t.Fatal("b hit on a question only a had asked")
	}
	if ask("b", "only b asked this") || !ask("b", "only b asked this") {
		t.Fatal("b's repeated question is not a cache hit with Redis up")
	}
	f.checkCacheKeys(t, "a", "b")

	f.rs.Pause()
	// Local limits, per tenant: a is refused after its 5, b still gets its
	// own 5 and then is refused too.
	count := func(id string, n int) (ok int) {
		for i := range n {
			start := time.Now()
			r := env.chat(t, chatCall{key: keys[id], content: fmt.Sprint("flood ", i), extra: cacheable})
			if d := time.Since(start); d > faultSlowBound {
				t.Errorf("%s: request took %v with Redis paused", id, d)
			}
			switch r.status {
			case http.StatusOK:
				ok++
			case http.StatusTooManyRequests:
			default:
				t.Fatalf("%s with Redis paused: %v", id, r)
			}
		}
		return ok
	}
	if got := count("a", 8); got != 5 {
		t.Errorf("a admitted %d of 8 with Redis paused; want its local limit, 5", got)
	}
	if got := count("b", 5); got != 5 {
		t.Errorf("b admitted %d of 5 after a's flood; want all 5: a must not use b's allowance", got)
	}
	if got := count("b", 1); got != 0 {
		t.Errorf("b's 6th request admitted with Redis paused; want refused")
	}
	if !f.limiter.Fallback() || !f.cache.Bypassed() {
		t.Fatalf("with Redis paused: limiter on fallback %v, cache bypassed %v; want both", f.limiter.Fallback(), f.cache.Bypassed())
	}
	f.rs.Resume()

	// a and b have little allowance left: another tenant's requests let
	// the breakers probe Redis.
	deadline := time.Now().Add(5 * time.Second)
	for f.cache.Bypassed() || f.limiter.Fallback() {
		if time.Now().After(deadline) {
			t.Fatal("still on the fallback 5s after Redis resumed")
		}
		ask("probe", "are you back?")
		time.Sleep(50 * time.Millisecond)
	}
	if ask("a", "only b asked this") {
		t.Error("after the pause: a hit on a question only b had asked")
	}
	if !ask("b", "same question") || !ask("a", "same question") {
		t.Error("after the pause: the entries still in Redis are not served to their tenants")
	}
	f.checkCacheKeys(t, "a", "b", "probe")
}

// checkCacheKeys checks that every response-cache key in Redis starts with
// the incarnation of one of the tenants ids.
func (f *faultRedis) checkCacheKeys(t *testing.T, ids ...string) {
	t.Helper()
	var prefixes []string
	for _, id := range ids {
		tn, err := f.env.plane.Tenant(tenant.ID(id))
		if err != nil {
			t.Fatal(err)
		}
		prefixes = append(prefixes, faultPrefix+":response-cache:"+string(tn.Incarnation())+":")
	}
	keys, err := f.client.Keys(t.Context(), faultPrefix+":response-cache:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatal("no response-cache keys in Redis")
	}
	for _, k := range keys {
		if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(k, p) }) {
			t.Errorf("cache key %q starts with none of the tenants' incarnations %q", k, prefixes)
		}
	}
}

// cacheable asks for a deterministic answer, which is what the response
// cache keeps.
var cacheable = map[string]any{"temperature": 0}
