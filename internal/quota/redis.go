package quota

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bulkhead-ai/bulkhead/internal/breaker"
	"github.com/bulkhead-ai/bulkhead/internal/layers"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// defaultLeaseTTL is how long a concurrency slot outlives its last renewal:
// the slots of a replica that crashed are free again after at most this.
const defaultLeaseTTL = 30 * time.Second

// Redis is a Limiter whose counters live in Redis, so that every replica
// sharing the server enforces one set of limits. Each check is one Lua script,
// atomic on the server, timed by the server's clock.
//
// A tenant's keys are "<prefix>:{<tenant>@<storage id>}:<limit>", one set per incarnation; the braces make them one
// Redis Cluster hash slot, so a script may touch them all. Every key has a
// TTL: rate buckets expire when full again, budgets at the end of their
// window, concurrency slots leaseTTL after their last renewal.
//
// A concurrency slot is a lease in a sorted set scored by its expiry, renewed
// every leaseTTL/3 while the request runs and removed by release. Unlike a
// counter with a TTL, leaked slots expire one by one even while the tenant
// keeps the key busy.
//
// Redis fails safe. Every call has a short deadline and goes through a
// circuit breaker; when a call fails, or the breaker is open because calls
// kept failing, the limits are enforced by a local [Memory] of this replica
// instead, still per incarnation. While that lasts each replica enforces
// every limit on its own, starting from a full allowance: N replicas may
// admit up to N times a tenant's rate and concurrency, and a budget is
// counted per replica, except that a tenant Redis refused for its budget
// stays refused here until its window ends. The breaker probes Redis once per
// cooldown and the shared counters take over again when it answers.
// Concurrency leases held in Redis when it went away are released if the
// call still succeeds, and otherwise expire within leaseTTL, as does a slot
// that an admission which timed out (and was then admitted locally) may
// still have taken.
//
// Redis needs server version 5 or later (scripts that read TIME and write).
type Redis struct {
	client   redis.UniversalClient
	prefix   string
	leaseTTL time.Duration // shortened by tests
	guard    *breaker.Breaker
	local    *Memory
	log      *slog.Logger
	// exhausted holds, per incarnation, when the budget window Redis last
	// refused ends (time.Time): the local fallback knows nothing of budgets
	// spent through Redis.
	exhausted sync.Map
}

// RedisOptions configures NewRedisWith; zero fields take defaults.
type RedisOptions struct {
	// Prefix starts every key.
	Prefix string
	// Timeout bounds each call to Redis; zero means DefaultRedisTimeout.
	Timeout time.Duration
	// Logger receives the breaker's transitions; nil discards them.
	Logger *slog.Logger
}

// DefaultRedisTimeout bounds each Redis call of a limiter: far above a
// healthy Redis's answer time, far below what a stalled request costs.
const DefaultRedisTimeout = 100 * time.Millisecond

// NewRedis returns a Limiter keeping its counters in client under keys that
// start with prefix, with the default timeout and no logging.
func NewRedis(client redis.UniversalClient, prefix string) *Redis {
	return NewRedisWith(client, RedisOptions{Prefix: prefix})
}

// NewRedisWith returns a Limiter keeping its counters in client, set up by o.
func NewRedisWith(client redis.UniversalClient, o RedisOptions) *Redis {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Redis{client: client, prefix: o.Prefix, leaseTTL: defaultLeaseTTL, log: log, local: NewMemory(),
		guard: breaker.New(breaker.Options{Name: "redis rate limits", Timeout: cmp.Or(o.Timeout, DefaultRedisTimeout), Logger: log})}
}

// Fallback reports whether limits are being enforced locally because Redis
// has been failing (the breaker is not closed).
func (r *Redis) Fallback() bool { return r.guard.State() != breaker.Closed }

func (r *Redis) key(id tenant.Incarnation, limit string) string {
	return r.prefix + ":{" + string(id) + "}:" + limit
}

// Forget implements Limiter: it deletes the incarnation's keys, which would
// otherwise only expire, and its local fallback counters. If Redis does not
// answer, the keys are left to expire: they belong to this incarnation only,
// which no tenant created later can address.
func (r *Redis) Forget(ctx context.Context, inc tenant.Incarnation) error {
	if err := checkTenant(inc); err != nil {
		return err
	}
	r.exhausted.Delete(inc)
	if err := r.local.Forget(ctx, inc); err != nil {
		return err
	}
	keys := []string{r.key(inc, LimitRequestsPerMinute), r.key(inc, LimitTokensPerMinute),
		r.key(inc, LimitMaxConcurrent), r.key(inc, LimitTokenBudget)}
	// One key at a time: in Redis Cluster they share a slot anyway, and a
	// plain DEL of several keys is refused across slots.
	for _, k := range keys {
		err := r.guard.Do(ctx, func(ctx context.Context) error { return r.client.Del(ctx, k).Err() })
		if err != nil {
			r.log.WarnContext(ctx, "rate-limit keys of a deleted tenant left to expire", "tenant", inc.Tenant(), "error", err.Error())
			return nil
		}
	}
	return nil
}

