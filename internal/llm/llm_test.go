package llm

import (
	"math"
	"testing"
)

func TestPriceCost(t *testing.T) {
	p := Price{InputMicroUSD: 2_500_000, CachedInputMicroUSD: 1_250_000, OutputMicroUSD: 10_000_000} // $2.50, $1.25, $10 per million
	for _, tt := range []struct {
		name string
		u    Usage
		want int64
	}{
		{"nothing", Usage{}, 0},
		{"input only", Usage{PromptTokens: 1000}, 2500},
		{"output only", Usage{CompletionTokens: 1000}, 10_000},
		{"cached part of the prompt", Usage{PromptTokens: 1000, PromptTokensDetails: PromptTokensDetails{CachedTokens: 400}}, 600*2_500_000/1_000_000 + 400*1_250_000/1_000_000},
		{"more cached than prompt is capped", Usage{PromptTokens: 10, PromptTokensDetails: PromptTokensDetails{CachedTokens: 50}}, 13},
		{"rounds to the nearest micro-dollar", Usage{PromptTokens: 1}, 3},
		// What a hostile provider may report: no count is negative, and a
		// huge one costs what MaxCallTokens does, never a wrapped sum.
		{"negative counts cost nothing", Usage{PromptTokens: -1_000_000, CompletionTokens: -1_000_000}, 0},
		{"a negative cached count is no discount", Usage{PromptTokens: 1000, PromptTokensDetails: PromptTokensDetails{CachedTokens: -math.MaxInt}}, 2500},
		{"huge counts are capped, not wrapped", Usage{PromptTokens: math.MaxInt, CompletionTokens: math.MaxInt}, MaxCallTokens * 12_500_000 / 1_000_000},
	} {
		if got := p.Cost(tt.u); got != tt.want {
			t.Errorf("%s: Cost(%+v) = %d, want %d", tt.name, tt.u, got, tt.want)
		}
	}
}

// TestPriceCostSaturates: even the largest prices of the largest counts
// cost the largest int64, never a negative.
func TestPriceCostSaturates(t *testing.T) {
	p := Price{InputMicroUSD: math.MaxInt64, CachedInputMicroUSD: math.MaxInt64, OutputMicroUSD: math.MaxInt64}
	if got := p.Cost(Usage{PromptTokens: math.MaxInt, CompletionTokens: math.MaxInt}); got != math.MaxInt64 {
		t.Errorf("Cost = %d, want %d", got, int64(math.MaxInt64))
	}
	if got := (Price{InputMicroUSD: -5}).Cost(Usage{PromptTokens: 1000}); got != 0 {
		t.Errorf("a negative price costs %d, want 0", got)
	}
}

func TestUsageBounded(t *testing.T) {
	got := Usage{PromptTokens: math.MaxInt, CompletionTokens: -3, TotalTokens: 1, PromptTokensDetails: PromptTokensDetails{CachedTokens: math.MaxInt}}.Bounded()
	want := Usage{PromptTokens: MaxCallTokens, TotalTokens: MaxCallTokens, PromptTokensDetails: PromptTokensDetails{CachedTokens: MaxCallTokens}}
	if got != want {
		t.Errorf("Bounded = %+v, want %+v", got, want)
	}
}
