package textnorm

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func TestStripInvisibleRuns(t *testing.T) {
	zw := "\u200b"
	tests := []struct{ name, in, want string }{
		{"plain", "hello world", "hello world"},
		{"one joiner kept", "👨\u200d👩", "👨\u200d👩"},
		{"three kept", "a" + strings.Repeat(zw, 3) + "b", "a" + strings.Repeat(zw, 3) + "b"},
		{"four removed", "a" + strings.Repeat(zw, 4) + "b", "ab"},
		{"six between every letter", "b" + strings.Repeat(zw, 6) + "k" + strings.Repeat(zw, 6) + "c", "bkc"},
		{"mixed invisibles", "x\u2063\u2063\u2063\u2063\u200dy", "xy"},
		{"stacked combining marks", "e" + strings.Repeat("\u0301", 9) + "f", "ef"},
		{"two marks kept", "e\u0301\u0302f", "e\u0301\u0302f"},
		{"long run at the end", "ab" + strings.Repeat(zw, 5), "ab"},
		{"short run at the end", "ab" + zw, "ab" + zw},
		{"named references to U+2060 between letters", "b&NoBreak;&NoBreak;&NoBreak;&NoBreak;k", "bk"},
		{"three named references kept", "b&NoBreak;&NoBreak;&NoBreak;k", "b&NoBreak;&NoBreak;&NoBreak;k"},
		{"numeric references and runes mixed", "b&#x2060;\u2060&#8288;&zwj;k", "bk"},
		{"visible references break a run", "b\u200b\u200b&amp;\u200b\u200bk", "b\u200b\u200b&amp;\u200b\u200bk"},
		{"an unfinished reference at the end", "ab&NoBr", "ab&NoBr"},
		{"an unfinished reference after a long run", "ab" + strings.Repeat(zw, 5) + "&NoBr", "ab&NoBr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := StripInvisibleRuns(tt.in); got != tt.want {
				t.Errorf("StripInvisibleRuns(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestInvisibleFilterStreams: cut anywhere, even inside a rune, the stream
// gives what the whole text gives, and holds back only a short tail.
func TestInvisibleFilterStreams(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	parts := []string{"a", "b", " ", "é", "\u200b", "\u00ad", "\u0301", "👩", "\u200d", "\uFE0F", "\U000E0041",
		"&NoBreak;", "&#x2060;", "&#8288;", "&amp;", "&", "&No", ";"}
	for range 3000 {
		var b strings.Builder
		for range rng.IntN(40) {
			b.WriteString(parts[rng.IntN(len(parts))])
		}
		text := b.String()
		want := StripInvisibleRuns(text)
		var f InvisibleFilter
		var got strings.Builder
		for i := 0; i < len(text); {
			n := 1 + rng.IntN(6)
			n = min(n, len(text)-i)
			got.WriteString(f.Write(text[i : i+n]))
			if held := len(f.pending); held > (MaxInvisibleRun+1)*maxUnit {
				t.Fatalf("%q: holding %d bytes", text, held)
			}
			i += n
		}
		got.WriteString(f.Flush())
		if got.String() != want {
			t.Fatalf("streamed %q = %q, want %q", text, got.String(), want)
		}
	}
}