// Admit implements Limiter.
func (r *Redis) Admit(ctx context.Context, id tenant.Incarnation, l Limits) (release func(), err error) {
	if layers.Off("quota") { // redteamswitch builds only; see package layers
		return func() {}, nil
	}
	if err := checkTenant(id); err != nil {
		return nil, err
	}
	if err := l.check(); err != nil {
		return nil, err
	}
	if l.RequestsPerMinute == 0 && l.TokensPerMinute == 0 && l.MaxConcurrent == 0 && l.TokenBudget == 0 {
		return func() {}, nil
	}
	keys := []string{
		r.key(id, LimitRequestsPerMinute),
		r.key(id, LimitTokensPerMinute),
		r.key(id, LimitMaxConcurrent),
		r.key(id, LimitTokenBudget),
	}
	var lease string
	if l.MaxConcurrent > 0 {
		lease = rand.Text()
	}
	var res []any
	err = r.guard.Do(ctx, func(ctx context.Context) (err error) {
		res, err = admitScript.Run(ctx, r.client, keys,
			l.RequestsPerMinute, l.TokensPerMinute, l.MaxConcurrent,
			l.TokenBudget, l.periodMillis(), lease, r.leaseTTL.Milliseconds()).Slice()
		return err
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("quota: admit tenant %s: %w", id, err)
		}
		return r.admitLocal(ctx, id, l)
	}
	limit, retryMs, err := parseAdmit(res)
	if err != nil {
		return nil, fmt.Errorf("quota: admit tenant %s: %w", id, err)
	}
	if limit != "" {
		retry := time.Duration(retryMs) * time.Millisecond
		if limit == LimitTokenBudget {
			r.exhausted.Store(id, time.Now().Add(retry))
		}
		return nil, limited(limit, retry)
	}
	if l.TokenBudget > 0 {
		r.exhausted.Delete(id)
	}
	if lease == "" {
		return func() {}, nil
	}
	return r.hold(ctx, keys[2], lease), nil
}

// admitLocal admits under the local fallback limiter, while Redis does not
// answer.
func (r *Redis) admitLocal(ctx context.Context, id tenant.Incarnation, l Limits) (release func(), err error) {
	if v, ok := r.exhausted.Load(id); ok {
		if until := v.(time.Time); time.Now().Before(until) {
			return nil, limited(LimitTokenBudget, time.Until(until))
		}
		r.exhausted.Delete(id)
	}
	return r.local.Admit(ctx, id, l)
}

func parseAdmit(res []any) (limit string, retryMs int64, err error) {
	if len(res) != 2 {
		return "", 0, fmt.Errorf("unexpected script result %v", res)
	}
	limit, ok1 := res[0].(string)
	retryMs, ok2 := res[1].(int64)
	if !ok1 || !ok2 {
		return "", 0, fmt.Errorf("unexpected script result %v", res)
	}
	return limit, retryMs, nil
}

// Spend implements Limiter.
func (r *Redis) Spend(ctx context.Context, id tenant.Incarnation, l Limits, tokens int) error {
	if err := checkTenant(id); err != nil {
		return err
	}
	if err := l.check(); err != nil {
		return err
	}
	if tokens < 0 {
		return errors.New("quota: spent tokens must not be negative")
	}
	if tokens == 0 || (l.TokensPerMinute == 0 && l.TokenBudget == 0) {
		return nil
	}
	keys := []string{r.key(id, LimitTokensPerMinute), r.key(id, LimitTokenBudget)}
	err := r.guard.Do(ctx, func(ctx context.Context) error {
		return spendScript.Run(ctx, r.client, keys, l.TokensPerMinute, l.TokenBudget, l.periodMillis(), tokens).Err()
	})
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("quota: spend tenant %s: %w", id, err)
		}
		// Counted where the next admissions are checked while Redis is
		// away; lost for the shared counters.
		return r.local.Spend(ctx, id, l, tokens)
	}
	return nil
}

// lease is one held concurrency slot.
type lease struct {
	r        *Redis
	ctx      context.Context // the admitting request's values, never cancelled
	key, id  string
	every    time.Duration
	mu       sync.Mutex
	timer    *time.Timer
	released bool
}

// hold keeps the lease id in key renewed until the returned release is
// called.
func (r *Redis) hold(ctx context.Context, key, id string) (release func()) {
	l := &lease{r: r, ctx: context.WithoutCancel(ctx), key: key, id: id, every: r.leaseTTL / 3}
	l.mu.Lock()
	l.timer = time.AfterFunc(l.every, l.renew)
	l.mu.Unlock()
	var once sync.Once
	return func() { once.Do(l.release) }
}

