package server

import (
	"context"
	"time"
)

// TEMPORARY: the spend-recording branch provides the real consoleUsage and
// UsageRow; the integrator deletes this file at merge.

// UsageRow is one day's usage of one end user of one tenant with one model.
type UsageRow struct {
	Day, Tenant, EndUser, Model                            string
	Requests, InputTokens, CachedInputTokens, OutputTokens int64
	SpendMicroUSD                                          int64
}

// consoleUsage returns the usage recorded from from to to; tenant "" means
// every tenant (operator view). The stub has none recorded.
func consoleUsage(ctx context.Context, d Deps, tenant string, from, to time.Time) ([]UsageRow, error) {
	return nil, nil
}
