package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/agent"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/quota"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// UsageLog is the usage and spend records (*control.Plane).
type UsageLog interface {
	// Usage reads one tenant's rows; AllUsage every tenant's, for the
	// operator.
	Usage(ctx context.Context, id tenant.ID, from, to time.Time) ([]control.UsageRow, error)
	AllUsage(ctx context.Context, from, to time.Time) ([]control.UsageRow, error)
}

// UsageRow is one row of usage: a tenant's end user's use of one model on
// one UTC day (YYYY-MM-DD).
type UsageRow struct {
	Day, Tenant, EndUser, Model                            string
	Requests, InputTokens, CachedInputTokens, OutputTokens int64
	SpendMicroUSD                                          int64
}

// consoleUsage reads the usage of tenant from day from to day to, both
// included; tenant "" means every tenant (operator view). The HTTP
// handlers and the console read usage through it alone.
func consoleUsage(ctx context.Context, d Deps, tenant string, from, to time.Time) ([]UsageRow, error) {
	if d.Usage == nil {
		return nil, fmt.Errorf("%w: usage is not recorded by this server", kind.NotFound)
	}
	var (
		rows []control.UsageRow
		err  error
	)
	if tenant == "" {
		rows, err = d.Usage.AllUsage(ctx, from, to)
	} else {
		rows, err = d.Usage.Usage(ctx, tenantID(tenant), from, to)
	}
	if err != nil {
		return nil, err
	}
	out := make([]UsageRow, len(rows))
	for i, r := range rows {
		out[i] = UsageRow{Day: r.Day, Tenant: string(r.Tenant), EndUser: string(r.EndUser), Model: r.Model,
			Requests: r.Requests, InputTokens: r.InputTokens, CachedInputTokens: r.CachedInputTokens,
			OutputTokens: r.OutputTokens, SpendMicroUSD: r.SpendMicroUSD}
	}
	return out, nil
}

// tenantID converts where a parameter named tenant hides the package.
func tenantID(s string) tenant.ID { return tenant.ID(s) }

// Usage queries: the last DefaultUsageDays days unless from and to say
// otherwise, at most control.MaxUsageDays.
const DefaultUsageDays = 30

// usageRange reads ?from= and ?to= (YYYY-MM-DD, UTC); any other parameter
// is refused, so nothing in the query can widen what is read.
func usageRange(r *http.Request, now time.Time) (from, to time.Time, err error) {
	q := r.URL.Query()
	for name := range q {
		if name != "from" && name != "to" {
			return from, to, fmt.Errorf("%w: unknown query parameter %q (usage takes from and to)", kind.Invalid, name)
		}
	}
	day := func(name string, def time.Time) (time.Time, error) {
		vs := q[name]
		if len(vs) == 0 {
			return def, nil
		}
		if len(vs) > 1 {
			return time.Time{}, fmt.Errorf("%w: %s given more than once", kind.Invalid, name)
		}
		t, err := time.Parse(control.DayFormat, vs[0])
		if err != nil {
			return time.Time{}, fmt.Errorf("%w: %s must be a date as YYYY-MM-DD", kind.Invalid, name)
		}
		return t, nil
	}
	today := now.UTC().Truncate(24 * time.Hour)
	if to, err = day("to", today); err != nil {
		return from, to, err
	}
	if from, err = day("from", to.AddDate(0, 0, 1-DefaultUsageDays)); err != nil {
		return from, to, err
	}
	switch {
	case to.Before(from):
		return from, to, fmt.Errorf("%w: to is before from", kind.Invalid)
	case to.Sub(from) >= control.MaxUsageDays*24*time.Hour:
		return from, to, fmt.Errorf("%w: from and to span more than %d days", kind.Invalid, control.MaxUsageDays)
	}
	return from, to, nil
}

// usageJSON is one row as the API shows it.
type usageJSON struct {
	Day               string  `json:"day"`
	Tenant            string  `json:"tenant"`
	EndUser           string  `json:"end_user"`
	Model             string  `json:"model"`
	Requests          int64   `json:"requests"`
	InputTokens       int64   `json:"input_tokens"`
	CachedInputTokens int64   `json:"cached_input_tokens"`
	OutputTokens      int64   `json:"output_tokens"`
	SpendUSD          float64 `json:"spend_usd"`
	SpendMicroUSD     int64   `json:"spend_micro_usd"`
}