func (l *lease) renew() {
	// A failed renewal (or one skipped while the breaker is open) is retried
	// at the next tick; the lease outlives two missed ones.
	_ = l.r.guard.Do(l.ctx, func(ctx context.Context) error {
		return renewScript.Run(ctx, l.r.client, []string{l.key}, l.id, l.r.leaseTTL.Milliseconds()).Err()
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.released {
		l.timer.Reset(l.every)
	}
}

func (l *lease) release() {
	l.mu.Lock()
	l.released = true
	l.timer.Stop()
	l.mu.Unlock()
	// If this fails or is skipped, the slot frees itself within leaseTTL;
	// renewals, which only update existing leases (XX), cannot bring it
	// back. It runs on the request's path, so it gets the same short
	// deadline as every other call.
	_ = l.r.guard.Do(l.ctx, func(ctx context.Context) error { return l.r.client.ZRem(ctx, l.key, l.id).Err() })
}

// luaCommon holds the helpers of the scripts. Times are milliseconds of the
// Redis server's clock. A rate bucket is a hash {tat, n}: GCRA's theoretical
// arrival time for an allowance of n per minute; the units in use at now are
// (tat - now) * n / 60000.
const luaCommon = `
local function now_ms()
	local t = redis.call('TIME')
	return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end

local function store(key, n, used, now)
	local ms = used * 60000 / n
	redis.call('HSET', key, 'tat', now + ms, 'n', n)
	redis.call('PEXPIRE', key, math.ceil(ms) + 1000)
end

-- used returns the units of key's allowance in use, rebasing the bucket
-- when its allowance changed to n: usage carries over, capped at n, and
-- debt is kept.
local function used(key, n, now)
	local h = redis.call('HMGET', key, 'tat', 'n')
	local tat, old = tonumber(h[1]), tonumber(h[2])
	if not tat or not old or old <= 0 then
		return 0
	end
	local u = math.max(0, tat - now) * old / 60000
	if old ~= n then
		u = math.min(u, n + math.max(0, u - old))
		store(key, n, u, now)
	end
	return u
end

-- spent returns the budget used in the window of period holding now, and
-- that window's number.
local function spent(key, period, now)
	local w = math.floor(now / period)
	local h = redis.call('HMGET', key, 'w', 'p', 'spent')
	if tonumber(h[1]) == w and tonumber(h[2]) == period then
		return tonumber(h[3]) or 0, w
	end
	return 0, w
end
`

// admitScript: KEYS requests, tokens, concurrency, budget; ARGV
// requests/min, tokens/min, max concurrent, budget, budget period ms,
// lease id, lease TTL ms. Returns {limit, retry ms}, limit "" when admitted.
var admitScript = redis.NewScript(luaCommon + `
local rpm, tpm, maxc = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local budget, period, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[7])
local now = now_ms()
if budget > 0 then
	local s, w = spent(KEYS[4], period, now)
	if s >= budget then
		return {'token_budget', math.max(1, math.ceil((w + 1) * period - now))}
	end
end
if tpm > 0 then
	local u = used(KEYS[2], tpm, now)
	if u + 1 > tpm then
		return {'tokens_per_minute', math.max(1, math.ceil((u + 1 - tpm) * 60000 / tpm))}
	end
end
if maxc > 0 then
	redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
	if redis.call('ZCARD', KEYS[3]) >= maxc then
		return {'max_concurrent', 1000}
	end
end
if rpm > 0 then
	local u = used(KEYS[1], rpm, now)
	if u + 1 > rpm then
		return {'requests_per_minute', math.max(1, math.ceil((u + 1 - rpm) * 60000 / rpm))}
	end
	store(KEYS[1], rpm, u + 1, now)
end
if maxc > 0 then
	redis.call('ZADD', KEYS[3], now + ttl, ARGV[6])
	redis.call('PEXPIRE', KEYS[3], ttl)
end
return {'', 0}
`)

// spendScript: KEYS tokens, budget; ARGV tokens/min, budget, budget period
// ms, tokens.
var spendScript = redis.NewScript(luaCommon + `
local tpm, budget, period, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
if tpm > 0 then
	store(KEYS[1], tpm, used(KEYS[1], tpm, now) + n, now)
end
if budget > 0 then
	local s, w = spent(KEYS[2], period, now)
	redis.call('HSET', KEYS[2], 'w', w, 'p', period, 'spent', s + n)
	redis.call('PEXPIREAT', KEYS[2], (w + 1) * period + 1000)
end
return 0
`)

// renewScript: KEYS concurrency; ARGV lease id, lease TTL ms. It extends a
// lease that still exists and never recreates one.
var renewScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local ttl = tonumber(ARGV[2])
if redis.call('ZADD', KEYS[1], 'XX', 'CH', now + ttl, ARGV[1]) == 1 then
	redis.call('PEXPIRE', KEYS[1], ttl)
end
return 0
`)
