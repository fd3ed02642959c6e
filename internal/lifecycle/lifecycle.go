// Package lifecycle creates and deletes tenants. Per-tenant state lives in
// many places (the control record and keys, the data key, the store files,
// caches, vector indexes, quota buckets, tool sessions and processes, the
// guard, the audit writer, requests in flight); Provision and Offboard are the
// one place that lists them all, so a new kind cannot be forgotten: New
// refuses a Parts that lacks one.
//
// Every piece of that state is keyed by the tenant's incarnation (see
// tenant.Incarnation), not its id, so nothing an old incarnation does after
// its deletion reaches a tenant created again under the same id.
//
// Offboarding order, and what a crash leaves. The control record goes first,
// in one SQLite transaction with the tenant's API keys and its wrapped data
// key: from that commit on, no key authenticates, no Scope of the incarnation
// is accepted by any store or keyring, and everything encrypted under the data
// key is unreadable (crypto-shredding). Then the requests in flight are
// cancelled, and then every other participant drops its state. A crash after
// the commit leaves only state that is unreadable and unreachable: the store
// directory, which the next start removes (sqlite.DB.DropOrphans, for every
// directory no tenant owns), or on PostgreSQL the tenant's rows, which the
// next start of any replica removes (a tombstone written in the delete's
// transaction names them until ForgetDeleted), Redis quota and cache entries keyed by the dead
// incarnation, which expire on their own TTLs, and in-memory state, which
// dies with the process. Marking the tenant "deleting" first would keep the
// id reserved and the keys valid until a restart finishes the job; deleting
// the record first makes the delete take effect at once and leaves the
// restart only garbage to collect.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/layers"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Control is the control plane as the lifecycle uses it.
type Control interface {
	CreateTenant(ctx context.Context, t control.Tenant) (control.Tenant, error)
	Tenant(id tenant.ID) (control.Tenant, error)
	UpdateTenant(ctx context.Context, id tenant.ID, change func(*control.Tenant) error) (control.Tenant, error)
	DeleteTenant(ctx context.Context, id tenant.ID) (control.Tenant, error)
	DeleteIncarnation(ctx context.Context, inc tenant.Incarnation) (control.Tenant, error)
	// ForgetDeleted records that a deleted incarnation's state is gone, so
	// no start needs to drop it again (control.Plane.DeletedIncarnations).
	ForgetDeleted(ctx context.Context, inc tenant.Incarnation) error
	RevokeKey(ctx context.Context, id tenant.ID, keyID tenant.KeyID) error
	KeyRecord(id tenant.KeyID) (auth.KeyRecord, bool)
}

// Participant is one kind of per-tenant state besides the control record.
type Participant interface {
	// Name says what the state is, for errors and logs.
	Name() string
	// Offboard destroys the state of incarnation inc, whose control record
	// is already gone. It must be safe to call for an incarnation it never
	// saw, and more than once.
	Offboard(ctx context.Context, inc tenant.Incarnation) error
}

// Provisioner is a Participant that prepares a new incarnation's state,
// after its control record exists. An error undoes the whole creation.
type Provisioner interface {
	Provision(ctx context.Context, t control.Tenant) error
}

// The state holders, each as the lifecycle needs it.
type (
	// DataKeys caches unwrapped data keys (*keyring.Ring).
	DataKeys interface{ Forget(inc tenant.Incarnation) }
	// Store holds tenants' rows or files (*sqlite.DB, *postgres.DB).
	// Create makes a new incarnation's database; only it may, so a
	// database that disappears later is refused rather than made again
	// empty.
	Store interface {
		Create(ctx context.Context, inc tenant.Incarnation) error
		Drop(ctx context.Context, inc tenant.Incarnation) error
	}
	// ResponseCache holds cached answers (*cache.Cache).
	ResponseCache interface {
		DeleteTenant(ctx context.Context, inc tenant.Incarnation) error
	}
	// EmbeddingCache holds cached embeddings (*embed.Cache).
	EmbeddingCache interface {
		DropTenant(inc tenant.Incarnation) int
	}
	// VectorIndexes holds loaded vector indexes (*vector.Cache).
	VectorIndexes interface{ InvalidateTenant(inc tenant.Incarnation) }
	// Quota holds rate, concurrency and budget buckets (quota.Limiter).
	Quota interface {
		Forget(ctx context.Context, inc tenant.Incarnation) error
	}
	// ToolSessions holds MCP sessions and stdio processes
	// (*tools.MCPExecutor).
	ToolSessions interface{ CloseTenant(inc tenant.Incarnation) }
	// Guard knows tenants' canaries and fingerprints (*guard.Guard). It is
	// keyed by tenant id, which is why Provision and Offboard never overlap.
	Guard interface {
		SetCanaries(id tenant.ID, canaries []string)
		AddText(id tenant.ID, text string)
		RemoveTenant(id tenant.ID)
	}
	// AuditWriter queues audit events (*audit.Log).
	AuditWriter interface{ Forget(inc tenant.Incarnation) }
)

