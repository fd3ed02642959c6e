package quota

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// step is one call in a behaviour case: spend tokens (if any), then admit.
type step struct {
	l     Limits
	spend int    // tokens spent before admitting
	hold  bool   // keep the admitted request running until the test ends
	want  string // "" for admitted, else the limit expected to refuse
	// retry bounds RetryAfter when refused: want RetryAfter in (0, retry].
	retry time.Duration
}

type behaviourCase struct {
	name  string
	steps []step
}

// limitCases drive each limit to refusal; the last step of each is refused.
var limitCases = []behaviourCase{
	{"requests_per_minute", []step{
		{l: Limits{RequestsPerMinute: 3}},
		{l: Limits{RequestsPerMinute: 3}},
		{l: Limits{RequestsPerMinute: 3}},
		{l: Limits{RequestsPerMinute: 3}, want: LimitRequestsPerMinute, retry: 20 * time.Second},
	}},
	{"tokens_per_minute", []step{
		{l: Limits{TokensPerMinute: 100}},
		// 150 tokens leave a debt of 50: 51 tokens at 100/min is 30.6s.
		{l: Limits{TokensPerMinute: 100}, spend: 150, want: LimitTokensPerMinute, retry: 30600 * time.Millisecond},
	}},
	{"max_concurrent", []step{
		{l: Limits{MaxConcurrent: 2}, hold: true},
		{l: Limits{MaxConcurrent: 2}, hold: true},
		{l: Limits{MaxConcurrent: 2}, want: LimitMaxConcurrent, retry: time.Second},
	}},
	{"token_budget", []step{
		{l: Limits{TokenBudget: 1000, BudgetPeriod: time.Hour}, spend: 999},
		{l: Limits{TokenBudget: 1000, BudgetPeriod: time.Hour}, spend: 1, want: LimitTokenBudget, retry: time.Hour},
	}},
	{"token_budget default period", []step{
		{l: Limits{TokenBudget: 10}, spend: 10, want: LimitTokenBudget, retry: DefaultBudgetPeriod},
	}},
	{"all limits, requests first", []step{
		{l: Limits{RequestsPerMinute: 1, TokensPerMinute: 1000, MaxConcurrent: 5, TokenBudget: 1 << 20}},
		{l: Limits{RequestsPerMinute: 1, TokensPerMinute: 1000, MaxConcurrent: 5, TokenBudget: 1 << 20}, want: LimitRequestsPerMinute, retry: time.Minute},
	}},
}

// changeCases edit a tenant's limits between calls.
var changeCases = []behaviourCase{
	{"requests raised then lowered", []step{
		{l: Limits{RequestsPerMinute: 2}},
		{l: Limits{RequestsPerMinute: 2}},
		{l: Limits{RequestsPerMinute: 2}, want: LimitRequestsPerMinute, retry: 30 * time.Second},
		{l: Limits{RequestsPerMinute: 10}},
		{l: Limits{RequestsPerMinute: 2}, want: LimitRequestsPerMinute, retry: time.Minute},
	}},
	{"requests limit removed", []step{
		{l: Limits{RequestsPerMinute: 1}},
		{l: Limits{RequestsPerMinute: 1}, want: LimitRequestsPerMinute, retry: time.Minute},
		{l: Limits{}},
		{l: Limits{}},
	}},
	{"tokens raised", []step{
		{l: Limits{TokensPerMinute: 10}, spend: 20, want: LimitTokensPerMinute, retry: 66 * time.Second},
		{l: Limits{TokensPerMinute: 1000}},
		{l: Limits{TokensPerMinute: 10}, want: LimitTokensPerMinute, retry: 66 * time.Second},
	}},
	{"concurrency raised then lowered", []step{
		{l: Limits{MaxConcurrent: 1}, hold: true},
		{l: Limits{MaxConcurrent: 1}, want: LimitMaxConcurrent, retry: time.Second},
		{l: Limits{MaxConcurrent: 2}, hold: true},
		{l: Limits{MaxConcurrent: 2}, want: LimitMaxConcurrent, retry: time.Second},
		{l: Limits{MaxConcurrent: 3}},
		{l: Limits{MaxConcurrent: 1}, want: LimitMaxConcurrent, retry: time.Second},
	}},
	{"budget raised then lowered", []step{
		{l: Limits{TokenBudget: 100, BudgetPeriod: time.Hour}, spend: 100, want: LimitTokenBudget, retry: time.Hour},
		{l: Limits{TokenBudget: 200, BudgetPeriod: time.Hour}},
		{l: Limits{TokenBudget: 50, BudgetPeriod: time.Hour}, want: LimitTokenBudget, retry: time.Hour},
	}},
}

