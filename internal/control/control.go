// Package control is the control plane: tenants, their agent profiles and
// limits, API keys, wrapped data keys and the tool catalog. It is durable in
// SQLite (one server) or PostgreSQL (several replicas, which follow each
// other's changes) and served from an in-memory snapshot, so authenticating
// a request never touches the database.
package control

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/tools"
)

// DefaultProfile is the profile every tenant has.
const DefaultProfile = "default"

// Profile is one agent configuration of a tenant.
type Profile struct {
	SystemPrompt string `json:"system_prompt"`
	Model        string `json:"model"`
	// Fallbacks are "provider/model" names tried in order when Model's
	// provider answers 429 or 5xx or times out, before anything was streamed.
	Fallbacks []string `json:"fallbacks,omitempty"`
	// Models are the other "provider/model" names a request may pick for
	// this profile, as "<profile>/<provider>/<model>".
	Models []string `json:"models,omitempty"`
	Tools  []string `json:"tools"`
	// APIKeySecret names the tenant secret holding the model provider's key
	// (bring your own key); empty means the provider's own setting.
	APIKeySecret string `json:"api_key_secret,omitempty"`
	// NoCache turns the response cache off for this profile.
	NoCache bool `json:"no_cache,omitempty"`
	// CacheToolAnswers lets answers that involved tool calls be cached too.
	CacheToolAnswers bool `json:"cache_tool_answers,omitempty"`
	// NoClientTools refuses requests that declare their own tools (the
	// admin API's "client_tools": false); by default a request may.
	NoClientTools bool `json:"no_client_tools,omitempty"`
}

// Limits bounds a tenant's use of shared capacity. Zero means unlimited.
type Limits struct {
	RequestsPerMinute int `json:"requests_per_minute,omitempty"`
	TokensPerMinute   int `json:"tokens_per_minute,omitempty"`
	MaxConcurrent     int `json:"max_concurrent,omitempty"`
	// TokenBudget caps tokens per BudgetPeriodHours (default 720, 30 days).
	TokenBudget       int64 `json:"token_budget,omitempty"`
	BudgetPeriodHours int   `json:"budget_period_hours,omitempty"`
	// SpendPerDayUSD caps what the tenant spends on models per UTC day, and
	// EndUserSpendPerDayUSD what each of its end users does, in US dollars
	// at the configured prices, so one end user cannot spend the tenant's
	// whole budget. Kept exact to the micro-dollar.
	SpendPerDayUSD        float64 `json:"spend_per_day_usd,omitempty"`
	EndUserSpendPerDayUSD float64 `json:"end_user_spend_per_day_usd,omitempty"`
}

// MaxSpendPerDayUSD bounds a money budget, so micro-dollars cannot overflow.
const MaxSpendPerDayUSD = 1e9

// MicroUSD returns usd in micro-dollars, rounded to the nearest.
func MicroUSD(usd float64) int64 { return int64(math.Round(usd * 1e6)) }

// Tenant is one customer of the service.
type Tenant struct {
	ID       tenant.ID
	Name     string
	Status   tenant.Status
	Profiles map[string]Profile // always holds DefaultProfile
	Limits   Limits
	// Policy is the tenant's own Cedar text: forbids that narrow what its
	// profiles grant.
	Policy string
	// AllowedHosts lists the hosts markdown links and images in answers may
	// point to ("example.com", "*.example.com"); others are removed.
	AllowedHosts []string
	// Canaries are unique tokens planted in the tenant's system prompts; one
	// seen in another tenant's answer proves a leak, and blocks it.
	Canaries []string
	// Embedder names the embedding model of the tenant's knowledge base and
	// memories; empty means the server's default.
	Embedder string
	// Issuers are the tenant's registered end-user token issuers.
	Issuers []auth.Issuer
	// CORSOrigins are the browser origins ("https://app.example") whose
	// pages may read this tenant's API responses.
	CORSOrigins []string
	StorageID   string // opaque name of the tenant's data directory
	// StoreAtProvision records that the tenant's store was made when it was
	// provisioned, as for every tenant created since stores are: one found
	// missing later is lost, never made again. A tenant created before has
	// its store made on first use.
	StoreAtProvision bool
	// WrappedKey is the tenant's data key wrapped by the KEK; deleting the
	// tenant destroys it.
	WrappedKey []byte
	CreatedAt  time.Time
	UpdatedAt  time.Time

	revision uint64 // counts the stored tenant's updates, for UpdateTenant
}

// Incarnation returns this life of the tenant: a tenant deleted and created
// again under its id has a new storage id, so a new incarnation.
func (t Tenant) Incarnation() tenant.Incarnation {
	return tenant.NewIncarnation(t.ID, t.StorageID)
}

// Profile returns the named profile.
func (t Tenant) Profile(name string) (Profile, bool) {
	p, ok := t.Profiles[name]
	return p, ok
}

func (t Tenant) clone() Tenant {
	t.Profiles = maps.Clone(t.Profiles)
	t.WrappedKey = slices.Clone(t.WrappedKey)
	t.AllowedHosts = slices.Clone(t.AllowedHosts)
	t.Canaries = slices.Clone(t.Canaries)
	t.Issuers = slices.Clone(t.Issuers)
	t.CORSOrigins = slices.Clone(t.CORSOrigins)
	for name, p := range t.Profiles {
		p.Tools = slices.Clone(p.Tools)
		t.Profiles[name] = p
	}
	return t
}

