package llm

import "testing"

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
	} {
		if got := p.Cost(tt.u); got != tt.want {
			t.Errorf("%s: Cost(%+v) = %d, want %d", tt.name, tt.u, got, tt.want)
		}
	}
}
