// Package quota admits or refuses each tenant's requests against that
// tenant's limits, so one tenant's flood cannot starve the others (DESIGN
// invariant 11).
//
// Two backends implement [Limiter]: [Memory] for a single replica and
// [Redis] for several replicas sharing one set of counters. Both follow the
// same rules:
//
//   - Rates are token buckets whose burst is one minute's allowance:
//     RequestsPerMinute = 60 admits 60 requests at once, then one a second.
//   - Tokens are counted after the fact ([Limiter.Spend]), so a large answer
//     may drive the token bucket into debt; [Limiter.Admit] refuses new
//     requests until at least one token is available again.
//   - TokenBudget is counted in fixed windows of BudgetPeriod (30 days when
//     zero) aligned to the Unix epoch, not to calendar months. Changing
//     BudgetPeriod starts a fresh window.
//   - Limits are passed on every call, so an edited limit applies to the next
//     call. When a rate changes, the part of the old allowance already used
//     carries over (capped at the new allowance), and existing debt is kept:
//     raising a limit unblocks a throttled tenant at once, lowering it bites
//     at once.
//   - Fail closed: an input error denies the request with an error that is
//     not a [LimitedError]. A Redis that is slow or down is not an error:
//     [Redis] falls back to limits enforced by this replica alone.
package quota

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// DefaultBudgetPeriod is the budget window used when Limits.BudgetPeriod is
// zero.
const DefaultBudgetPeriod = 30 * 24 * time.Hour

// Names of the limits, as reported in LimitedError.Limit.
const (
	LimitRequestsPerMinute = "requests_per_minute"
	LimitTokensPerMinute   = "tokens_per_minute"
	LimitMaxConcurrent     = "max_concurrent"
	LimitTokenBudget       = "token_budget"
	// The money budgets, per UTC day (CheckSpend).
	LimitSpendPerDay        = "spend_per_day_usd"
	LimitEndUserSpendPerDay = "end_user_spend_per_day_usd"
)

// concurrencyRetry is the RetryAfter reported when MaxConcurrent is reached:
// nobody knows when a running request will end.
const concurrencyRetry = time.Second

// Limits bounds one tenant's use of shared capacity. Zero means unlimited.
type Limits struct {
	RequestsPerMinute int
	TokensPerMinute   int
	MaxConcurrent     int
	// TokenBudget is the number of tokens allowed per BudgetPeriod.
	TokenBudget int64
	// BudgetPeriod is the length of a budget window, at least a millisecond;
	// zero means DefaultBudgetPeriod.
	BudgetPeriod time.Duration
	// SpendPerDayMicroUSD caps what the tenant spends per UTC day, and
	// EndUserSpendPerDayMicroUSD what each of its end users does, in
	// micro-dollars (CheckSpend).
	SpendPerDayMicroUSD, EndUserSpendPerDayMicroUSD int64
}

// HasSpendBudget reports whether l holds a money budget.
func (l Limits) HasSpendBudget() bool {
	return l.SpendPerDayMicroUSD > 0 || l.EndUserSpendPerDayMicroUSD > 0
}

// periodMillis returns the budget window in milliseconds.
func (l Limits) periodMillis() int64 {
	if l.BudgetPeriod == 0 {
		return DefaultBudgetPeriod.Milliseconds()
	}
	return l.BudgetPeriod.Milliseconds()
}

// check rejects limits no valid configuration produces. They come from the
// operator, not the client, so the error has no kind: it is internal.
func (l Limits) check() error {
	if l.RequestsPerMinute < 0 || l.TokensPerMinute < 0 || l.MaxConcurrent < 0 || l.TokenBudget < 0 {
		return errors.New("quota: limits must not be negative")
	}
	if l.BudgetPeriod < 0 || (l.BudgetPeriod > 0 && l.BudgetPeriod < time.Millisecond) {
		return errors.New("quota: budget period must be zero or at least 1ms")
	}
	return nil
}

// checkTenant refuses a malformed incarnation: an empty or malformed one must
// never share, or escape, a tenant's counters.
func checkTenant(inc tenant.Incarnation) error {
	if err := tenant.CheckIncarnation(inc); err != nil {
		return fmt.Errorf("quota: %w", err)
	}
	return nil
}