type keyEntry struct {
	tenant  tenant.ID
	hash    auth.KeyHash
	expires time.Time // zero: never
}

// Key describes one of a tenant's API keys: never the key, nor its hash.
type Key struct {
	ID        tenant.KeyID `json:"id"`
	Name      string       `json:"name"`
	CreatedAt time.Time    `json:"created_at"`
	RevokedAt *time.Time   `json:"revoked_at"` // nil while the key works
	ExpiresAt *time.Time   `json:"expires_at"` // nil: never
	// LastUsedAt is when the key last authenticated a request, to within
	// the interval at which use is written (KeyUseInterval); nil: never.
	LastUsedAt *time.Time `json:"last_used_at"`
}

// backend keeps the control plane durable: SQLite (one process) or
// PostgreSQL (any number of replicas). Every method is one transaction. The
// database, not the snapshot, decides conflicts: a write whose precondition
// does not hold there fails with errExists or errMissing, and the Plane then
// refreshes what it holds of that tenant.
type backend interface {
	// load reads everything, consistently, with the change version it
	// reflects.
	load(ctx context.Context) (snapshot, error)
	// loadTenant reads one tenant (absent if deleted), its live keys and the
	// tools it owns.
	loadTenant(ctx context.Context, id tenant.ID) (snapshot, error)
	// initCheck stores check as the KEK check value unless one is stored, and
	// returns the stored one.
	initCheck(ctx context.Context, check []byte) ([]byte, error)
	// createTenant inserts t, if the stored KEK check is still check (no
	// other replica rotated the master key meanwhile).
	createTenant(ctx context.Context, t Tenant, cfg string, check []byte) (int64, error)
	// updateTenant stores t if the stored tenant is incarnation t.StorageID
	// at revision; t.revision is revision+1.
	updateTenant(ctx context.Context, t Tenant, cfg string, revision uint64) (int64, error)
	// deleteTenant deletes tenant id (only incarnation storageID, if not
	// empty) with its keys and tools, and returns what it deleted.
	deleteTenant(ctx context.Context, id tenant.ID, storageID string) (Tenant, int64, error)
	addKey(ctx context.Context, id tenant.ID, keyID tenant.KeyID, hash auth.KeyHash, opts KeyOptions, at time.Time) (int64, error)
	// touchKeys records when keys were last used; it is no change of the
	// snapshot's, and bumps no version.
	touchKeys(ctx context.Context, used map[tenant.KeyID]time.Time) error
	revokeKey(ctx context.Context, id tenant.ID, keyID tenant.KeyID, at time.Time) (int64, error)
	// addUsage adds batch to the usage rows, in one transaction, skipping
	// incarnations that no longer exist; it bumps no version.
	addUsage(ctx context.Context, batch map[usageKey]Usage) error
	// usage reads tenant id's usage rows (every tenant's if id is empty)
	// of days from to to, both included.
	usage(ctx context.Context, id tenant.ID, from, to string) ([]UsageRow, error)
	// spentOn reads incarnation inc's spend on day, per end user.
	spentOn(ctx context.Context, inc tenant.Incarnation, day string) (map[tenant.UserID]int64, error)
	// keys reads tenant id's keys, revoked ones too, oldest first.
	keys(ctx context.Context, id tenant.ID) ([]Key, error)
	createTool(ctx context.Context, t *tools.Tool, def string, at time.Time) (int64, error)
	deleteTool(ctx context.Context, name string) (int64, error)
	// rotate rewraps every stored data key with rewrap and stores check as
	// the new KEK check value, if the stored one is still old.
	rotate(ctx context.Context, old, check []byte, rewrap func(id tenant.ID, wrapped []byte) ([]byte, error)) (map[tenant.Incarnation][]byte, int64, error)
	close() error
}

// tombstones is kept by a backend whose tenants' data has no directory of
// its own to sweep (PostgreSQL): deleteTenant records the incarnation in
// its transaction, and the record stays until forgetDeleted, once the
// incarnation's data is gone.
type tombstones interface {
	deletedStores(ctx context.Context) ([]tenant.Incarnation, error)
	forgetDeleted(ctx context.Context, storageID string) error
}

// Conditions a backend reports; the Plane turns them into kind errors.
var (
	errExists     = errors.New("already exists")
	errMissing    = errors.New("not found as expected")
	errNoOwner    = errors.New("owner tenant does not exist")
	errKEKChanged = errors.New("the master key was rotated by another server: restart this one with the new master key")
)

// snapshot is what a backend read: everything, or one tenant's part.
type snapshot struct {
	version int64 // the backend's change counter; 0 where there is none
	check   []byte
	tenants map[tenant.ID]Tenant
	keys    map[tenant.KeyID]keyEntry
	tools   map[string]*tools.Tool
}

func newSnapshot() snapshot {
	return snapshot{tenants: map[tenant.ID]Tenant{}, keys: map[tenant.KeyID]keyEntry{}, tools: map[string]*tools.Tool{}}
}

