package quota

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
)

// TestNoisyNeighbour floods tenant A at ten times its request rate from many
// goroutines while tenant B works at its usual pace: B must never be refused.
// B's admission latency alone and during the flood is logged, not asserted.
func TestNoisyNeighbour(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 4s")
	}
	const (
		phase      = 2 * time.Second
		floodRate  = 1000 // A's requests per second: 10× its limit
		flooders   = 50
		bInterval  = 10 * time.Millisecond // B: 100/s, half its limit
		holdA      = 5 * time.Millisecond
		aPerMinute = 6000 // 100/s
	)
	limitsA := Limits{RequestsPerMinute: aPerMinute, MaxConcurrent: 20}
	limitsB := Limits{RequestsPerMinute: 12000, MaxConcurrent: 20}
	m := NewMemory()
	ctx := t.Context()

	// runB makes B's requests for one phase and returns their admission
	// latencies.
	runB := func() []time.Duration {
		var lat []time.Duration
		tick := time.NewTicker(bInterval)
		defer tick.Stop()
		for end := time.Now().Add(phase); time.Now().Before(end); {
			<-tick.C
			start := time.Now()
			release, err := m.Admit(ctx, "tenant-b", limitsB)
			lat = append(lat, time.Since(start))
			if err != nil {
				t.Fatalf("tenant-b refused (%v) while tenant-a floods", err)
			}
			release()
		}
		return lat
	}

	solo := runB()

	// A has been flooding for a while: its minute's burst is gone.
	for {
		release, err := m.Admit(ctx, "tenant-a", limitsA)
		if err != nil {
			break
		}
		release()
	}
	var admittedA, refusedA atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range flooders {
		wg.Go(func() {
			tick := time.NewTicker(time.Second * flooders / floodRate)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				release, err := m.Admit(ctx, "tenant-a", limitsA)
				if err != nil {
					if !errors.Is(err, kind.Limited) {
						t.Errorf("tenant-a: %v", err)
					}
					refusedA.Add(1)
					continue
				}
				admittedA.Add(1)
				time.Sleep(holdA)
				release()
			}
		})
	}
	flood := runB()
	close(stop)
	wg.Wait()

	if admittedA.Load() == 0 || refusedA.Load() == 0 {
		t.Errorf("tenant-a: %d admitted, %d refused; want both, or the flood did not reach the limit", admittedA.Load(), refusedA.Load())
	}
	t.Logf("tenant-a flood: %d admitted, %d refused in %v (limit %d/min)", admittedA.Load(), refusedA.Load(), phase, aPerMinute)
	t.Logf("tenant-b admission latency solo:        n=%d p50=%v p99=%v max=%v", len(solo), pct(solo, 50), pct(solo, 99), pct(solo, 100))
	t.Logf("tenant-b admission latency during flood: n=%d p50=%v p99=%v max=%v", len(flood), pct(flood, 50), pct(flood, 99), pct(flood, 100))
}

// pct returns the p-th percentile of d.
func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(i-1, 0)]
}
