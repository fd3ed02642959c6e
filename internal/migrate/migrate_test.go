package migrate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auditchain"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/migrate"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// source is two tenants with a few rows each and a chained audit log.
type source struct{ raws map[tenant.ID]store.Raw }

func newSource(t *testing.T) source {
	s := source{raws: map[tenant.ID]store.Raw{}}
	for _, id := range []tenant.ID{"acme", "globex"} {
		var head auditchain.Head
		var audit []store.AuditRecord
		for i := range 3 {
			r, err := auditchain.Link(head, store.AuditRecord{Time: time.Unix(int64(i), 0).UTC(), Type: "test.event", Data: json.RawMessage(`{}`)})
			if err != nil {
				t.Fatal(err)
			}
			audit, head = append(audit, r), auditchain.Head{Seq: r.Seq, Hash: r.Hash}
		}
		s.raws[id] = store.Raw{
			Sessions: []store.RawSession{{UserID: "alice", SessionID: "s1"}},
			Messages: []store.RawMessage{{UserID: "alice", SessionID: "s1", Role: "user", Content: []byte("sealed")}},
			Audit:    audit,
		}
	}
	return s
}

func (s source) ExportRecords(context.Context) (control.Records, error) {
	return control.Records{Tenants: []control.TenantRecord{{ID: "acme", StorageID: "a0a0"}, {ID: "globex", StorageID: "b0b0"}}}, nil
}

func (s source) Rows(_ context.Context, inc tenant.Incarnation) (store.Raw, error) {
	return s.raws[inc.Tenant()], nil
}

// target keeps what was imported; its fields spoil the copy as a faulty
// backend would.
type target struct {
	importRecords error
	importRows    error
	exportErr     error
	spoil         func(id tenant.ID, r *store.Raw)
	rows          map[tenant.ID]store.Raw
}

func (d *target) ImportRecords(context.Context, control.Records) error { return d.importRecords }

func (d *target) Import(_ context.Context, inc tenant.Incarnation, raw store.Raw) error {
	if d.importRows != nil {
		return d.importRows
	}
	if d.spoil != nil {
		d.spoil(inc.Tenant(), &raw)
	}
	d.rows[inc.Tenant()] = raw
	return nil
}

func (d *target) RowCounts(_ context.Context, inc tenant.Incarnation) (map[string]int, error) {
	return d.rows[inc.Tenant()].Counts(), nil
}

func (d *target) AuditRecords(_ context.Context, scope auth.Scope, _ int64, _ int) ([]store.AuditRecord, error) {
	return d.rows[scope.Tenant()].Audit, nil
}

func (d *target) Export(context.Context, auth.Scope) (store.Export, error) {
	return store.Export{}, d.exportErr
}

type noKeys struct{}

func (noKeys) KeyRecord(tenant.KeyID) (auth.KeyRecord, bool) { return auth.KeyRecord{}, false }

func operator(t *testing.T) context.Context {
	const token = "bka_test_migrate_operator_token"
	a, err := auth.New(noKeys{}, token)
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := a.OperatorContext(context.Background(), token)
	if err != nil {
		t.Fatal(err)
	}
	return ctx
}

func TestRun(t *testing.T) {
	// A chain as long as the source's that verifies on its own but is not
	// the source's: only the head tells.
	var head auditchain.Head
	forged := make([]store.AuditRecord, 3)
	for i := range forged {
		var err error
		if forged[i], err = auditchain.Link(head, store.AuditRecord{Time: time.Unix(9, 0).UTC(), Type: "test.forged", Data: json.RawMessage(`{}`)}); err != nil {
			t.Fatal(err)
		}
		head = auditchain.HeadOf(forged[:i+1])
	}
	if err := auditchain.Verify(forged); err != nil {
		t.Fatalf("the forged chain does not verify: %v", err)
	}
	tests := []struct {
		name   string
		target target
		want   []string // in the error; none: it succeeds
		is     error
	}{
		{name: "intact copy"},
		{name: "target holds tenants", target: target{importRecords: fmt.Errorf("import: %w", kind.Conflict)},
			want: []string{"already holds tenants", "drop"}, is: migrate.ErrTargetInUse},
		{name: "rows refused", target: target{importRows: errors.New("table secrets: boom")},
			want: []string{"tenant acme", "table secrets"}},
		{name: "a message lost", target: target{spoil: func(id tenant.ID, r *store.Raw) {
			if id == "globex" {
				r.Messages = nil
			}
		}}, want: []string{"tenant globex", "table messages", "0 rows copied, 1 in the source"}},
		{name: "an audit record edited", target: target{spoil: func(id tenant.ID, r *store.Raw) {
			r.Audit = append([]store.AuditRecord(nil), r.Audit...)
			r.Audit[1].Type = "test.other"
		}}, want: []string{"tenant acme", "table audit"}},
		{name: "the audit log rewritten", target: target{spoil: func(id tenant.ID, r *store.Raw) {
			r.Audit = forged
		}}, want: []string{"tenant acme", "table audit"}},
		{name: "the copy does not open", target: target{exportErr: errors.New("message authentication failed")},
			want: []string{"tenant acme", "open the copy with the tenant's key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newSource(t)
			dst := tt.target
			dst.rows = map[tenant.ID]store.Raw{}
			var out bytes.Buffer
			err := migrate.Run(operator(t), migrate.Source{Control: src, Stores: src}, migrate.Target{Control: &dst, Stores: &dst}, &out)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				for _, id := range []string{"acme", "globex"} {
					if !strings.Contains(out.String(), "tenant "+id+": copied and checked") {
						t.Errorf("no progress line for %s:\n%s", id, out.String())
					}
				}
				return
			}
			if err == nil {
				t.Fatalf("Run succeeded, want an error with %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
		})
	}
}

// TestRunNeedsTheOperator: the checks read each copy as the operator; a
// context without the admin credential gets nowhere.
func TestRunNeedsTheOperator(t *testing.T) {
	src := newSource(t)
	dst := &target{rows: map[tenant.ID]store.Raw{}}
	err := migrate.Run(context.Background(), migrate.Source{Control: src, Stores: src}, migrate.Target{Control: dst, Stores: dst}, &bytes.Buffer{})
	if !errors.Is(err, kind.Unauthenticated) {
		t.Fatalf("Run without the operator: %v, want kind.Unauthenticated", err)
	}
}