// Parts lists every holder of per-tenant state; New refuses a Parts with a
// field left nil, so a new kind of state, once added here, cannot be left
// out of offboarding. Extra adds participants of the caller's own (e.g. the
// tenant's honey record), run after these.
type Parts struct {
	DataKeys       DataKeys
	Store          Store
	ResponseCache  ResponseCache
	EmbeddingCache EmbeddingCache
	VectorIndexes  VectorIndexes
	Quota          Quota
	ToolSessions   ToolSessions
	Guard          Guard
	Audit          AuditWriter
	Extra          []Participant
}

// participants returns the holders as Participants, in offboarding order:
// the caches of keys first, the files last.
func (p Parts) participants() ([]Participant, error) {
	var missing []string
	need := func(name string, v any) {
		if v == nil {
			missing = append(missing, name)
		}
	}
	need("DataKeys", p.DataKeys)
	need("Store", p.Store)
	need("ResponseCache", p.ResponseCache)
	need("EmbeddingCache", p.EmbeddingCache)
	need("VectorIndexes", p.VectorIndexes)
	need("Quota", p.Quota)
	need("ToolSessions", p.ToolSessions)
	need("Guard", p.Guard)
	need("Audit", p.Audit)
	if len(missing) > 0 {
		return nil, fmt.Errorf("lifecycle: no %v: their state would outlive deleted tenants", missing)
	}
	list := []Participant{
		Func{"data key", nil, func(_ context.Context, inc tenant.Incarnation) error {
			p.DataKeys.Forget(inc)
			return nil
		}},
		Func{"tool sessions", nil, func(_ context.Context, inc tenant.Incarnation) error {
			p.ToolSessions.CloseTenant(inc)
			return nil
		}},
		Func{"audit writer", nil, func(_ context.Context, inc tenant.Incarnation) error {
			p.Audit.Forget(inc)
			return nil
		}},
		Func{"guard", func(_ context.Context, t control.Tenant) error {
			p.Guard.SetCanaries(t.ID, t.Canaries)
			for _, pr := range t.Profiles {
				if pr.SystemPrompt != "" {
					p.Guard.AddText(t.ID, pr.SystemPrompt)
				}
			}
			return nil
		}, func(_ context.Context, inc tenant.Incarnation) error {
			p.Guard.RemoveTenant(inc.Tenant())
			return nil
		}},
		Func{"quota", nil, p.Quota.Forget},
		Func{"response cache", nil, p.ResponseCache.DeleteTenant},
		Func{"embedding cache", nil, func(_ context.Context, inc tenant.Incarnation) error {
			p.EmbeddingCache.DropTenant(inc)
			return nil
		}},
		Func{"vector indexes", nil, func(_ context.Context, inc tenant.Incarnation) error {
			p.VectorIndexes.InvalidateTenant(inc)
			return nil
		}},
		Func{"store", func(ctx context.Context, t control.Tenant) error {
			return p.Store.Create(ctx, t.Incarnation())
		}, func(ctx context.Context, inc tenant.Incarnation) error {
			if inc.Storage() == "" {
				return fmt.Errorf("incarnation of %s has no storage id", inc.Tenant())
			}
			return p.Store.Drop(ctx, inc)
		}},
	}
	return append(list, p.Extra...), nil
}

// Func is a Participant (and, with ProvisionFunc set, a Provisioner) made of
// functions.
type Func struct {
	Label         string
	ProvisionFunc func(ctx context.Context, t control.Tenant) error
	OffboardFunc  func(ctx context.Context, inc tenant.Incarnation) error
}

// Name implements Participant.
func (f Func) Name() string { return f.Label }

// Offboard implements Participant.
func (f Func) Offboard(ctx context.Context, inc tenant.Incarnation) error {
	if f.OffboardFunc == nil {
		return nil
	}
	return f.OffboardFunc(ctx, inc)
}

// Provision implements Provisioner.
func (f Func) Provision(ctx context.Context, t control.Tenant) error {
	if f.ProvisionFunc == nil {
		return nil
	}
	return f.ProvisionFunc(ctx, t)
}

