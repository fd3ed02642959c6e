package quota

import (
	"fmt"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// BenchmarkAdmit measures one Admit and its release with every limit set
// (never reached), from one goroutine and from GOMAXPROCS goroutines spread
// over 64 tenants.
func BenchmarkAdmit(b *testing.B) {
	l := Limits{RequestsPerMinute: 1 << 30, TokensPerMinute: 1 << 30, MaxConcurrent: 1 << 20, TokenBudget: 1 << 50}
	backends := []struct {
		name string
		new  func(b *testing.B) Limiter
	}{
		{"memory", func(b *testing.B) Limiter { return NewMemory() }},
		{"redis", func(b *testing.B) Limiter {
			client := redisClient(b)
			return NewRedis(client, testPrefix(b, client))
		}},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			lim := be.new(b)
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				release, err := lim.Admit(ctx, "tenant-a", l)
				if err != nil {
					b.Fatal(err)
				}
				release()
			}
		})
		b.Run(be.name+"/parallel", func(b *testing.B) {
			lim := be.new(b)
			ctx := b.Context()
			var ids [64]tenant.Incarnation
			for i := range ids {
				ids[i] = tenant.Incarnation(fmt.Sprintf("tenant-%d", i))
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i++
					release, err := lim.Admit(ctx, ids[i%len(ids)], l)
					if err != nil {
						b.Error(err)
						return
					}
					release()
				}
			})
		})
	}
}
