package server

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auditchain"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// consoleFlash are the notes a redirect after a change may show, by code:
// a page never echoes text from the query.
var consoleFlash = map[string]string{
	"created":   "Tenant created.",
	"suspended": "Tenant suspended: its keys and sessions stopped working.",
	"active":    "Tenant resumed.",
	"deleted":   "Tenant deleted: its data key was destroyed.",
	"policy":    "Policy saved.",
	"revoked":   "Key revoked.",
}

func flash(r *http.Request) string { return consoleFlash[r.URL.Query().Get("done")] }

func redirectDone(w http.ResponseWriter, r *http.Request, path, done string) {
	http.Redirect(w, r, path+"?done="+url.QueryEscape(done), http.StatusSeeOther)
}

func tenantPath(id tenant.ID, rest string) string {
	return "/console/tenants/" + url.PathEscape(string(id)) + rest
}

// tenantPage serves a page about the tenant the path names, with the Scope
// consoleTenant grants; anything else is rendered as its error.
func tenantPage(d Deps, serve func(w http.ResponseWriter, r *http.Request, scope auth.Scope, t control.Tenant)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, t, err := consoleTenant(d, r)
		if err != nil {
			consoleError(d, w, r, err)
			return
		}
		serve(w, r, scope, t)
	})
}

// --- tenants (operator) ---

func renderTenants(d Deps, w http.ResponseWriter, r *http.Request, status int, errText string) {
	all := d.Tenants.Tenants()
	slices.SortFunc(all, func(a, b control.Tenant) int { return cmp.Compare(a.ID, b.ID) })
	render(d, w, r, status, "tenants", consoleView{Title: "Tenants", Flash: flash(r), Error: errText,
		Data: map[string]any{"Tenants": all}})
}

func handleConsoleTenants(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		renderTenants(d, w, r, http.StatusOK, "")
	})
}

// formField returns a form value as a body field: absent when empty.
func formField(r *http.Request, name string) *string {
	v := strings.TrimSpace(r.PostFormValue(name))
	if v == "" {
		return nil
	}
	return &v
}

func handleConsoleCreateTenant(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := tenantBody{ID: formField(r, "id"), Name: formField(r, "name"),
			SystemPrompt: formField(r, "system_prompt"), Model: formField(r, "model")}
		t, err := createTenant(r.Context(), d, body)
		if err != nil {
			status, _, code, message := errorStatus(err)
			logFailure(d.Logger, withRequestID(w, r), "console request failed", status, code, err)
			renderTenants(d, w, r, status, message)
			return
		}
		redirectDone(w, r, tenantPath(t.ID, ""), "created")
	})
}

func handleConsoleTenantStatus(d Deps) http.Handler {
	return tenantPage(d, func(w http.ResponseWriter, r *http.Request, scope auth.Scope, _ control.Tenant) {
		status := r.PostFormValue("status")
		t, err := updateTenant(d, r, scope, tenantBody{Status: &status})
		if err != nil {
			consoleError(d, w, r, err)
			return
		}
		redirectDone(w, r, "/console/tenants", string(t.Status))
	})
}

func handleConsoleDeleteTenant(d Deps) http.Handler {
	return tenantPage(d, func(w http.ResponseWriter, r *http.Request, _ auth.Scope, t control.Tenant) {
		if r.PostFormValue("confirm") != string(t.ID) {
			renderTenants(d, w, r, http.StatusBadRequest, fmt.Sprintf("Not deleted: type the tenant's id, %s, to confirm.", t.ID))
			return
		}
		if err := deleteTenant(r.Context(), d, t.ID); err != nil {
			consoleError(d, w, r, err)
			return
		}
		redirectDone(w, r, "/console/tenants", "deleted")
	})
}

// --- one tenant ---

type consoleProfile struct {
	Name    string
	Profile control.Profile
}

type consoleLine struct {
	N   int
	Bad bool
}

// policyErrorLine finds the line a policy error names ("line N, column M").
var policyErrorLine = regexp.MustCompile(`line (\d+), column \d+`)

// policyLines numbers source's lines for the editor, marking the one err
// names.
func policyLines(source string, err error) []consoleLine {
	bad := 0
	if err != nil {
		if m := policyErrorLine.FindStringSubmatch(err.Error()); m != nil {
			bad, _ = strconv.Atoi(m[1])
		}
	}
	n := max(strings.Count(source, "\n")+1, 6, bad)
	out := make([]consoleLine, n)
	for i := range out {
		out[i] = consoleLine{N: i + 1, Bad: i+1 == bad}
	}
	return out
}