// testBehaviour runs the tests every Limiter must pass. newLimiter returns a
// limiter with no state.
func testBehaviour(t *testing.T, newLimiter func(t *testing.T) Limiter) {
	ctx := t.Context()

	t.Run("limits", func(t *testing.T) {
		for _, tc := range limitCases {
			t.Run(tc.name, func(t *testing.T) {
				lim := newLimiter(t)
				runSteps(t, lim, "tenant-a", tc.steps)
				// Tenant A is at its limit; B, with the same limits, is not.
				l := tc.steps[0].l
				release, err := lim.Admit(ctx, "tenant-b", l)
				if err != nil {
					t.Fatalf("tenant-b: Admit(%+v) = %v while tenant-a is limited; want admitted", l, err)
				}
				release()
			})
		}
	})

	t.Run("limit changes", func(t *testing.T) {
		for _, tc := range changeCases {
			t.Run(tc.name, func(t *testing.T) {
				runSteps(t, newLimiter(t), "tenant-a", tc.steps)
			})
		}
	})

	t.Run("unlimited", func(t *testing.T) {
		lim := newLimiter(t)
		for i := range 200 {
			release, err := lim.Admit(ctx, "tenant-a", Limits{})
			if err != nil {
				t.Fatalf("Admit #%d with no limits: %v", i, err)
			}
			if err := lim.Spend(ctx, "tenant-a", Limits{}, 1_000_000); err != nil {
				t.Fatalf("Spend with no limits: %v", err)
			}
			release()
		}
	})

	t.Run("release frees a slot once", func(t *testing.T) {
		lim := newLimiter(t)
		l := Limits{MaxConcurrent: 1}
		first := admit(t, lim, "tenant-a", l)
		wantLimited(t, lim, "tenant-a", l, LimitMaxConcurrent, time.Second)
		first()
		second := admit(t, lim, "tenant-a", l)
		first() // a second call must not free second's slot
		wantLimited(t, lim, "tenant-a", l, LimitMaxConcurrent, time.Second)
		second()
		admit(t, lim, "tenant-a", l)()
	})

	t.Run("invalid input fails closed", func(t *testing.T) {
		lim := newLimiter(t)
		tests := []struct {
			id tenant.Incarnation
			l  Limits
		}{
			{"", Limits{}},
			{"a:b", Limits{RequestsPerMinute: 1}},
			{"a}:{b", Limits{RequestsPerMinute: 1}},
			{"Tenant", Limits{}},
			{"tenant-a", Limits{RequestsPerMinute: -1}},
			{"tenant-a", Limits{TokenBudget: -1}},
			{"tenant-a", Limits{TokenBudget: 1, BudgetPeriod: -time.Hour}},
			{"tenant-a", Limits{TokenBudget: 1, BudgetPeriod: time.Microsecond}},
		}
		for _, tt := range tests {
			release, err := lim.Admit(ctx, tt.id, tt.l)
			if err == nil || release != nil || errors.Is(err, kind.Limited) {
				t.Errorf("Admit(%q, %+v) = (release %v, %v); want a non-Limited error and no release", tt.id, tt.l, release != nil, err)
			}
			if err := lim.Spend(ctx, tt.id, tt.l, 1); err == nil || errors.Is(err, kind.Limited) {
				t.Errorf("Spend(%q, %+v) = %v; want a non-Limited error", tt.id, tt.l, err)
			}
		}
		if err := lim.Spend(ctx, "tenant-a", Limits{TokensPerMinute: 10}, -1); err == nil {
			t.Errorf("Spend of -1 tokens = nil; want an error")
		}
	})
}

func runSteps(t *testing.T, lim Limiter, id tenant.Incarnation, steps []step) {
	t.Helper()
	ctx := t.Context()
	for i, s := range steps {
		if s.spend > 0 {
			if err := lim.Spend(ctx, id, s.l, s.spend); err != nil {
				t.Fatalf("step %d: Spend(%d): %v", i, s.spend, err)
			}
		}
		if s.want != "" {
			wantLimited(t, lim, id, s.l, s.want, s.retry)
			continue
		}
		release, err := lim.Admit(ctx, id, s.l)
		if err != nil {
			t.Fatalf("step %d: Admit(%+v) = %v; want admitted", i, s.l, err)
		}
		if s.hold {
			t.Cleanup(release)
		} else {
			release()
		}
	}
}

func admit(t *testing.T, lim Limiter, id tenant.Incarnation, l Limits) func() {
	t.Helper()
	release, err := lim.Admit(t.Context(), id, l)
	if err != nil {
		t.Fatalf("Admit(%s, %+v) = %v; want admitted", id, l, err)
	}
	return release
}