// Change is what a Plane learned from its database that it did not do
// itself: a change made through another replica. Lists are sorted.
type Change struct {
	// Tenants were created, changed (any field, the wrapped data key
	// included) or deleted.
	Tenants []tenant.ID
	// Ended are incarnations that no longer exist: deleted, or replaced by a
	// tenant created again under the same id. Their state must go.
	Ended []tenant.Incarnation
	// RevokedKeys no longer authenticate (revoked, or their tenant ended).
	RevokedKeys []tenant.KeyID
	// Tools were created, changed or deleted in the catalog.
	Tools []string
	// KEKRotated reports that another replica rotated the master key.
	KEKRotated bool
}

func (c Change) empty() bool {
	return len(c.Tenants) == 0 && len(c.Ended) == 0 && len(c.RevokedKeys) == 0 && len(c.Tools) == 0 && !c.KEKRotated
}

// Plane is the control plane. It is safe for concurrent use.
type Plane struct {
	be     backend
	logger *slog.Logger
	now    func() time.Time

	// wmu serialises changes of the snapshot: this Plane's writes, held
	// across the database write so the snapshot never runs behind what this
	// replica committed, and refreshes from the database.
	wmu     sync.Mutex
	kek     keyring.KEK // guarded by wmu: rotation replaces it
	check   []byte      // the KEK check value kek verified; guarded by wmu
	version int64       // the backend change the snapshot reflects; guarded by wmu

	// mu guards the snapshot for readers; writers hold it only to swap.
	mu      sync.RWMutex
	tenants map[tenant.ID]Tenant
	keys    map[tenant.KeyID]keyEntry
	tools   map[string]*tools.Tool

	// freshUntil (Unix nanoseconds) is when the snapshot stops counting as
	// current unless the watcher confirms it again; zero maxStale (one
	// server, nothing to follow) means it never does.
	maxStale   time.Duration
	freshUntil atomic.Int64

	hooks     hookQueue
	keyUse    keyUse
	usage     usageMeter
	stopWatch func() // stops the backend's watcher; nil if it has none
	closeOnce sync.Once
	closeErr  error
}

//go:embed migrations
var migrations embed.FS

// ErrWrongMasterKey means the KEK is not the one the data directory was
// created with.
var ErrWrongMasterKey = errors.New("the master key does not match this data directory (check BULKHEAD_MASTER_KEY or DATA/master_key)")

// open verifies kek against be and loads the snapshot.
func open(ctx context.Context, be backend, kek keyring.KEK, logger *slog.Logger) (*Plane, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Plane{be: be, logger: logger, now: time.Now, kek: kek}
	fresh, err := kek.Wrap(ctx, kekCheckPlain, kekCheckAAD)
	if err != nil {
		return nil, fmt.Errorf("write key check: %w", err)
	}
	if p.check, err = be.initCheck(ctx, fresh); err != nil {
		return nil, err
	}
	if !p.verifies(ctx, p.check) {
		return nil, ErrWrongMasterKey
	}
	snap, err := be.load(ctx)
	if err != nil {
		return nil, err
	}
	p.tenants, p.keys, p.tools, p.version = snap.tenants, snap.keys, snap.tools, snap.version
	p.hooks.start(logger)
	return p, nil
}

func migrate(ctx context.Context, dialect goose.Dialect, db *sql.DB, dir string, opts ...goose.ProviderOption) error {
	fsys, err := fs.Sub(migrations, "migrations/"+dir)
	if err != nil {
		return fmt.Errorf("open control migrations: %w", err)
	}
	prov, err := goose.NewProvider(dialect, db, fsys, opts...)
	if err != nil {
		return fmt.Errorf("prepare control migrations: %w", err)
	}
	if _, err := prov.Up(ctx); err != nil {
		return fmt.Errorf("migrate control database: %w", err)
	}
	return nil
}

var (
	kekCheckPlain = []byte("bulkhead key check")
	kekCheckAAD   = []byte("bulkhead/kek-check/v1")
)

// verifies reports whether the Plane's KEK opens check.
func (p *Plane) verifies(ctx context.Context, check []byte) bool {
	plain, err := p.kek.Unwrap(ctx, check, kekCheckAAD)
	return err == nil && bytes.Equal(plain, kekCheckPlain)
}

// Close stops following other replicas and closes the database. Calls
// after the first do nothing.
func (p *Plane) Close() error {
	p.closeOnce.Do(func() {
		if p.stopWatch != nil {
			p.stopWatch()
		}
		p.hooks.stop()
		p.closeErr = p.be.close()
	})
	return p.closeErr
}

// OnChange registers f to be called with every change this Plane takes from
// its database that it did not make itself (on PostgreSQL: changes made
// through other replicas), after the snapshot shows it. Calls come one at a
// time, in order, from a goroutine of the Plane's; f may read the Plane.
// Layers keeping per-tenant state use it to follow: cancel requests of
// revoked keys and ended incarnations, drop their caches, reload canaries.
func (p *Plane) OnChange(f func(Change)) { p.hooks.add(f) }

type storedConfig struct {
	Profiles     map[string]Profile `json:"profiles"`
	Limits       Limits             `json:"limits"`
	AllowedHosts []string           `json:"allowed_hosts,omitempty"`
	Canaries     []string           `json:"canaries,omitempty"`
	Embedder     string             `json:"embedder,omitempty"`
	Issuers      []auth.Issuer      `json:"issuers,omitempty"`
	CORSOrigins  []string           `json:"cors_origins,omitempty"`
	// StoreAtProvision is absent (false) in tenants stored before it was.
	StoreAtProvision bool `json:"store_at_provision,omitempty"`
}

