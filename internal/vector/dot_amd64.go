//go:build amd64

package vector

// useAVX2 reports whether the CPU and OS support AVX2 and FMA, so the
// assembly kernels may run. Tests flip it to exercise the fallback.
var useAVX2 = hasAVX2FMA()

// dot returns the dot product of a and b[:len(a)].
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	if useAVX2 {
		return dotF32AVX2(a, b)
	}
	return dotGeneric(a, b)
}

// dotInt8 returns the dot product of a and b[:len(a)] in int32.
func dotInt8(a, b []int8) int32 {
	b = b[:len(a)]
	if useAVX2 {
		return dotInt8AVX2(a, b)
	}
	return dotInt8Generic(a, b)
}

// dotF32AVX2 returns the dot product of a and b; len(b) must be ≥ len(a).
//
//go:noescape
func dotF32AVX2(a, b []float32) float32

// dotInt8AVX2 returns the dot product of a and b in int32; len(b) must be
// ≥ len(a).
//
//go:noescape
func dotInt8AVX2(a, b []int8) int32

// cpuid executes CPUID with the given leaf and subleaf.
func cpuid(leaf, subleaf uint32) (eax, ebx, ecx, edx uint32)

// xgetbv reads extended control register 0.
func xgetbv() (eax, edx uint32)

// hasAVX2FMA reports whether AVX2 and FMA3 instructions may be used: the CPU
// has them and the OS saves the YMM registers.
func hasAVX2FMA() bool {
	maxLeaf, _, _, _ := cpuid(0, 0)
	if maxLeaf < 7 {
		return false
	}
	_, _, ecx1, _ := cpuid(1, 0)
	const (
		fma     = 1 << 12
		osxsave = 1 << 27
		avx     = 1 << 28
	)
	if ecx1&(fma|osxsave|avx) != fma|osxsave|avx {
		return false
	}
	if xcr0, _ := xgetbv(); xcr0&6 != 6 { // XMM and YMM state enabled
		return false
	}
	_, ebx7, _, _ := cpuid(7, 0)
	const avx2 = 1 << 5
	return ebx7&avx2 != 0
}
