package server

import (
	"cmp"
	"slices"
	"strconv"
)

// usageView is the usage page: per-day charts, drawn on the server as SVG
// (no script draws them), and the rows behind them per tenant and per end
// user.
type usageView struct {
	Tenant, From, To string
	Rows             []UsageRow
	Charts           []usageChart
	Tables           []usageTable
}

type usageChart struct {
	Title               string
	Width, Height, Base int
	MaxLabel            string
	Bars                []usageBar
}

// usageBar is one day's bar; its coordinates are in the chart's viewBox.
type usageBar struct {
	X, Y, W, H, LabelX, LabelY int
	Label, Value, Short        string
}

type usageTable struct {
	Title, Who string
	Rows       []usageTableRow
}

type usageTableRow struct {
	Day, Who string
	// Anonymous marks the requests that named no end user: shown by the
	// page's markup, not by a label an end user's id could also spell.
	Anonymous                                              bool
	Requests, InputTokens, CachedInputTokens, OutputTokens int64
	Spend                                                  string
}

// Chart geometry, in viewBox units.
const (
	chartLeft   = 64
	chartSlot   = 24
	chartHeight = 170
	chartBase   = 150
	chartTop    = 10
)

// usageModel turns usage rows into the page's charts and tables: one bar
// per day for requests, tokens and spend, and the rows summed per day and
// tenant (the operator's view of every tenant) and per day and end user. It
// is a pure function, so its tests need no recorded usage.
func usageModel(rows []UsageRow, allTenants bool) usageView {
	v := usageView{Rows: rows}
	if len(rows) == 0 {
		return v
	}
	type sum struct{ requests, input, cached, output, spend int64 }
	add := func(s *sum, r UsageRow) {
		s.requests += r.Requests
		s.input += r.InputTokens
		s.cached += r.CachedInputTokens
		s.output += r.OutputTokens
		s.spend += r.SpendMicroUSD
	}
	perDay := map[string]*sum{}
	type dayWho struct {
		day, who  string
		anonymous bool
	}
	perTenant, perUser := map[dayWho]*sum{}, map[dayWho]*sum{}
	for _, r := range rows {
		for _, e := range []struct {
			m   map[dayWho]*sum
			key dayWho
		}{{perTenant, dayWho{r.Day, r.Tenant, false}}, {perUser, dayWho{r.Day, userLabel(r, allTenants), r.EndUser == ""}}} {
			if e.m[e.key] == nil {
				e.m[e.key] = &sum{}
			}
			add(e.m[e.key], r)
		}
		if perDay[r.Day] == nil {
			perDay[r.Day] = &sum{}
		}
		add(perDay[r.Day], r)
	}
	days := make([]string, 0, len(perDay))
	for d := range perDay {
		days = append(days, d)
	}
	slices.Sort(days)
	chart := func(title string, value func(*sum) int64, format func(int64) string) usageChart {
		c := usageChart{Title: title, Width: max(chartLeft+len(days)*chartSlot+8, 320), Height: chartHeight, Base: chartBase}
		var top int64
		for _, d := range days {
			top = max(top, value(perDay[d]))
		}
		c.MaxLabel = format(top)
		for i, d := range days {
			val := value(perDay[d])
			h := 0
			if top > 0 {
				h = int(val * (chartBase - chartTop) / top)
			}
			x := chartLeft + i*chartSlot + 4
			c.Bars = append(c.Bars, usageBar{X: x, Y: chartBase - h, W: chartSlot - 8, H: h,
				LabelX: x + (chartSlot-8)/2, LabelY: chartBase + 14, Label: d, Value: format(val), Short: shortDay(d)})
		}
		return c
	}
	count := func(n int64) string { return strconv.FormatInt(n, 10) }
	v.Charts = []usageChart{
		chart("Requests", func(s *sum) int64 { return s.requests }, count),
		chart("Tokens (input + output)", func(s *sum) int64 { return s.input + s.output }, count),
		chart("Spend (USD)", func(s *sum) int64 { return s.spend }, usd),
	}
	table := func(title, who string, m map[dayWho]*sum) usageTable {
		t := usageTable{Title: title, Who: who}
		for k, s := range m {
			t.Rows = append(t.Rows, usageTableRow{Day: k.day, Who: k.who, Anonymous: k.anonymous, Requests: s.requests, InputTokens: s.input,
				CachedInputTokens: s.cached, OutputTokens: s.output, Spend: usd(s.spend)})
		}
		slices.SortFunc(t.Rows, func(a, b usageTableRow) int {
			return cmp.Or(cmp.Compare(b.Day, a.Day), cmp.Compare(a.Who, b.Who), compareBool(b.Anonymous, a.Anonymous))
		})
		return t
	}
	if allTenants {
		v.Tables = append(v.Tables, table("Per tenant", "Tenant", perTenant))
	}
	v.Tables = append(v.Tables, table("Per end user", "End user", perUser))
	return v
}

// userLabel names a row's end user, with its tenant in the operator's view
// of every tenant (two tenants' users may share an id; a tenant id holds no
// "/"). Requests that named no end user have an empty name here: the page
// marks them, so that no end user's id can read like them.
func userLabel(r UsageRow, allTenants bool) string {
	if allTenants {
		return r.Tenant + "/" + r.EndUser
	}
	return r.EndUser
}

// usd formats micro-dollars as dollars, with as many digits as they need.
func usd(micro int64) string { return strconv.FormatFloat(float64(micro)/1e6, 'f', -1, 64) }

// shortDay labels a bar with its day of the month ("2026-12-04" → "04").
func shortDay(day string) string {
	if len(day) >= 10 {
		return day[8:10]
	}
	return day
}

// compareBool orders false before true.
func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