func encodeConfig(t Tenant) (string, error) {
	b, err := json.Marshal(storedConfig{Profiles: t.Profiles, Limits: t.Limits, AllowedHosts: t.AllowedHosts, Canaries: t.Canaries, Embedder: t.Embedder,
		Issuers: t.Issuers, CORSOrigins: t.CORSOrigins, StoreAtProvision: t.StoreAtProvision})
	return string(b), err
}

func decodeConfig(s string, t *Tenant) error {
	var c storedConfig
	if err := json.Unmarshal([]byte(s), &c); err != nil {
		return err
	}
	t.Profiles, t.Limits, t.AllowedHosts, t.Canaries, t.Embedder = c.Profiles, c.Limits, c.AllowedHosts, c.Canaries, c.Embedder
	t.Issuers, t.CORSOrigins = c.Issuers, c.CORSOrigins
	t.StoreAtProvision = c.StoreAtProvision
	return nil
}

func decodeTool(name, def string) (*tools.Tool, error) {
	var d tools.Definition
	if err := json.Unmarshal([]byte(def), &d); err != nil {
		return nil, fmt.Errorf("load tool %s: %w", name, err)
	}
	t, err := tools.Compile(d)
	if err != nil {
		return nil, fmt.Errorf("load tool %s: %w", name, err)
	}
	return t, nil
}

// stamp is the current time as both backends store it (PostgreSQL keeps
// microseconds), so a tenant reads back as it was written.
func (p *Plane) stamp() time.Time { return p.now().UTC().Truncate(time.Microsecond) }

// committed records that the database is at version v after a write of
// this Plane. A gap means another replica's change is still on its way;
// the watcher closes it.
func (p *Plane) committed(v int64) {
	if v == p.version+1 {
		p.version = v
	}
}

// CreateTenant stores a new tenant. Status defaults to active; the storage id
// is always fresh, so a re-created tenant never finds its predecessor's files.
func (p *Plane) CreateTenant(ctx context.Context, t Tenant) (Tenant, error) {
	if err := validate(t); err != nil {
		return Tenant{}, err
	}
	if t.Status == "" {
		t.Status = tenant.StatusActive
	}
	storageID, err := newStorageID()
	if err != nil {
		return Tenant{}, err
	}
	t.StorageID = storageID
	dataKey, err := keyring.NewKey()
	if err != nil {
		return Tenant{}, err
	}
	defer clear(dataKey)
	t.CreatedAt = p.stamp()
	t.UpdatedAt = t.CreatedAt
	t.StoreAtProvision = true // the lifecycle makes it next
	t.revision = 0
	t = t.clone()
	cfg, err := encodeConfig(t)
	if err != nil {
		return Tenant{}, fmt.Errorf("encode tenant: %w", err)
	}

	p.wmu.Lock()
	defer p.wmu.Unlock()
	if _, ok := p.tenant(t.ID); ok {
		return Tenant{}, fmt.Errorf("%w: tenant %s", kind.Conflict, t.ID)
	}
	if t.WrappedKey, err = keyring.WrapKey(ctx, p.kek, t.ID, dataKey); err != nil {
		return Tenant{}, err
	}
	v, err := p.be.createTenant(ctx, t, cfg, p.check)
	if errors.Is(err, errExists) {
		p.refresh(ctx, t.ID)
		return Tenant{}, fmt.Errorf("%w: tenant %s", kind.Conflict, t.ID)
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("create tenant %s: %w", t.ID, err)
	}
	p.mu.Lock()
	p.tenants[t.ID] = t
	p.mu.Unlock()
	p.committed(v)
	return t.clone(), nil
}

func (p *Plane) tenant(id tenant.ID) (Tenant, bool) {
	p.mu.RLock()
	t, ok := p.tenants[id]
	p.mu.RUnlock()
	return t, ok
}

// Tenant returns the tenant with the given id.
func (p *Plane) Tenant(id tenant.ID) (Tenant, error) {
	t, ok := p.tenant(id)
	if !ok {
		return Tenant{}, fmt.Errorf("%w: tenant %s", kind.NotFound, id)
	}
	return t.clone(), nil
}

// Tenants returns every tenant, ordered by id.
func (p *Plane) Tenants() []Tenant {
	p.mu.RLock()
	out := make([]Tenant, 0, len(p.tenants))
	for _, t := range p.tenants {
		out = append(out, t.clone())
	}
	p.mu.RUnlock()
	slices.SortFunc(out, func(a, b Tenant) int { return compareIDs(a.ID, b.ID) })
	return out
}