// LimitedError reports that a request was refused because a limit was
// reached. errors.Is(err, kind.Limited) holds for it.
type LimitedError struct {
	// Limit names the limit reached: one of the Limit* constants.
	Limit string
	// RetryAfter is how long until a request would be admitted again,
	// assuming nothing else changes; always positive.
	RetryAfter time.Duration
	// Message, if set, is the error's text instead of the generic one.
	Message string
}

func (e *LimitedError) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return fmt.Sprintf("%v: %s exceeded, retry after %v", kind.Limited, e.Limit, e.RetryAfter.Round(time.Millisecond))
}

// Is reports whether target is kind.Limited.
func (e *LimitedError) Is(target error) bool { return target == kind.Limited }

// limited returns a LimitedError with a RetryAfter of at least a millisecond.
func limited(limit string, retry time.Duration) *LimitedError {
	return &LimitedError{Limit: limit, RetryAfter: max(retry, time.Millisecond)}
}

// CheckSpend refuses a request when a money budget of l is spent: the
// tenant's spent micro-dollars today (UTC) of SpendPerDayMicroUSD, or
// endUser's userSpent of EndUserSpendPerDayMicroUSD. A request naming no
// end user is held to the tenant's budget only. The refusal says which
// budget and when it resets (the next UTC midnight after now).
func CheckSpend(l Limits, spent, userSpent int64, endUser tenant.UserID, now time.Time) error {
	resets := now.UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
	refuse := func(limit, whose string, budget int64) error {
		return &LimitedError{Limit: limit, RetryAfter: max(resets.Sub(now), time.Millisecond),
			Message: fmt.Sprintf("%v: %s daily spend budget (%s = %s) is spent; it resets at %s", kind.Limited, whose, limit,
				formatUSD(budget), resets.Format(time.RFC3339))}
	}
	if l.SpendPerDayMicroUSD > 0 && spent >= l.SpendPerDayMicroUSD {
		return refuse(LimitSpendPerDay, "the tenant's", l.SpendPerDayMicroUSD)
	}
	if endUser != "" && l.EndUserSpendPerDayMicroUSD > 0 && userSpent >= l.EndUserSpendPerDayMicroUSD {
		return refuse(LimitEndUserSpendPerDay, "this end user's", l.EndUserSpendPerDayMicroUSD)
	}
	return nil
}

// formatUSD writes micro-dollars (not negative) as dollars, without
// zeros past the cents.
func formatUSD(micro int64) string {
	return "$" + trimCents(fmt.Sprintf("%d.%06d", micro/1_000_000, micro%1_000_000))
}

// trimCents removes zeros after the cents: "1.500000" is "1.50".
func trimCents(s string) string {
	dot := strings.IndexByte(s, '.')
	for len(s) > dot+3 && s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	return s
}

// Limiter is implemented by Memory and Redis.
type Limiter interface {
	// Admit reserves one request for incarnation inc of a tenant (a
	// Scope's Incarnation, so a tenant deleted and created again starts
	// with fresh counters) under limits l: it checks
	// the request rate and concurrency, and that neither the token rate nor
	// the budget is already exhausted. On success the caller must call
	// release once when the request ends; further calls do nothing. A
	// refusal is a *LimitedError; any other error also denies.
	Admit(ctx context.Context, inc tenant.Incarnation, l Limits) (release func(), err error)
	// Spend records the tokens a request used against the token rate and
	// the budget.
	Spend(ctx context.Context, inc tenant.Incarnation, l Limits, tokens int) error
	// Forget drops every counter of incarnation inc, when its tenant is
	// deleted.
	Forget(ctx context.Context, inc tenant.Incarnation) error
}

var (
	_ Limiter = (*Memory)(nil)
	_ Limiter = (*Redis)(nil)
)

// carry returns the tokens a bucket holds after its per-minute allowance
// changes from oldN to newN while holding tokens: what was used carries over,
// capped at the new allowance, and debt is never forgiven.
func carry(tokens float64, oldN, newN int) float64 {
	t := min(tokens+float64(newN-oldN), float64(newN))
	return max(t, min(tokens, 0))
}
