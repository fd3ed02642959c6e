package cache

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bulkhead-ai/bulkhead/internal/breaker"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// DefaultRedisPrefix is the key prefix of NewRedis(client, "").
const DefaultRedisPrefix = "bulkhead:response-cache:"

// Redis is a Backend in Redis, shared by replicas. An entry's Redis key is
// the prefix followed by its key ("<tenant>:<hex>"); Redis enforces the TTL.
//
// It fails safe: every call has a short deadline and goes through a circuit
// breaker. A call that fails returns its error (the caller treats it as a
// miss); while the breaker is open, after calls kept failing, the cache is
// bypassed silently: Get misses and Set drops the entry. The breaker probes
// Redis once per cooldown and the cache is used again when it answers.
type Redis struct {
	client redis.UniversalClient
	prefix string
	guard  *breaker.Breaker
	log    *slog.Logger
}

// RedisOptions configures NewRedisWith; zero fields take defaults.
type RedisOptions struct {
	// Prefix starts every key; empty means DefaultRedisPrefix.
	Prefix string
	// Timeout bounds each Get and Set; zero means DefaultRedisTimeout.
	Timeout time.Duration
	// Logger receives the breaker's transitions; nil discards them.
	Logger *slog.Logger
}

// DefaultRedisTimeout bounds each Get and Set: a lookup only saves a model
// call, so it may not cost more than a small part of one.
const DefaultRedisTimeout = 50 * time.Millisecond

// deleteTimeout bounds DeleteTenant's whole scan, which is off the request
// path.
const deleteTimeout = 30 * time.Second

// NewRedis returns a Redis backend keeping its keys under prefix. An empty
// prefix means DefaultRedisPrefix, so that DeleteTenant never touches keys
// that belong to something else in a shared Redis.
func NewRedis(client redis.UniversalClient, prefix string) *Redis {
	return NewRedisWith(client, RedisOptions{Prefix: prefix})
}

// NewRedisWith returns a Redis backend set up by o.
func NewRedisWith(client redis.UniversalClient, o RedisOptions) *Redis {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Redis{client: client, prefix: cmp.Or(o.Prefix, DefaultRedisPrefix), log: log,
		guard: breaker.New(breaker.Options{Name: "redis response cache", Timeout: cmp.Or(o.Timeout, DefaultRedisTimeout), Logger: log})}
}

// Bypassed reports whether the cache is being bypassed because Redis has been
// failing (the breaker is not closed).
func (r *Redis) Bypassed() bool { return r.guard.State() != breaker.Closed }

// Get implements Backend.
func (r *Redis) Get(ctx context.Context, key string) ([]byte, bool, error) {
	var b []byte
	found := false
	err := r.guard.Do(ctx, func(ctx context.Context) (err error) {
		b, err = r.client.Get(ctx, r.prefix+key).Bytes()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		found = err == nil
		return err
	})
	switch {
	case errors.Is(err, breaker.ErrOpen):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("redis get: %w", err)
	}
	return b, found, nil
}

// Set implements Backend.
func (r *Redis) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if ttl < 0 {
		ttl = 0 // go-redis reads -1 as KEEPTTL
	}
	err := r.guard.Do(ctx, func(ctx context.Context) error { return r.client.Set(ctx, r.prefix+key, val, ttl).Err() })
	switch {
	case errors.Is(err, breaker.ErrOpen):
		return nil
	case err != nil:
		return fmt.Errorf("redis set: %w", err)
	}
	return nil
}

// DeleteTenant implements Backend. It scans for the tenant's keys on every
// node (each master of a cluster, each shard of a ring) and unlinks them one
// by one, so no command spans hash slots. An entry written concurrently may
// survive; after offboarding it is unaddressable and does not decrypt, since
// its key and seal came from the destroyed data key. For the same reason a
// Redis that is away does not fail the offboarding: the entries are left to
// expire within their TTL, and a warning says so.
func (r *Redis) DeleteTenant(ctx context.Context, id tenant.Incarnation) error {
	if err := tenant.CheckIncarnation(id); err != nil {
		return fmt.Errorf("redis cache: %w", err)
	}
	if err := r.deleteTenant(ctx, id); err != nil {
		r.log.WarnContext(ctx, "response cache entries of a deleted tenant left to expire", "tenant", id.Tenant(), "error", err.Error())
	}
	return nil
}

func (r *Redis) deleteTenant(ctx context.Context, id tenant.Incarnation) error {
	if r.Bypassed() {
		return breaker.ErrOpen
	}
	ctx, cancel := context.WithTimeout(ctx, deleteTimeout)
	defer cancel()
	prefix := r.prefix + string(id) + ":"
	del := func(ctx context.Context, c redis.Cmdable) error { return deleteByPrefix(ctx, c, prefix) }
	switch c := r.client.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return del(ctx, n) })
	case *redis.Ring:
		return c.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error { return del(ctx, n) })
	default:
		return del(ctx, r.client)
	}
}

func deleteByPrefix(ctx context.Context, c redis.Cmdable, prefix string) error {
	pattern := globEscape(prefix) + "*"
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, pattern, 1000).Result()
		if err != nil {
			return fmt.Errorf("redis scan: %w", err)
		}
		if len(keys) > 0 {
			_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, k := range keys {
					if strings.HasPrefix(k, prefix) { // belt and braces over the glob
						p.Unlink(ctx, k)
					}
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("redis unlink: %w", err)
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// globEscape quotes the characters special to Redis glob patterns.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\', '^', '-':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