func compareIDs(a, b tenant.ID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// maxUpdateAttempts bounds UpdateTenant's retries when other writers keep
// changing the tenant first.
const maxUpdateAttempts = 100

// UpdateTenant applies change to a copy of the tenant and stores the result.
// change runs without the plane's lock held (it may read the plane); if the
// tenant changed meanwhile, here or through another replica, it runs again
// on the new version. It cannot alter the id, storage id or data key, and it
// never reaches a later incarnation of the tenant.
func (p *Plane) UpdateTenant(ctx context.Context, id tenant.ID, change func(*Tenant) error) (Tenant, error) {
	for range maxUpdateAttempts {
		old, ok := p.tenant(id)
		if !ok {
			return Tenant{}, fmt.Errorf("%w: tenant %s", kind.NotFound, id)
		}
		t := old.clone()
		if err := change(&t); err != nil {
			return Tenant{}, err
		}
		t.ID, t.StorageID, t.WrappedKey, t.CreatedAt = old.ID, old.StorageID, old.WrappedKey, old.CreatedAt
		t.StoreAtProvision = old.StoreAtProvision
		if err := validate(t); err != nil {
			return Tenant{}, err
		}
		cfg, err := encodeConfig(t)
		if err != nil {
			return Tenant{}, fmt.Errorf("encode tenant: %w", err)
		}
		updated, retry, err := p.storeUpdate(ctx, old, t, cfg)
		if !retry {
			return updated, err
		}
	}
	return Tenant{}, fmt.Errorf("%w: tenant %s kept changing during the update", kind.Conflict, id)
}

// storeUpdate writes t if the stored tenant is still old, and reports
// whether the caller must retry because it is not.
func (p *Plane) storeUpdate(ctx context.Context, old, t Tenant, cfg string) (Tenant, bool, error) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	cur, ok := p.tenant(t.ID)
	if !ok {
		return Tenant{}, false, fmt.Errorf("%w: tenant %s", kind.NotFound, t.ID)
	}
	if cur.revision != old.revision || cur.StorageID != old.StorageID {
		return Tenant{}, true, nil
	}
	t.UpdatedAt = p.stamp()
	t.revision = old.revision + 1
	v, err := p.be.updateTenant(ctx, t, cfg, old.revision)
	if errors.Is(err, errMissing) {
		// Another replica changed or replaced it: take its version, retry.
		return Tenant{}, true, p.refresh(ctx, t.ID)
	}
	if err != nil {
		return Tenant{}, false, fmt.Errorf("update tenant %s: %w", t.ID, err)
	}
	p.mu.Lock()
	p.tenants[t.ID] = t
	p.mu.Unlock()
	p.committed(v)
	return t.clone(), false, nil
}

// DeleteTenant removes the tenant and all its keys, effective immediately for
// authentication. The caller removes the tenant's data using the returned
// storage id.
func (p *Plane) DeleteTenant(ctx context.Context, id tenant.ID) (Tenant, error) {
	return p.deleteTenant(ctx, id, "")
}

// DeleteIncarnation is DeleteTenant for incarnation inc only: a tenant
// deleted and created again meanwhile is not found.
func (p *Plane) DeleteIncarnation(ctx context.Context, inc tenant.Incarnation) (Tenant, error) {
	if inc.Storage() == "" {
		return Tenant{}, fmt.Errorf("%w: tenant %s", kind.NotFound, inc.Tenant())
	}
	return p.deleteTenant(ctx, inc.Tenant(), inc.Storage())
}

// deleteTenant deletes what the database holds, which may be newer than
// the snapshot: the returned tenant is the one whose data must go.
func (p *Plane) deleteTenant(ctx context.Context, id tenant.ID, storageID string) (Tenant, error) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	t, v, err := p.be.deleteTenant(ctx, id, storageID)
	if errors.Is(err, errMissing) {
		return Tenant{}, errors.Join(fmt.Errorf("%w: tenant %s", kind.NotFound, id), p.refresh(ctx, id))
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("delete tenant %s: %w", id, err)
	}
	p.mu.Lock()
	p.dropTenant(id)
	p.mu.Unlock()
	p.committed(v)
	return t, nil
}

// dropTenant removes id, its keys and its tools from the snapshot. The
// caller holds wmu and mu.
func (p *Plane) dropTenant(id tenant.ID) {
	delete(p.tenants, id)
	maps.DeleteFunc(p.tools, func(_ string, t *tools.Tool) bool { return t.Owner == id })
	maps.DeleteFunc(p.keys, func(_ tenant.KeyID, k keyEntry) bool { return k.tenant == id })
}

// AddKey records a new API key for the tenant, unnamed and without expiry.
// Only its hash is stored.
func (p *Plane) AddKey(ctx context.Context, id tenant.ID, keyID tenant.KeyID, hash auth.KeyHash) error {
	return p.AddKeyWith(ctx, id, keyID, hash, KeyOptions{})
}

// AddKeyWith records a new API key for the tenant with a name and expiry.
// Only its hash is stored.
func (p *Plane) AddKeyWith(ctx context.Context, id tenant.ID, keyID tenant.KeyID, hash auth.KeyHash, opts KeyOptions) error {
	if err := opts.valid(); err != nil {
		return err
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	v, err := p.be.addKey(ctx, id, keyID, hash, opts, p.stamp())
	if errors.Is(err, errMissing) {
		return errors.Join(fmt.Errorf("%w: tenant %s", kind.NotFound, id), p.refresh(ctx, id))
	}
	if err != nil {
		return fmt.Errorf("add api key for %s: %w", id, err)
	}
	p.mu.Lock()
	p.keys[keyID] = keyEntry{tenant: id, hash: hash, expires: opts.ExpiresAt}
	p.mu.Unlock()
	p.committed(v)
	return nil
}

// RevokeKey revokes one of the tenant's keys, effective immediately. A key of
// another tenant is reported as not found.
func (p *Plane) RevokeKey(ctx context.Context, id tenant.ID, keyID tenant.KeyID) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	v, err := p.be.revokeKey(ctx, id, keyID, p.stamp())
	if errors.Is(err, errMissing) {
		notFound := fmt.Errorf("%w: key %s", kind.NotFound, keyID)
		p.mu.RLock()
		k, ok := p.keys[keyID]
		p.mu.RUnlock()
		if ok && k.tenant == id {
			// The snapshot still has a key the database does not.
			return errors.Join(notFound, p.refresh(ctx, id))
		}
		return notFound
	}
	if err != nil {
		return fmt.Errorf("revoke api key %s: %w", keyID, err)
	}
	p.mu.Lock()
	delete(p.keys, keyID)
	p.mu.Unlock()
	p.committed(v)
	return nil
}

