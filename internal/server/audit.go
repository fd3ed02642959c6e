package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/bulkhead-ai/bulkhead/internal/audit"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/requestid"
	"github.com/bulkhead-ai/bulkhead/internal/store"
)

// record appends an event to scope's audit log. A failure is logged loudly;
// the action it describes has already happened.
func record(d Deps, r *http.Request, scope auth.Scope, typ string, data map[string]any) {
	if d.Audit == nil {
		return
	}
	if err := d.Audit.Record(scope, audit.Event{Type: typ, Data: requestid.Annotate(r.Context(), data)}); err != nil {
		d.Logger.ErrorContext(r.Context(), "audit record failed", "tenant", scope.Tenant(), "type", typ, "error", err.Error())
	}
}

// errUnaudited fails a change whose audit record could not be stored. It
// wraps no error kind on purpose: the client is told "internal error" (500),
// the server log gets the cause.
var errUnaudited = errors.New("change not made: its audit record could not be stored")

// recordChange stores the audit record of an operator's change to scope's
// tenant before the change is made. An error means the change must not be
// made: a change that cannot be audited fails rather than going unrecorded.
// If the change then fails, changeFailed says so in the log.
func recordChange(d Deps, r *http.Request, scope auth.Scope, typ string, data map[string]any) error {
	if d.Audit == nil {
		return fmt.Errorf("%w: %s: no audit log", errUnaudited, typ)
	}
	if err := d.Audit.RecordNow(r.Context(), scope, audit.Event{Type: typ, Data: requestid.Annotate(r.Context(), data)}); err != nil {
		if errors.Is(err, store.ErrUnknownTenant) {
			return fmt.Errorf("%w: tenant %s", kind.NotFound, scope.Tenant())
		}
		return fmt.Errorf("%w: %s: %v", errUnaudited, typ, err)
	}
	return nil
}

// changeFailed records that a change recordChange recorded was not made.
func changeFailed(d Deps, r *http.Request, scope auth.Scope, typ string, err error) {
	status, _, _, _ := errorStatus(err)
	record(d, r, scope, typ+".failed", map[string]any{"status": status})
}

// maxAuditPage bounds one page of the audit log.
const maxAuditPage = 10_000

// writeAudit answers with scope's log from ?after=SEQ, at most ?limit=N
// records, flushing pending events first so a reader sees what happened.
func writeAudit(d Deps, w http.ResponseWriter, r *http.Request, scope auth.Scope) {
	q := r.URL.Query()
	after, limit := int64(0), maxAuditPage
	var err error
	if v := q.Get("after"); v != "" {
		if after, err = strconv.ParseInt(v, 10, 64); err != nil || after < 0 {
			writeError(d.Logger, w, r, fmt.Errorf("%w: after must be a sequence number", kind.Invalid))
			return
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > maxAuditPage {
			writeError(d.Logger, w, r, fmt.Errorf("%w: limit must be 1-%d", kind.Invalid, maxAuditPage))
			return
		}
	}
	recs, err := auditRecords(r.Context(), d, scope, after, limit)
	if err != nil {
		writeError(d.Logger, w, r, err)
		return
	}
	encode(w, http.StatusOK, map[string]any{"object": "list", "tenant": scope.Tenant(), "data": recs})
}

// auditRecords returns scope's log from after, at most limit records,
// flushing pending events first so a reader sees what happened; the API and
// the console both read logs through it.
func auditRecords(ctx context.Context, d Deps, scope auth.Scope, after int64, limit int) ([]store.AuditRecord, error) {
	if d.AuditRefused != nil {
		d.AuditRefused.FlushTenant(scope.Tenant())
	}
	if d.Audit != nil {
		d.Audit.FlushLeaks(scope.Tenant())
		if err := d.Audit.Flush(ctx); err != nil {
			return nil, fmt.Errorf("flush audit log: %w", err)
		}
	}
	recs, err := d.Data.AuditRecords(ctx, scope, after, limit)
	if err != nil {
		return nil, err
	}
	if recs == nil {
		recs = []store.AuditRecord{}
	}
	return recs, nil
}

func handleTenantAudit(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, err := tenantScope(r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		writeAudit(d, w, r, scope)
	})
}

func handleAdminAudit(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, err := adminTenantScope(d, r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		writeAudit(d, w, r, scope)
	})
}