// writeUsage answers with tenant's usage ("" for every tenant's), only
// endUser's rows when only is set.
func writeUsage(d Deps, w http.ResponseWriter, r *http.Request, tenant string, endUser tenant.UserID, only bool) {
	from, to, err := usageRange(r, time.Now())
	if err != nil {
		writeError(d.Logger, w, r, err)
		return
	}
	rows, err := consoleUsage(r.Context(), d, tenant, from, to)
	if err != nil {
		writeError(d.Logger, w, r, err)
		return
	}
	if only {
		rows = slices.DeleteFunc(rows, func(u UsageRow) bool { return u.EndUser != string(endUser) })
	}
	data := make([]usageJSON, 0, len(rows))
	for _, u := range rows {
		data = append(data, usageJSON{Day: u.Day, Tenant: u.Tenant, EndUser: u.EndUser, Model: u.Model,
			Requests: u.Requests, InputTokens: u.InputTokens, CachedInputTokens: u.CachedInputTokens,
			OutputTokens: u.OutputTokens, SpendUSD: float64(u.SpendMicroUSD) / 1e6, SpendMicroUSD: u.SpendMicroUSD})
	}
	encode(w, http.StatusOK, map[string]any{"object": "list", "from": from.Format(control.DayFormat),
		"to": to.Format(control.DayFormat), "data": data})
}

// handleUsage serves GET /v1/usage: the caller's tenant's usage, and with
// an end-user token only that end user's.
func handleUsage(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, err := tenantScope(r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		writeUsage(d, w, r, string(scope.Tenant()), scope.User(), scope.FromToken())
	})
}

// handleAdminTenantUsage serves GET /admin/v1/tenants/{tenant}/usage.
func handleAdminTenantUsage(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, err := adminTenantScope(d, r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		writeUsage(d, w, r, string(scope.Tenant()), "", false)
	})
}

// handleAdminUsage serves GET /admin/v1/usage: every tenant's.
func handleAdminUsage(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeUsage(d, w, r, "", "", false)
	})
}

// UsageRecorder is the control plane's usage records as the meter keeps
// them (*control.Plane).
type UsageRecorder interface {
	RecordUsage(inc tenant.Incarnation, endUser tenant.UserID, model string, u control.Usage)
	SpentToday(ctx context.Context, inc tenant.Incarnation, endUser tenant.UserID) (tenantMicroUSD, endUserMicroUSD int64, err error)
}

// NewMeter returns the agent's meter: every model call's usage recorded in
// rec, priced from prices ("provider/model" to price; a model not listed
// costs nothing), and turns held to the money budgets.
func NewMeter(rec UsageRecorder, prices map[string]llm.Price) agent.Meter {
	return meter{rec: rec, prices: prices, now: time.Now}
}

type meter struct {
	rec    UsageRecorder
	prices map[string]llm.Price
	now    func() time.Time
}

func (m meter) Record(scope auth.Scope, model string, u llm.Usage) {
	m.rec.RecordUsage(scope.Incarnation(), scope.User(), model, control.Usage{Requests: 1,
		InputTokens: int64(u.PromptTokens), CachedInputTokens: int64(u.PromptTokensDetails.CachedTokens),
		OutputTokens: int64(u.CompletionTokens), SpendMicroUSD: m.prices[model].Cost(u)})
}

// CheckSpend counts what this replica spent and has not written yet, and
// what the database held at most control.UsageInterval ago: replicas
// together may overshoot a budget by what the others spent since.
func (m meter) CheckSpend(ctx context.Context, scope auth.Scope, l quota.Limits) error {
	if !scope.Valid() {
		return errors.New("check spend: no scope")
	}
	spent, userSpent, err := m.rec.SpentToday(ctx, scope.Incarnation(), scope.User())
	if err != nil {
		return err
	}
	return quota.CheckSpend(l, spent, userSpent, scope.User(), m.now())
}