func renderTenant(d Deps, w http.ResponseWriter, r *http.Request, status int, policy string, policyErr error) {
	scope, t, err := consoleTenant(d, r)
	if err != nil {
		consoleError(d, w, r, err)
		return
	}
	var profiles []consoleProfile
	var toolNames []string
	for name, p := range t.Profiles {
		profiles = append(profiles, consoleProfile{Name: name, Profile: p})
		toolNames = append(toolNames, p.Tools...)
	}
	rank := func(p consoleProfile) int { // the default profile first
		if p.Name == control.DefaultProfile {
			return 0
		}
		return 1
	}
	slices.SortFunc(profiles, func(a, b consoleProfile) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(a.Name, b.Name))
	})
	slices.Sort(toolNames)
	type toolRow struct{ Name, Scope, Description string }
	var tools []toolRow
	for _, name := range slices.Compact(toolNames) {
		if tool, ok := d.Catalog.Tool(name); ok {
			tools = append(tools, toolRow{Name: name, Scope: string(tool.Scope), Description: tool.Description})
		}
	}
	secrets, err := d.Data.Secrets(r.Context(), scope)
	if err != nil {
		consoleError(d, w, r, fmt.Errorf("list secret names: %w", err))
		return
	}
	var names []tenant.SecretName
	for _, s := range secrets {
		names = append(names, s.Name)
	}
	if policyErr == nil {
		policy = t.Policy
	}
	lines := policyLines(policy, policyErr)
	var policyErrText string
	if policyErr != nil {
		_, _, _, policyErrText = errorStatus(policyErr)
	}
	render(d, w, r, status, "tenant", consoleView{Title: string(t.ID), Tenant: t, Tab: "tenant", Flash: flash(r),
		Data: map[string]any{"Tenant": t, "Profiles": profiles, "Tools": tools, "Secrets": names,
			"Policy": policy, "PolicyError": policyErrText, "PolicyLines": lines, "PolicyRows": len(lines)}})
}

func handleConsoleTenant(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		renderTenant(d, w, r, http.StatusOK, "", nil)
	})
}

func handleConsolePolicy(d Deps) http.Handler {
	return tenantPage(d, func(w http.ResponseWriter, r *http.Request, scope auth.Scope, t control.Tenant) {
		// Browsers send CRLF from a textarea; Cedar positions count lines
		// either way, the stored text keeps the API's LF.
		source := strings.ReplaceAll(r.PostFormValue("policy"), "\r\n", "\n")
		if err := setPolicy(d, r, scope, source); err != nil {
			status, _, _, _ := errorStatus(err)
			if status == http.StatusInternalServerError {
				consoleError(d, w, r, err)
				return
			}
			renderTenant(d, w, r, status, source, err)
			return
		}
		redirectDone(w, r, tenantPath(t.ID, ""), "policy")
	})
}

// --- keys ---

func renderKeys(d Deps, w http.ResponseWriter, r *http.Request, status int, t control.Tenant, created keyView, errText string) {
	keys, err := d.Tenants.Keys(r.Context(), t.ID)
	if err != nil {
		consoleError(d, w, r, err)
		return
	}
	render(d, w, r, status, "keys", consoleView{Title: "Keys · " + string(t.ID), Tenant: t, Tab: "keys", Flash: flash(r), Error: errText,
		Data: map[string]any{"Keys": keys, "NewKey": created}})
}

func handleConsoleKeys(d Deps) http.Handler {
	return tenantPage(d, func(w http.ResponseWriter, r *http.Request, _ auth.Scope, t control.Tenant) {
		renderKeys(d, w, r, http.StatusOK, t, keyView{}, "")
	})
}

func handleConsoleCreateKey(d Deps) http.Handler {
	return tenantPage(d, func(w http.ResponseWriter, r *http.Request, scope auth.Scope, t control.Tenant) {
		opts := control.KeyOptions{Name: strings.TrimSpace(r.PostFormValue("name"))}
		if v := strings.TrimSpace(r.PostFormValue("expires_days")); v != "" {
			days, err := strconv.Atoi(v)
			if err != nil || days < 1 || days > 3650 {
				renderKeys(d, w, r, http.StatusBadRequest, t, keyView{}, "Expiry must be 1-3650 days.")
				return
			}
			opts.ExpiresAt = time.Now().UTC().Add(time.Duration(days) * 24 * time.Hour).Truncate(time.Second)
		}
		v, err := createKey(d, r, scope, opts)
		if err != nil {
			consoleError(d, w, r, err)
			return
		}
		// The key is in this response only: it is not stored anywhere it
		// could be shown again.
		renderKeys(d, w, r, http.StatusCreated, t, v, "")
	})
}

