package vector

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestDot checks the dispatched kernels (assembly on amd64 with AVX2) against
// the pure-Go ones on every length from 0 to 1000, at unaligned offsets.
func TestDot(t *testing.T) {
	if !useAVX2 {
		t.Log("no AVX2/FMA: the kernels are the pure-Go ones")
	}
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n <= 1000; n++ {
		off := r.IntN(8) // start off a 32-byte boundary
		a := make([]float32, n+off)[off:]
		b := make([]float32, n+off+r.IntN(3))[off:] // b may be longer than a
		for i := range a {
			a[i] = float32(r.NormFloat64())
		}
		for i := range b {
			b[i] = float32(r.NormFloat64())
		}
		got, want := dot(a, b), dotGeneric(a, b)
		var mag float64 // bound the rounding error by Σ|a·b|
		for i := range a {
			mag += math.Abs(float64(a[i]) * float64(b[i]))
		}
		if d := math.Abs(float64(got) - float64(want)); d > 1e-5*mag+1e-6 {
			t.Errorf("n=%d: dot = %v, dotGeneric = %v (Σ|ab| %v)", n, got, want, mag)
		}

		ai := make([]int8, n+off)[off:]
		bi := make([]int8, n+off+r.IntN(3))[off:]
		for i := range ai {
			ai[i] = int8(r.Uint32()) // all of [-128, 127]
		}
		for i := range bi {
			bi[i] = int8(r.Uint32())
		}
		if got, want := dotInt8(ai, bi), dotInt8Generic(ai, bi); got != want {
			t.Errorf("n=%d: dotInt8 = %d, dotInt8Generic = %d", n, got, want)
		}
	}
}

func TestDotInt8Extremes(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b int8
	}{
		{"max*max", 127, 127},
		{"min*min", -128, -128},
		{"min*max", -128, 127},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, n := range []int{1, 15, 16, 17, 63, 64, 65, 384, 1000} {
				a, b := make([]int8, n), make([]int8, n)
				for i := range a {
					a[i], b[i] = tc.a, tc.b
				}
				want := int32(n) * int32(tc.a) * int32(tc.b)
				if got := dotInt8(a, b); got != want {
					t.Errorf("n=%d: dotInt8 = %d, want %d", n, got, want)
				}
			}
		})
	}
}

func TestDotShortB(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("dot with len(b) < len(a) did not panic")
		}
	}()
	dot(make([]float32, 9), make([]float32, 8))
}

func BenchmarkDot(b *testing.B) {
	const dim = 384
	r := rand.New(rand.NewPCG(3, 4))
	x, y := make([]float32, dim), make([]float32, dim)
	xi, yi := make([]int8, dim), make([]int8, dim)
	for i := range x {
		x[i], y[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
		xi[i], yi[i] = int8(r.IntN(255)-127), int8(r.IntN(255)-127)
	}
	var sf float32
	var si int32
	b.Run("float32", func(b *testing.B) {
		for b.Loop() {
			sf += dot(x, y)
		}
	})
	b.Run("float32/generic", func(b *testing.B) {
		for b.Loop() {
			sf += dotGeneric(x, y)
		}
	})
	b.Run("int8", func(b *testing.B) {
		for b.Loop() {
			si += dotInt8(xi, yi)
		}
	})
	b.Run("int8/generic", func(b *testing.B) {
		for b.Loop() {
			si += dotInt8Generic(xi, yi)
		}
	})
	_, _ = sf, si
}