// Keys returns the tenant's API keys, revoked ones too, oldest first. They
// are read from the database, so a key another replica issued is there.
func (p *Plane) Keys(ctx context.Context, id tenant.ID) ([]Key, error) {
	if _, ok := p.tenant(id); !ok {
		return nil, fmt.Errorf("%w: tenant %s", kind.NotFound, id)
	}
	keys, err := p.be.keys(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("list api keys of %s: %w", id, err)
	}
	p.keyUse.merge(keys)
	return keys, nil
}

// confirmFresh records that the snapshot is known to be current now.
func (p *Plane) confirmFresh() {
	p.freshUntil.Store(time.Now().Add(p.maxStale).UnixNano())
}

// fresh reports whether the snapshot may still be trusted: a replica that
// lost sight of the database for longer than maxStale cannot know which
// keys the others revoked, so it fails closed.
func (p *Plane) fresh() bool {
	return p.maxStale == 0 || time.Now().UnixNano() < p.freshUntil.Load()
}

// KeyRecord implements auth.Keys. A replica that has not heard from the
// database for longer than PostgresOptions.MaxStaleness finds no key.
func (p *Plane) KeyRecord(id tenant.KeyID) (auth.KeyRecord, bool) {
	if !p.fresh() {
		return auth.KeyRecord{}, false
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	k, ok := p.keys[id]
	if !ok {
		return auth.KeyRecord{}, false
	}
	t, ok := p.tenants[k.tenant]
	if !ok {
		return auth.KeyRecord{}, false
	}
	return auth.KeyRecord{Tenant: k.tenant, Incarnation: t.Incarnation(), Hash: k.hash, Status: t.Status, ExpiresAt: k.expires}, true
}

// current returns the tenant whose current incarnation is inc. A deleted
// tenant, or an earlier life of a re-created one, is unknown: a request
// authenticated before the delete must not reach the new tenant.
func (p *Plane) current(inc tenant.Incarnation) (Tenant, error) {
	t, ok := p.tenant(inc.Tenant())
	if !ok || t.Incarnation() != inc {
		return Tenant{}, fmt.Errorf("%w: %s", store.ErrUnknownTenant, inc.Tenant())
	}
	return t, nil
}

// Current reports, as an error, whether inc is its tenant's current
// incarnation.
func (p *Plane) Current(_ context.Context, inc tenant.Incarnation) error {
	_, err := p.current(inc)
	return err
}

// StorageID implements the tenant stores' locator: it fails for a tenant that
// does not exist, or for an incarnation that is no longer current, so no
// store is ever opened for either.
func (p *Plane) StorageID(_ context.Context, inc tenant.Incarnation) (string, error) {
	t, err := p.current(inc)
	if err != nil {
		return "", err
	}
	return t.StorageID, nil
}

// StoreMadeAtProvision reports whether incarnation inc's store was made
// when it was provisioned (see Tenant.StoreAtProvision).
func (p *Plane) StoreMadeAtProvision(inc tenant.Incarnation) bool {
	t, err := p.current(inc)
	return err == nil && t.StoreAtProvision
}

// StorageIDs returns the storage ids of every tenant, for removing storage
// that no tenant owns any more (a delete cut short by a crash).
func (p *Plane) StorageIDs() map[string]bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make(map[string]bool, len(p.tenants))
	for _, t := range p.tenants {
		out[t.StorageID] = true
	}
	return out
}

// DeletedIncarnations lists the deleted incarnations whose data may still be
// stored: those ForgetDeleted was not called for since their delete (a
// crash, or a failed drop, came between). The SQLite backend keeps none: a
// deleted tenant's directory is found by listing (sqlite.DB.DropOrphans).
func (p *Plane) DeletedIncarnations(ctx context.Context) ([]tenant.Incarnation, error) {
	ts, ok := p.be.(tombstones)
	if !ok {
		return nil, nil
	}
	incs, err := ts.deletedStores(ctx)
	if err != nil {
		return nil, fmt.Errorf("list deleted tenants' stores: %w", err)
	}
	return incs, nil
}

// ForgetDeleted records that deleted incarnation inc's data is gone.
func (p *Plane) ForgetDeleted(ctx context.Context, inc tenant.Incarnation) error {
	ts, ok := p.be.(tombstones)
	if !ok {
		return nil
	}
	if err := ts.forgetDeleted(ctx, inc.Storage()); err != nil {
		return fmt.Errorf("forget the deleted store of %s: %w", inc.Tenant(), err)
	}
	return nil
}

// WrappedKey implements keyring.WrappedKeys. A deleted tenant, or an earlier
// incarnation, has none.
func (p *Plane) WrappedKey(_ context.Context, inc tenant.Incarnation) ([]byte, error) {
	t, err := p.current(inc)
	if err != nil {
		return nil, err
	}
	return t.WrappedKey, nil
}