func handleConsoleRevokeKey(d Deps) http.Handler {
	return tenantPage(d, func(w http.ResponseWriter, r *http.Request, scope auth.Scope, t control.Tenant) {
		if err := revokeKey(d, r, scope, tenant.KeyID(r.PathValue("id"))); err != nil {
			consoleError(d, w, r, err)
			return
		}
		redirectDone(w, r, tenantPath(t.ID, "/keys"), "revoked")
	})
}

// --- usage ---

// usageDays is how far back the usage page looks.
const usageDays = 30

func renderUsage(d Deps, w http.ResponseWriter, r *http.Request, t control.Tenant) {
	to := time.Now().UTC()
	from := to.AddDate(0, 0, -(usageDays - 1)).Truncate(24 * time.Hour)
	rows, err := consoleUsage(r.Context(), d, string(t.ID), from, to)
	if err != nil {
		consoleError(d, w, r, fmt.Errorf("read usage: %w", err))
		return
	}
	m := usageModel(rows, t.ID == "")
	m.Tenant, m.From, m.To = string(t.ID), from.Format(time.DateOnly), to.Format(time.DateOnly)
	title := "Usage"
	if t.ID != "" {
		title += " · " + string(t.ID)
	}
	render(d, w, r, http.StatusOK, "usage", consoleView{Title: title, Tenant: t, Tab: "usage", Data: m})
}

func handleConsoleUsage(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		renderUsage(d, w, r, control.Tenant{})
	})
}

func handleConsoleTenantUsage(d Deps) http.Handler {
	return tenantPage(d, func(w http.ResponseWriter, r *http.Request, _ auth.Scope, t control.Tenant) {
		renderUsage(d, w, r, t)
	})
}

// --- audit and guard ---

// consoleAuditShown bounds the records one page shows, newest first.
const consoleAuditShown = 500

type auditVerify struct {
	OK    bool
	Count int
	Head  string
	Error string
}

// wholeAudit reads scope's whole log, page by page.
func wholeAudit(r *http.Request, d Deps, scope auth.Scope) ([]store.AuditRecord, error) {
	var all []store.AuditRecord
	var after int64
	for {
		page, err := auditRecords(r.Context(), d, scope, after, maxAuditPage)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) < maxAuditPage {
			return all, nil
		}
		after = page[len(page)-1].Seq
	}
}

// guardEvent reports whether rec is a guard block or a denied tool call.
func guardEvent(rec store.AuditRecord) bool {
	if strings.HasPrefix(rec.Type, "guard.") {
		return true
	}
	if rec.Type != "tool.call" {
		return false
	}
	var data struct {
		Decision string `json:"decision"`
	}
	return json.Unmarshal(rec.Data, &data) == nil && data.Decision == "deny"
}

func renderAudit(d Deps, w http.ResponseWriter, r *http.Request, guardOnly bool) {
	scope, t, err := consoleTenant(d, r)
	if err != nil {
		consoleError(d, w, r, err)
		return
	}
	all, err := wholeAudit(r, d, scope)
	if err != nil {
		consoleError(d, w, r, err)
		return
	}
	q := r.URL.Query()
	heading := "Audit log"
	if guardOnly {
		heading = "Guard blocks and denied tool calls"
	}
	data := map[string]any{"Heading": heading, "Filterable": !guardOnly, "Type": q.Get("type"),
		"Empty": "No audit records."}
	var verify *auditVerify
	if !guardOnly && q.Get("verify") != "" {
		verify = &auditVerify{Count: len(all)}
		if err := auditchain.Verify(all); err != nil {
			verify.Error = err.Error()
		} else {
			head := auditchain.HeadOf(all)
			verify.OK, verify.Head = true, fmt.Sprintf("%d:%s", head.Seq, head.Hash)
		}
	}
	types := map[string]bool{}
	var shown []store.AuditRecord
	for i := len(all) - 1; i >= 0; i-- {
		rec := all[i]
		types[rec.Type] = true
		switch {
		case guardOnly && !guardEvent(rec):
		case !guardOnly && q.Get("type") != "" && rec.Type != q.Get("type"):
		default:
			shown = append(shown, rec)
		}
	}
	total := len(shown)
	if len(shown) > consoleAuditShown {
		shown = shown[:consoleAuditShown]
	}
	tab := "audit"
	if guardOnly {
		tab = "guard"
		data["Empty"] = "Nothing blocked or denied."
	}
	data["Records"], data["Total"], data["More"] = shown, total, total > len(shown)
	data["Types"] = slices.Sorted(maps.Keys(types))
	if verify != nil {
		data["Verify"] = verify
	}
	render(d, w, r, http.StatusOK, "audit", consoleView{Title: heading + " · " + string(t.ID), Tenant: t, Tab: tab, Data: data})
}

func handleConsoleAudit(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { renderAudit(d, w, r, false) })
}

func handleConsoleGuard(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { renderAudit(d, w, r, true) })
}