// wantLimited checks that Admit refuses with limit and a RetryAfter in
// (0, maxRetry].
func wantLimited(t *testing.T, lim Limiter, id tenant.Incarnation, l Limits, limit string, maxRetry time.Duration) *LimitedError {
	t.Helper()
	release, err := lim.Admit(t.Context(), id, l)
	if err == nil {
		release()
		t.Fatalf("Admit(%s, %+v) admitted; want refused by %s", id, l, limit)
	}
	if release != nil {
		t.Errorf("Admit(%s, %+v) returned a release with error %v", id, l, err)
	}
	if !errors.Is(err, kind.Limited) {
		t.Errorf("errors.Is(%v, kind.Limited) = false", err)
	}
	var le *LimitedError
	if !errors.As(err, &le) {
		t.Fatalf("Admit(%s, %+v) = %v; want a *LimitedError", id, l, err)
	}
	if le.Limit != limit {
		t.Errorf("LimitedError.Limit = %q; want %q", le.Limit, limit)
	}
	if le.RetryAfter <= 0 || le.RetryAfter > maxRetry {
		t.Errorf("%s: RetryAfter = %v; want in (0, %v]", le.Limit, le.RetryAfter, maxRetry)
	}
	return le
}

func TestLimitedError(t *testing.T) {
	var err error = fmt.Errorf("agent: %w", &LimitedError{Limit: LimitRequestsPerMinute, RetryAfter: 1500 * time.Millisecond})
	if !errors.Is(err, kind.Limited) {
		t.Errorf("errors.Is(%v, kind.Limited) = false; want true", err)
	}
	if errors.Is(err, kind.Denied) {
		t.Errorf("errors.Is(%v, kind.Denied) = true; want false", err)
	}
	if got, want := err.Error(), "agent: rate limited: requests_per_minute exceeded, retry after 1.5s"; got != want {
		t.Errorf("Error() = %q; want %q", got, want)
	}
}

func TestCarry(t *testing.T) {
	tests := []struct {
		tokens     float64
		oldN, newN int
		want       float64
	}{
		{tokens: 0, oldN: 5, newN: 100, want: 95},      // raised: the 5 used carry over
		{tokens: 97, oldN: 100, newN: 5, want: 2},      // lowered: 3 used of 5
		{tokens: 50, oldN: 100, newN: 5, want: 0},      // lowered below use: exhausted, no new debt
		{tokens: -10, oldN: 10, newN: 1000, want: 980}, // raised with debt
		{tokens: -10, oldN: 100, newN: 10, want: -10},  // lowered with debt: debt kept
		{tokens: 10, oldN: 10, newN: 10, want: 10},
	}
	for _, tt := range tests {
		if got := carry(tt.tokens, tt.oldN, tt.newN); got != tt.want {
			t.Errorf("carry(%v, %d, %d) = %v; want %v", tt.tokens, tt.oldN, tt.newN, got, tt.want)
		}
	}
}

func TestCheckSpend(t *testing.T) {
	now := time.Date(2026, 12, 4, 19, 0, 0, 0, time.UTC)
	l := Limits{SpendPerDayMicroUSD: 5_000_000, EndUserSpendPerDayMicroUSD: 1_500_000}
	for _, tt := range []struct {
		name             string
		l                Limits
		spent, userSpent int64
		user             tenant.UserID
		want             string // the limit reached; "" admits
		wantText         string
	}{
		{name: "no budgets", l: Limits{}, spent: 1 << 40, userSpent: 1 << 40, user: "u1"},
		{name: "under both", l: l, spent: 4_999_999, userSpent: 1_499_999, user: "u1"},
		{name: "tenant spent", l: l, spent: 5_000_000, userSpent: 0, user: "u2", want: LimitSpendPerDay,
			wantText: "the tenant's daily spend budget (spend_per_day_usd = $5.00) is spent; it resets at 2026-12-05T00:00:00Z"},
		{name: "end user spent", l: l, spent: 2_000_000, userSpent: 1_500_000, user: "u1", want: LimitEndUserSpendPerDay,
			wantText: "this end user's daily spend budget (end_user_spend_per_day_usd = $1.50) is spent"},
		{name: "no end user: tenant budget only", l: l, spent: 2_000_000, userSpent: 1_500_000, user: ""},
		{name: "fractions of a cent", l: Limits{SpendPerDayMicroUSD: 1_234}, spent: 1_234, want: LimitSpendPerDay, wantText: "$0.001234"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckSpend(tt.l, tt.spent, tt.userSpent, tt.user, now)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("CheckSpend = %v, want nil", err)
				}
				return
			}
			var le *LimitedError
			if !errors.As(err, &le) || le.Limit != tt.want || !errors.Is(err, kind.Limited) {
				t.Fatalf("CheckSpend = %v, want a LimitedError of %s", err, tt.want)
			}
			if le.RetryAfter != 5*time.Hour {
				t.Errorf("RetryAfter = %v, want 5h (to midnight UTC)", le.RetryAfter)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("message %q does not contain %q", err.Error(), tt.wantText)
			}
		})
	}
}
