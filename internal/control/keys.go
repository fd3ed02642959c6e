package control

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// KeyOptions are what a new key may be given besides its hash.
type KeyOptions struct {
	Name      string
	ExpiresAt time.Time // zero: never
}

// MaxKeyName bounds a key's name.
const MaxKeyName = 128

func (o KeyOptions) valid() error {
	if len(o.Name) > MaxKeyName {
		return fmt.Errorf("%w: key name longer than %d bytes", kind.Invalid, MaxKeyName)
	}
	for _, r := range o.Name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: key name holds a control character", kind.Invalid)
		}
	}
	return nil
}

// KeyUseInterval is how often RunKeyUse writes when keys were last used.
const KeyUseInterval = 10 * time.Second

// keyUse holds the last-used times not yet written: one map write per
// request, one database write per interval for all of them.
type keyUse struct {
	mu      sync.Mutex
	pending map[tenant.KeyID]time.Time
}

// KeyUsed records that the key authenticated a request now. It is written
// to the database by RunKeyUse, not here: no write per request.
func (p *Plane) KeyUsed(id tenant.KeyID) {
	now := p.now()
	p.keyUse.mu.Lock()
	if p.keyUse.pending == nil {
		p.keyUse.pending = map[tenant.KeyID]time.Time{}
	}
	p.keyUse.pending[id] = now
	p.keyUse.mu.Unlock()
}

// merge shows the pending times in keys, so a listing is current before
// they are written.
func (u *keyUse) merge(keys []Key) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i, k := range keys {
		if at, ok := u.pending[k.ID]; ok && (k.LastUsedAt == nil || at.After(*k.LastUsedAt)) {
			at := at.UTC()
			keys[i].LastUsedAt = &at
		}
	}
}

// FlushKeyUse writes the pending last-used times. If the write fails they
// are kept for the next attempt (unless newer ones came meanwhile).
func (p *Plane) FlushKeyUse(ctx context.Context) error {
	p.keyUse.mu.Lock()
	used := p.keyUse.pending
	p.keyUse.pending = nil
	p.keyUse.mu.Unlock()
	if len(used) == 0 {
		return nil
	}
	if err := p.be.touchKeys(ctx, used); err != nil {
		p.keyUse.mu.Lock()
		if p.keyUse.pending == nil {
			p.keyUse.pending = map[tenant.KeyID]time.Time{}
		}
		for id, at := range used {
			if cur, ok := p.keyUse.pending[id]; !ok || at.After(cur) {
				p.keyUse.pending[id] = at
			}
		}
		p.keyUse.mu.Unlock()
		return fmt.Errorf("record when api keys were last used: %w", err)
	}
	return nil
}

// RunKeyUse writes the keys' last-used times every KeyUseInterval, and once
// more when ctx is cancelled, then returns.
func (p *Plane) RunKeyUse(ctx context.Context) error {
	return p.flushEvery(ctx, KeyUseInterval, "flush key use", p.FlushKeyUse)
}

// flushEvery calls flush every interval, logging failures as what, and
// once more when ctx is cancelled, returning its error.
func (p *Plane) flushEvery(ctx context.Context, interval time.Duration, what string, flush func(context.Context) error) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if err := flush(ctx); err != nil {
				p.logger.Warn(what, "error", err.Error())
			}
		case <-ctx.Done():
			return flush(context.WithoutCancel(ctx))
		}
	}
}

// sortedUse is used's key ids in order, so that concurrent flushes of
// replicas take row locks in the same order.
func sortedUse(used map[tenant.KeyID]time.Time) []tenant.KeyID {
	return slices.Sorted(maps.Keys(used))
}