// ErrGone is the cause with which a request in flight is cancelled when its
// tenant is deleted or suspended or its key revoked.
var ErrGone = fmt.Errorf("%w: the tenant was deleted or suspended, or the api key revoked", kind.Unauthenticated)

// Lifecycle creates, changes and deletes tenants. It is safe for concurrent
// use.
type Lifecycle struct {
	control Control
	parts   []Participant
	log     *slog.Logger

	// ops serializes Provision and Offboard: the guard is keyed by tenant
	// id, and an old incarnation's offboarding must not undo a new one's
	// provisioning. They are rare operator actions.
	ops sync.Mutex

	mu    sync.Mutex
	byInc map[tenant.Incarnation]map[*inflight]struct{}
	byKey map[tenant.KeyID]map[*inflight]struct{}
}

// inflight is one tracked request.
type inflight struct {
	inc    tenant.Incarnation
	key    tenant.KeyID
	cancel context.CancelCauseFunc
}

// New returns a Lifecycle over c and the state holders in parts. It fails
// if one of them is missing.
func New(c Control, parts Parts, logger *slog.Logger) (*Lifecycle, error) {
	if c == nil {
		return nil, errors.New("lifecycle: no control plane")
	}
	list, err := parts.participants()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Lifecycle{control: c, parts: list, log: logger,
		byInc: map[tenant.Incarnation]map[*inflight]struct{}{},
		byKey: map[tenant.KeyID]map[*inflight]struct{}{}}, nil
}

// Provision creates tenant t: its control record (with a fresh incarnation),
// then every participant's state. If a participant fails, what was made is
// offboarded again and the error returned.
func (l *Lifecycle) Provision(ctx context.Context, t control.Tenant) (control.Tenant, error) {
	l.ops.Lock()
	defer l.ops.Unlock()
	created, err := l.control.CreateTenant(ctx, t)
	if err != nil {
		return control.Tenant{}, err
	}
	for _, p := range l.parts {
		pr, ok := p.(Provisioner)
		if !ok {
			continue
		}
		if err := pr.Provision(ctx, created); err != nil {
			err = fmt.Errorf("provision %s of tenant %s: %w", p.Name(), created.ID, err)
			undo := context.WithoutCancel(ctx)
			if _, derr := l.control.DeleteIncarnation(undo, created.Incarnation()); derr != nil {
				return control.Tenant{}, errors.Join(err, derr)
			}
			return control.Tenant{}, errors.Join(err, l.offboard(undo, created))
		}
	}
	l.log.InfoContext(ctx, "tenant provisioned", "tenant", created.ID)
	return created, nil
}

// Offboard deletes tenant id: the control record with its keys and data key
// first, then it cancels the tenant's requests in flight, then every
// participant drops the incarnation's state. A participant's failure does not
// stop the others; the errors are joined. See the package comment for what
// a crash in the middle leaves.
func (l *Lifecycle) Offboard(ctx context.Context, id tenant.ID) (control.Tenant, error) {
	l.ops.Lock()
	defer l.ops.Unlock()
	t, err := l.control.DeleteTenant(ctx, id)
	if err != nil {
		return control.Tenant{}, err
	}
	// Past the commit the delete has happened: finish it even if the
	// operator's request goes away, rather than leave it to the next start.
	return t, l.offboard(context.WithoutCancel(ctx), t)
}