// RotateKEK rewraps every tenant's data key under next in one transaction and
// makes next the KEK. Data encrypted under the data keys is not touched.
// Servers running on the old KEK must be restarted with the new one.
func (p *Plane) RotateKEK(ctx context.Context, next keyring.KEK) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	check, err := next.Wrap(ctx, kekCheckPlain, kekCheckAAD)
	if err != nil {
		return fmt.Errorf("rotate master key: %w", err)
	}
	rewrapped, v, err := p.be.rotate(ctx, p.check, check, func(id tenant.ID, wrapped []byte) ([]byte, error) {
		dataKey, err := keyring.UnwrapKey(ctx, p.kek, id, wrapped)
		if err != nil {
			return nil, err
		}
		defer clear(dataKey)
		return keyring.WrapKey(ctx, next, id, dataKey)
	})
	if err != nil {
		return fmt.Errorf("rotate master key: %w", err)
	}
	p.kek, p.check = next, check
	p.mu.Lock()
	var stale []tenant.ID
	for id, t := range p.tenants {
		w, ok := rewrapped[t.Incarnation()]
		if !ok {
			stale = append(stale, id)
			continue
		}
		t.WrappedKey = w
		p.tenants[id] = t
	}
	p.mu.Unlock()
	p.committed(v)
	var errs []error
	for _, id := range stale {
		errs = append(errs, p.refresh(ctx, id))
	}
	return errors.Join(errs...)
}

// refresh replaces what the snapshot holds of tenant id with what the
// database holds. The caller holds wmu.
func (p *Plane) refresh(ctx context.Context, id tenant.ID) error {
	part, err := p.be.loadTenant(ctx, id)
	if err != nil {
		return fmt.Errorf("reload tenant %s: %w", id, err)
	}
	p.replace(part, func(t tenant.ID) bool { return t == id }, func(t *tools.Tool) bool { return t.Owner == id })
	return nil
}

// reloadAll replaces the whole snapshot with the database's. The caller
// holds wmu.
func (p *Plane) reloadAll(ctx context.Context) error {
	snap, err := p.be.load(ctx)
	if err != nil {
		return err
	}
	if !bytes.Equal(snap.check, p.check) {
		if p.verifies(ctx, snap.check) {
			p.check = snap.check // a KEK that opens both (a KMS key with versions)
		} else {
			p.logger.ErrorContext(ctx, "the master key was rotated by another server; restart this one with the new master key")
		}
		p.hooks.push(Change{KEKRotated: true})
	}
	all := func(tenant.ID) bool { return true }
	p.replace(snap, all, func(*tools.Tool) bool { return true })
	p.version = snap.version
	return nil
}

// replace swaps the part of the snapshot that inTenant and inTool select for
// part, and queues the difference for the OnChange hooks. The caller holds
// wmu.
func (p *Plane) replace(part snapshot, inTenant func(tenant.ID) bool, inTool func(*tools.Tool) bool) {
	var ch Change
	p.mu.Lock()
	for id, old := range p.tenants {
		if !inTenant(id) {
			continue
		}
		t, ok := part.tenants[id]
		if !ok || t.StorageID != old.StorageID {
			ch.Ended = append(ch.Ended, old.Incarnation())
		}
		if !ok || t.StorageID != old.StorageID || t.revision != old.revision || !bytes.Equal(t.WrappedKey, old.WrappedKey) {
			ch.Tenants = append(ch.Tenants, id)
		}
		if !ok {
			delete(p.tenants, id)
		}
	}
	for id, t := range part.tenants {
		if _, ok := p.tenants[id]; !ok {
			ch.Tenants = append(ch.Tenants, id)
		}
		p.tenants[id] = t
	}
	for kid, k := range p.keys {
		if !inTenant(k.tenant) {
			continue
		}
		if n, ok := part.keys[kid]; !ok || n != k {
			ch.RevokedKeys = append(ch.RevokedKeys, kid)
			delete(p.keys, kid)
		}
	}
	maps.Copy(p.keys, part.keys)
	for name, old := range p.tools {
		if !inTool(old) {
			continue
		}
		if t, ok := part.tools[name]; !ok || !sameTool(t, old) {
			ch.Tools = append(ch.Tools, name)
			delete(p.tools, name)
		}
	}
	for name, t := range part.tools {
		if _, ok := p.tools[name]; !ok {
			ch.Tools = append(ch.Tools, name)
		}
		p.tools[name] = t
	}
	p.mu.Unlock()
	if !ch.empty() {
		slices.SortFunc(ch.Tenants, compareIDs)
		ch.Tenants = slices.Compact(ch.Tenants)
		slices.Sort(ch.Ended)
		slices.Sort(ch.RevokedKeys)
		slices.Sort(ch.Tools)
		ch.Tools = slices.Compact(ch.Tools)
		p.hooks.push(ch)
	}
}

