package embed

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"
)

// chunk1000 is a 1,000-character chunk of ordinary prose.
var chunk1000 = func() string {
	s := strings.Repeat("Bulkhead keeps every tenant's documents, memories and embeddings apart. "+
		"Search runs over one tenant's index only, and cached vectors are keyed per tenant. ", 7)
	return s[:1000]
}()

func TestOfflineDeterministic(t *testing.T) {
	texts := []string{chunk1000, "Hello, World!", "naïve café — ÉCOLE 42", ""}
	a, err := NewOffline(0).Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	o := NewOffline(0)
	for range 3 { // the pooled scratch must not carry state between texts
		b, err := o.Embed(context.Background(), texts)
		if err != nil {
			t.Fatal(err)
		}
		for i := range texts {
			if !slices.Equal(a[i], b[i]) {
				t.Fatalf("Embed(%q) differs between calls", texts[i])
			}
			if one := o.EmbedOne(texts[i]); !slices.Equal(a[i], one) {
				t.Fatalf("EmbedOne(%q) differs from Embed", texts[i])
			}
		}
	}
}

func TestOfflineDimAndModel(t *testing.T) {
	tests := []struct {
		dim, wantDim int
		wantModel    string
	}{
		{0, 384, "offline-ngram-384"},
		{-3, 384, "offline-ngram-384"},
		{64, 64, "offline-ngram-64"},
		{1, 1, "offline-ngram-1"},
	}
	for _, tt := range tests {
		o := NewOffline(tt.dim)
		if o.Dim() != tt.wantDim || o.Model() != tt.wantModel {
			t.Errorf("NewOffline(%d): Dim, Model = %d, %q; want %d, %q", tt.dim, o.Dim(), o.Model(), tt.wantDim, tt.wantModel)
		}
		v := o.EmbedOne("some text here")
		if len(v) != tt.wantDim {
			t.Errorf("NewOffline(%d): len(vector) = %d, want %d", tt.dim, len(v), tt.wantDim)
		}
		if n := norm(v); math.Abs(n-1) > 1e-5 {
			t.Errorf("NewOffline(%d): norm = %v, want 1", tt.dim, n)
		}
	}
}

func TestOfflineEmptyIsZeroSafe(t *testing.T) {
	o := NewOffline(0)
	for _, text := range []string{"", "   \n\t", "!!! ... ---", "\xff\xfe"} {
		v := o.EmbedOne(text)
		for i, x := range v {
			if x != 0 || math.IsNaN(float64(x)) {
				t.Fatalf("EmbedOne(%q)[%d] = %v, want 0", text, i, x)
			}
		}
		if c := Cosine(v, o.EmbedOne("anything")); c != 0 || math.IsNaN(c) {
			t.Errorf("Cosine(EmbedOne(%q), …) = %v, want 0", text, c)
		}
	}
}

func TestOfflineCaseAndUnicode(t *testing.T) {
	o := NewOffline(0)
	pairs := [][2]string{
		{"Hello World", "hello, world!"},
		{"ÉCOLE NAÏVE", "école naïve"},
		{"ΣΟΦΙΑ", "σοφια"},
	}
	for _, p := range pairs {
		if !slices.Equal(o.EmbedOne(p[0]), o.EmbedOne(p[1])) {
			t.Errorf("EmbedOne(%q) != EmbedOne(%q), want equal (case and punctuation ignored)", p[0], p[1])
		}
	}
}

func TestOfflineSimilarity(t *testing.T) {
	o := NewOffline(0)
	base := "The quarterly invoice for the enterprise plan is due on the first of the month. " +
		"Late payments incur a two percent fee, and the account is suspended after thirty days."
	tests := []struct {
		name, near, far string
	}{
		{
			name: "edited copy",
			near: "The quarterly invoice for the enterprise plan is due on the fifth of the month. " +
				"Late payments incur a three percent fee, and the account is suspended after sixty days.",
			far: "Our hiking trail climbs through pine forest to a glacier lake; bring water, " +
				"sturdy boots and a map because the ridge path is poorly marked.",
		},
		{
			name: "reordered sentences",
			near: "Late payments incur a two percent fee, and the account is suspended after thirty days. " +
				"The quarterly invoice for the enterprise plan is due on the first of the month.",
			far: "Preheat the oven, whisk the eggs with sugar until pale, fold in the flour and bake for forty minutes.",
		},
		{
			name: "typos and inflections",
			near: "quarterly invoices for enterprise plans are dew on the first; late paymnts incur fees and accounts get suspended",
			far:  "the weather in the mountains changes quickly in the afternoon",
		},
	}
	b := o.EmbedOne(base)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			near, far := Cosine(b, o.EmbedOne(tt.near)), Cosine(b, o.EmbedOne(tt.far))
			if near <= far+0.2 {
				t.Errorf("cosine(near) = %.3f, cosine(far) = %.3f; want near well above far", near, far)
			}
			t.Logf("near %.3f far %.3f", near, far)
		})
	}
	// Character n-grams match shared stems.
	if s, u := Cosine(o.EmbedOne("encryption"), o.EmbedOne("encrypted")), Cosine(o.EmbedOne("encryption"), o.EmbedOne("giraffe")); s <= u {
		t.Errorf("cosine(encryption, encrypted) = %.3f <= cosine(encryption, giraffe) = %.3f", s, u)
	}
}

func TestOfflineCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := NewOffline(0).Embed(ctx, []string{"x"}); err != context.Canceled {
		t.Errorf("Embed(cancelled) error = %v, want context.Canceled", err)
	}
}

func TestOfflineLongWordAndText(t *testing.T) {
	o := NewOffline(0)
	long := strings.Repeat("x", 100_000) + " " + strings.Repeat("日本語のテキスト", 10_000)
	v := o.EmbedOne(long)
	if n := norm(v); math.Abs(n-1) > 1e-5 {
		t.Errorf("norm = %v, want 1", n)
	}
	// The scratch of a huge text is not pooled; later texts are unaffected.
	if !slices.Equal(o.EmbedOne("short text"), NewOffline(0).EmbedOne("short text")) {
		t.Error("embedding after a huge text differs")
	}
}

func TestOfflineAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items at random")
	}
	o := NewOffline(0)
	o.EmbedOne(chunk1000) // warm the pool
	got := testing.AllocsPerRun(100, func() { o.EmbedOne(chunk1000) })
	if got > 1 {
		t.Errorf("EmbedOne allocates %v times per 1,000-char text, want 1 (the vector)", got)
	}
}

func BenchmarkOffline(b *testing.B) {
	o := NewOffline(0)
	ctx := context.Background()
	texts := []string{chunk1000}
	b.SetBytes(int64(len(chunk1000)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := o.Embed(ctx, texts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "chunks/s")
}

func BenchmarkOfflineParallel(b *testing.B) {
	o := NewOffline(0)
	b.SetBytes(int64(len(chunk1000)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			o.EmbedOne(chunk1000)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "chunks/s")
}

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

func TestOfflineSublinearTF(t *testing.T) {
	// A word repeated 20 times weighs 1+ln 20 ≈ 4 times one occurrence, not
	// 20 times, so a text that repeats one word still resembles its others.
	o := NewOffline(0)
	beta := o.EmbedOne("beta")
	many := Cosine(beta, o.EmbedOne(strings.Repeat("alpha ", 20)+"beta"))
	if many < 0.15 {
		t.Errorf("cosine(beta, alpha×20 beta) = %.3f, want >= 0.15 (sublinear term frequency)", many)
	}
}
