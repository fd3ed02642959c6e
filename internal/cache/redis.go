package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// DefaultRedisPrefix is the key prefix of NewRedis(client, "").
const DefaultRedisPrefix = "bulkhead:response-cache:"

// Redis is a Backend in Redis, shared by replicas. An entry's Redis key is
// the prefix followed by its key ("<tenant>:<hex>"); Redis enforces the TTL.
type Redis struct {
	client redis.UniversalClient
	prefix string
}

// NewRedis returns a Redis backend keeping its keys under prefix. An empty
// prefix means DefaultRedisPrefix, so that DeleteTenant never touches keys
// that belong to something else in a shared Redis.
func NewRedis(client redis.UniversalClient, prefix string) *Redis {
	if prefix == "" {
		prefix = DefaultRedisPrefix
	}
	return &Redis{client: client, prefix: prefix}
}

// Get implements Backend.
func (r *Redis) Get(ctx context.Context, key string) ([]byte, bool, error) {
	b, err := r.client.Get(ctx, r.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("redis get: %w", err)
	}
	return b, true, nil
}

// Set implements Backend.
func (r *Redis) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if ttl < 0 {
		ttl = 0 // go-redis reads -1 as KEEPTTL
	}
	if err := r.client.Set(ctx, r.prefix+key, val, ttl).Err(); err != nil {
		return fmt.Errorf("redis set: %w", err)
	}
	return nil
}

// DeleteTenant implements Backend. It scans for the tenant's keys on every
// node (each master of a cluster, each shard of a ring) and unlinks them one
// by one, so no command spans hash slots. An entry written concurrently may
// survive; after offboarding it is unaddressable and does not decrypt, since
// its key and seal came from the destroyed data key.
func (r *Redis) DeleteTenant(ctx context.Context, id tenant.Incarnation) error {
	if err := tenant.CheckIncarnation(id); err != nil {
		return fmt.Errorf("redis cache: %w", err)
	}
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