// sameTool reports whether two catalog entries have the same definition.
func sameTool(a, b *tools.Tool) bool {
	if a == b {
		return true
	}
	ja, errA := json.Marshal(a.Definition)
	jb, errB := json.Marshal(b.Definition)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

// hookQueue delivers Changes to the OnChange hooks in order, from one
// goroutine, so no hook runs while the Plane holds a lock.
type hookQueue struct {
	mu      sync.Mutex
	hooks   []func(Change)
	pending []Change
	wake    chan struct{}
	done    chan struct{}
	stopped chan struct{}
	logger  *slog.Logger
}

func (q *hookQueue) start(logger *slog.Logger) {
	q.wake, q.done, q.stopped, q.logger = make(chan struct{}, 1), make(chan struct{}), make(chan struct{}), logger
	go q.run()
}

func (q *hookQueue) add(f func(Change)) {
	q.mu.Lock()
	q.hooks = append(q.hooks, f)
	q.mu.Unlock()
}

func (q *hookQueue) push(ch Change) {
	q.mu.Lock()
	q.pending = append(q.pending, ch)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *hookQueue) run() {
	defer close(q.stopped)
	for {
		select {
		case <-q.done:
			return
		case <-q.wake:
		}
		q.mu.Lock()
		pending, hooks := q.pending, slices.Clone(q.hooks)
		q.pending = nil
		q.mu.Unlock()
		for _, ch := range pending {
			for _, f := range hooks {
				f(ch)
			}
		}
	}
}

func (q *hookQueue) stop() {
	close(q.done)
	<-q.stopped
}

func newStorageID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate storage id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Size limits on what a tenant definition may hold.
const (
	maxNameLen         = 200
	maxSystemPromptLen = 64 << 10
	maxProfiles        = 64
	maxTools           = 128
	maxFallbacks       = 4 // agent.MaxFallbacks
	maxModels          = 32
	maxPolicyLen       = 64 << 10
)

func validate(t Tenant) error {
	if _, err := tenant.ParseID(string(t.ID)); err != nil {
		return fmt.Errorf("%w: %w", kind.Invalid, err)
	}
	if len(t.Name) > maxNameLen {
		return fmt.Errorf("%w: name longer than %d bytes", kind.Invalid, maxNameLen)
	}
	if t.Status != "" {
		if _, err := tenant.ParseStatus(string(t.Status)); err != nil {
			return fmt.Errorf("%w: %w", kind.Invalid, err)
		}
	}
	if _, ok := t.Profiles[DefaultProfile]; !ok {
		return fmt.Errorf("%w: the %q profile is required", kind.Invalid, DefaultProfile)
	}
	if len(t.Profiles) > maxProfiles {
		return fmt.Errorf("%w: more than %d profiles", kind.Invalid, maxProfiles)
	}
	for name, pr := range t.Profiles {
		if _, err := tenant.ParseID(name); err != nil {
			return fmt.Errorf("%w: profile name %q: must be 1-63 of [a-z0-9_-]", kind.Invalid, name)
		}
		if pr.Model == "" {
			return fmt.Errorf("%w: profile %q: model is required", kind.Invalid, name)
		}
		if len(pr.SystemPrompt) > maxSystemPromptLen {
			return fmt.Errorf("%w: profile %q: system prompt longer than %d bytes", kind.Invalid, name, maxSystemPromptLen)
		}
		if pr.APIKeySecret != "" {
			if _, err := tenant.ParseSecretName(pr.APIKeySecret); err != nil {
				return fmt.Errorf("%w: profile %q: api_key_secret: %w", kind.Invalid, name, err)
			}
		}
		if len(pr.Fallbacks) > maxFallbacks {
			return fmt.Errorf("%w: profile %q: more than %d fallbacks", kind.Invalid, name, maxFallbacks)
		}
		if len(pr.Models) > maxModels {
			return fmt.Errorf("%w: profile %q: more than %d models", kind.Invalid, name, maxModels)
		}
		for _, m := range pr.Models {
			if provider, model, ok := strings.Cut(m, "/"); !ok || provider == "" || model == "" {
				return fmt.Errorf("%w: profile %q: models: %q is not \"provider/model\"", kind.Invalid, name, m)
			}
		}
		if len(pr.Tools) > maxTools {
			return fmt.Errorf("%w: profile %q: more than %d tools", kind.Invalid, name, maxTools)
		}
	}
	if len(t.Policy) > maxPolicyLen {
		return fmt.Errorf("%w: policy longer than %d bytes", kind.Invalid, maxPolicyLen)
	}
	if len(t.AllowedHosts) > 256 {
		return fmt.Errorf("%w: more than 256 allowed hosts", kind.Invalid)
	}
	if err := validateIssuers(t.Issuers); err != nil {
		return err
	}
	if err := validateOrigins(t.CORSOrigins); err != nil {
		return err
	}
	if t.Limits.RequestsPerMinute < 0 || t.Limits.TokensPerMinute < 0 || t.Limits.MaxConcurrent < 0 ||
		t.Limits.TokenBudget < 0 || t.Limits.BudgetPeriodHours < 0 {
		return fmt.Errorf("%w: limits must not be negative", kind.Invalid)
	}
	for _, b := range []struct {
		name string
		usd  float64
	}{{"spend_per_day_usd", t.Limits.SpendPerDayUSD}, {"end_user_spend_per_day_usd", t.Limits.EndUserSpendPerDayUSD}} {
		// A budget that rounds to no micro-dollar would mean "unlimited".
		if math.IsNaN(b.usd) || b.usd < 0 || b.usd > MaxSpendPerDayUSD || (b.usd > 0 && MicroUSD(b.usd) == 0) {
			return fmt.Errorf("%w: limits: %s must be 0 (unlimited) or between $0.000001 and $%.0f", kind.Invalid, b.name, float64(MaxSpendPerDayUSD))
		}
	}
	return nil
}
