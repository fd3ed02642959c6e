package textnorm

import (
	"strings"
	"testing"
)

func TestSkeletonFoldsLookalikes(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "tenant_id", "tenant_id"},
		{"upper", "TENANT_ID", "tenant_id"},
		{"dotless i", "tenant_\u0131d", "tenant_id"},
		{"kelvin sign", "wor\u212Aspace_id", "workspace_id"},
		{"long s", "u\u017Fer_id", "user_id"},
		{"zero-width space", "tenant_id\u200b", "tenant_id"},
		{"zero-width joiner inside", "ca\u200dna\u200dry", "canary"},
		{"soft hyphen", "can\u00adary", "canary"},
		{"fullwidth", "\uFF43\uFF41\uFF4E\uFF41\uFF52\uFF59", "canary"},
		{"cyrillic a and o", "c\u0430n\u0430ry t\u043ek", "canary tok"},
		{"combining acute", "ca\u0301nary", "canary"},
		{"digit zero and one look like o and l", "0l1", "oll"},
		{"variation selector", "a\uFE0Fb", "ab"},
		{"lunate sigma looks like c", "\u03F2anary \u03F9ANARY", "canary canary"},
		{"ligature fi", "\uFB01le", "file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Skeleton(tt.in); got != tt.want {
				t.Errorf("Skeleton(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestSkeletonMapPointsBackIntoInput(t *testing.T) {
	in := "x\uFF43\u200da\u0301Z"
	skel, at := SkeletonMap(in)
	if skel != Skeleton(in) {
		t.Fatalf("SkeletonMap skeleton %q, Skeleton %q", skel, Skeleton(in))
	}
	if len(at) != len(skel)+1 || at[len(skel)] != len(in) {
		t.Fatalf("at has %d entries ending %d, want %d ending %d", len(at), at[len(at)-1], len(skel)+1, len(in))
	}
	for i := range skel {
		if at[i] < 0 || at[i] >= len(in) || (i > 0 && at[i] < at[i-1]) {
			t.Fatalf("at[%d] = %d: not a non-decreasing offset into the input", i, at[i])
		}
	}
	// 'a' (skeleton index 2) comes from the 'a' after the joiner.
	if got := in[at[2] : at[2]+1]; got != "a" {
		t.Errorf("skeleton byte 2 maps to %q, want %q", got, "a")
	}
}

func TestSkeletonIsIdempotent(t *testing.T) {
	for _, s := range []string{"Hello, Wörld", "ｆｕｌｌ", "ǅ", "ß", "İstanbul", strings.Repeat("\u0430", 3)} {
		once := Skeleton(s)
		if twice := Skeleton(once); twice != once {
			t.Errorf("Skeleton(Skeleton(%q)) = %q, want %q", s, twice, once)
		}
	}
}

func BenchmarkSkeletonASCII(b *testing.B) {
	s := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 90)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		Skeleton(s)
	}
}