// offboard drops the state of t, whose control record is gone.
func (l *Lifecycle) offboard(ctx context.Context, t control.Tenant) error {
	inc := t.Incarnation()
	l.cancelAll(take(l, l.byInc, inc))
	var errs []error
	for _, p := range l.parts {
		if err := p.Offboard(ctx, inc); err != nil {
			errs = append(errs, fmt.Errorf("offboard %s of tenant %s: %w", p.Name(), t.ID, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		l.log.ErrorContext(ctx, "tenant offboarded with errors", "tenant", t.ID, "error", err.Error())
		return err
	}
	// Only now: a failure above leaves the tombstone for the next start.
	if err := l.control.ForgetDeleted(ctx, inc); err != nil {
		l.log.WarnContext(ctx, "tenant offboarded; its tombstone stays for the next start", "tenant", t.ID, "error", err.Error())
	}
	l.log.InfoContext(ctx, "tenant offboarded", "tenant", t.ID)
	return nil
}

// Update changes tenant id through the control plane. A tenant that is not
// active afterwards (suspended) has its requests in flight cancelled.
func (l *Lifecycle) Update(ctx context.Context, id tenant.ID, change func(*control.Tenant) error) (control.Tenant, error) {
	t, err := l.control.UpdateTenant(ctx, id, change)
	if err != nil {
		return control.Tenant{}, err
	}
	if t.Status != tenant.StatusActive {
		l.cancelAll(take(l, l.byInc, t.Incarnation()))
	}
	return t, nil
}

// RevokeKey revokes one of tenant id's API keys and cancels the requests in
// flight that it authenticated.
func (l *Lifecycle) RevokeKey(ctx context.Context, id tenant.ID, keyID tenant.KeyID) error {
	if err := l.control.RevokeKey(ctx, id, keyID); err != nil {
		return err
	}
	l.cancelAll(take(l, l.byKey, keyID))
	return nil
}

// Follow applies a change another replica made (control.Plane.OnChange):
// requests in flight of keys revoked there, and of incarnations ended or
// suspended there, are cancelled here too, and the ended incarnations'
// state this replica holds is dropped (every participant tolerates an
// incarnation it never saw or already dropped). Participants' errors are
// logged: the change has happened, there is no one to tell.
func (l *Lifecycle) Follow(ctx context.Context, ch control.Change) {
	for _, k := range ch.RevokedKeys {
		l.cancelAll(take(l, l.byKey, k))
	}
	for _, inc := range ch.Ended {
		l.cancelAll(take(l, l.byInc, inc))
		for _, p := range l.parts {
			if err := p.Offboard(ctx, inc); err != nil {
				l.log.ErrorContext(ctx, "follow a remote delete", "part", p.Name(), "error", err.Error())
			}
		}
	}
	for _, id := range ch.Tenants {
		if t, err := l.control.Tenant(id); err == nil && t.Status != tenant.StatusActive {
			l.cancelAll(take(l, l.byInc, t.Incarnation()))
		}
	}
}

// Track registers a request of scope (authenticated with a tenant key) until
// done is called, and returns its context: it is cancelled with cause ErrGone
// as soon as the tenant is deleted or suspended or the key revoked. A
// change that happened between authentication and Track cancels it at once.
func (l *Lifecycle) Track(ctx context.Context, scope auth.Scope) (_ context.Context, done func()) {
	if layers.Off("lifecycle") { // redteamswitch builds only; see package layers
		return ctx, func() {}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	r := &inflight{inc: scope.Incarnation(), key: scope.Key(), cancel: cancel}
	l.mu.Lock()
	add(l.byInc, r.inc, r)
	if r.key != "" {
		add(l.byKey, r.key, r)
	}
	l.mu.Unlock()
	// Registered first, checked second: a change committed before this
	// check is seen here, one committed after it cancels r.
	if !l.current(scope) {
		cancel(ErrGone)
	}
	return ctx, func() {
		l.mu.Lock()
		remove(l.byInc, r.inc, r)
		if r.key != "" {
			remove(l.byKey, r.key, r)
		}
		l.mu.Unlock()
		cancel(context.Canceled)
	}
}

// InFlight reports how many tracked requests incarnation inc has.
func (l *Lifecycle) InFlight(inc tenant.Incarnation) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.byInc[inc])
}

// current reports whether scope's key still authenticates its incarnation
// of an active tenant.
func (l *Lifecycle) current(scope auth.Scope) bool {
	if scope.Key() == "" {
		t, err := l.control.Tenant(scope.Tenant())
		return err == nil && t.Incarnation() == scope.Incarnation() && t.Status == tenant.StatusActive
	}
	rec, ok := l.control.KeyRecord(scope.Key())
	return ok && rec.Incarnation == scope.Incarnation() && rec.Status == tenant.StatusActive
}

// take removes and returns the requests tracked in m under k.
func take[K comparable](l *Lifecycle, m map[K]map[*inflight]struct{}, k K) []*inflight {
	l.mu.Lock()
	defer l.mu.Unlock()
	set := m[k]
	delete(m, k)
	rs := make([]*inflight, 0, len(set))
	for r := range set {
		rs = append(rs, r)
	}
	return rs
}

func (l *Lifecycle) cancelAll(rs []*inflight) {
	for _, r := range rs {
		r.cancel(ErrGone)
	}
}

func add[K comparable](m map[K]map[*inflight]struct{}, k K, r *inflight) {
	set := m[k]
	if set == nil {
		set = map[*inflight]struct{}{}
		m[k] = set
	}
	set[r] = struct{}{}
}

func remove[K comparable](m map[K]map[*inflight]struct{}, k K, r *inflight) {
	if set := m[k]; set != nil {
		delete(set, r)
		if len(set) == 0 {
			delete(m, k)
		}
	}
}
