// Package control is the control plane: tenants, their agent profiles and
// limits, and API keys. It is durable in SQLite and served from an in-memory
// snapshot, so authenticating a request never touches the disk.
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
	"net/url"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

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
	SystemPrompt string   `json:"system_prompt"`
	Model        string   `json:"model"`
	Tools        []string `json:"tools"`
	// APIKeySecret names the tenant secret holding the model provider's key
	// (bring your own key); empty means the provider's own setting.
	APIKeySecret string `json:"api_key_secret,omitempty"`
	// NoCache turns the response cache off for this profile.
	NoCache bool `json:"no_cache,omitempty"`
	// CacheToolAnswers lets answers that involved tool calls be cached too.
	CacheToolAnswers bool `json:"cache_tool_answers,omitempty"`
}

// Limits bounds a tenant's use of shared capacity. Zero means unlimited.
type Limits struct {
	RequestsPerMinute int `json:"requests_per_minute,omitempty"`
	TokensPerMinute   int `json:"tokens_per_minute,omitempty"`
	MaxConcurrent     int `json:"max_concurrent,omitempty"`
	// TokenBudget caps tokens per BudgetPeriodHours (default 720, 30 days).
	TokenBudget       int64 `json:"token_budget,omitempty"`
	BudgetPeriodHours int   `json:"budget_period_hours,omitempty"`
}

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
	Embedder  string
	StorageID string // opaque name of the tenant's data directory
	// WrappedKey is the tenant's data key wrapped by the KEK; deleting the
	// tenant destroys it.
	WrappedKey []byte
	CreatedAt  time.Time
	UpdatedAt  time.Time

	revision uint64 // counts updates in this process, for UpdateTenant
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
	for name, p := range t.Profiles {
		p.Tools = slices.Clone(p.Tools)
		t.Profiles[name] = p
	}
	return t
}

type keyEntry struct {
	tenant tenant.ID
	hash   auth.KeyHash
}

// Plane is the control plane. It is safe for concurrent use.
type Plane struct {
	db     *sql.DB
	logger *slog.Logger
	now    func() time.Time
	kek    keyring.KEK // guarded by mu: rotation replaces it

	// mu guards the snapshot; writers hold it across the database write so the
	// snapshot never disagrees with what is committed.
	mu      sync.RWMutex
	tenants map[tenant.ID]Tenant
	keys    map[tenant.KeyID]keyEntry
	tools   map[string]*tools.Tool
}

//go:embed migrations/*.sql
var migrations embed.FS

// ErrWrongMasterKey means the KEK is not the one the data directory was
// created with.
var ErrWrongMasterKey = errors.New("the master key does not match this data directory (check BULKHEAD_MASTER_KEY or DATA/master_key)")

// Open opens (creating and migrating) the control database at path. It fails
// if kek is not the key the database was created with.
func Open(ctx context.Context, path string, kek keyring.KEK, logger *slog.Logger) (*Plane, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// A file: URI, so no character of path can be read as a parameter.
	// synchronous(FULL): in WAL mode NORMAL does not fsync at commit, and an
	// acknowledged change (a revoked key, a deleted tenant) must survive a
	// power loss.
	dsn := (&url.URL{Scheme: "file", Path: filepath.ToSlash(path), RawQuery: url.Values{
		"_pragma": {"busy_timeout(5000)", "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(ON)"},
		"_txlock": {"immediate"},
	}.Encode()}).String()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open control database: %w", err)
	}
	db.SetMaxOpenConns(1) // one writer; reads are served from memory
	p := &Plane{db: db, logger: logger, now: time.Now, kek: kek,
		tenants: map[tenant.ID]Tenant{}, keys: map[tenant.KeyID]keyEntry{}, tools: map[string]*tools.Tool{}}
	if err := p.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := p.checkKEK(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := p.load(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := p.loadTools(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return p, nil
}

func (p *Plane) migrate(ctx context.Context) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("open control migrations: %w", err)
	}
	prov, err := goose.NewProvider(goose.DialectSQLite3, p.db, fsys)
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

// checkKEK verifies the KEK against the stored check value, writing one on
// first start.
func (p *Plane) checkKEK(ctx context.Context) error {
	var check []byte
	err := p.db.QueryRowContext(ctx, `SELECT check_value FROM keyring WHERE id = 1`).Scan(&check)
	if errors.Is(err, sql.ErrNoRows) {
		if check, err = p.kek.Wrap(ctx, kekCheckPlain, kekCheckAAD); err != nil {
			return fmt.Errorf("write key check: %w", err)
		}
		if _, err := p.db.ExecContext(ctx, `INSERT INTO keyring (id, check_value) VALUES (1, ?)`, check); err != nil {
			return fmt.Errorf("write key check: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("read key check: %w", err)
	}
	if plain, err := p.kek.Unwrap(ctx, check, kekCheckAAD); err != nil || !bytes.Equal(plain, kekCheckPlain) {
		return ErrWrongMasterKey
	}
	return nil
}

func (p *Plane) load(ctx context.Context) error {
	rows, err := p.db.QueryContext(ctx, `SELECT id, name, status, storage_id, config, wrapped_key, policy, created_at, updated_at FROM tenants`)
	if err != nil {
		return fmt.Errorf("load tenants: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var t Tenant
		var cfg, created, updated string
		if err := rows.Scan(&t.ID, &t.Name, &t.Status, &t.StorageID, &cfg, &t.WrappedKey, &t.Policy, &created, &updated); err != nil {
			return fmt.Errorf("load tenants: %w", err)
		}
		if err := decodeConfig(cfg, &t); err != nil {
			return fmt.Errorf("load tenant %s: %w", t.ID, err)
		}
		t.CreatedAt, _ = time.Parse(time.RFC3339Nano, created)
		t.UpdatedAt, _ = time.Parse(time.RFC3339Nano, updated)
		p.tenants[t.ID] = t
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load tenants: %w", err)
	}
	krows, err := p.db.QueryContext(ctx, `SELECT id, tenant_id, hash FROM api_keys WHERE revoked_at IS NULL`)
	if err != nil {
		return fmt.Errorf("load api keys: %w", err)
	}
	defer krows.Close()
	for krows.Next() {
		var id tenant.KeyID
		var e keyEntry
		var hash []byte
		if err := krows.Scan(&id, &e.tenant, &hash); err != nil {
			return fmt.Errorf("load api keys: %w", err)
		}
		if len(hash) != len(e.hash) {
			return fmt.Errorf("load api key %s: bad hash length", id)
		}
		copy(e.hash[:], hash)
		p.keys[id] = e
	}
	return krows.Err()
}

// Close closes the database.
func (p *Plane) Close() error { return p.db.Close() }

type storedConfig struct {
	Profiles     map[string]Profile `json:"profiles"`
	Limits       Limits             `json:"limits"`
	AllowedHosts []string           `json:"allowed_hosts,omitempty"`
	Canaries     []string           `json:"canaries,omitempty"`
	Embedder     string             `json:"embedder,omitempty"`
}

func encodeConfig(t Tenant) (string, error) {
	b, err := json.Marshal(storedConfig{Profiles: t.Profiles, Limits: t.Limits, AllowedHosts: t.AllowedHosts, Canaries: t.Canaries, Embedder: t.Embedder})
	return string(b), err
}

func decodeConfig(s string, t *Tenant) error {
	var c storedConfig
	if err := json.Unmarshal([]byte(s), &c); err != nil {
		return err
	}
	t.Profiles, t.Limits, t.AllowedHosts, t.Canaries, t.Embedder = c.Profiles, c.Limits, c.AllowedHosts, c.Canaries, c.Embedder
	return nil
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
	t.CreatedAt = p.now().UTC()
	t.UpdatedAt = t.CreatedAt
	t = t.clone()
	cfg, err := encodeConfig(t)
	if err != nil {
		return Tenant{}, fmt.Errorf("encode tenant: %w", err)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.tenants[t.ID]; ok {
		return Tenant{}, fmt.Errorf("%w: tenant %s", kind.Conflict, t.ID)
	}
	if t.WrappedKey, err = keyring.WrapKey(ctx, p.kek, t.ID, dataKey); err != nil {
		return Tenant{}, err
	}
	clear(dataKey)
	ts := t.CreatedAt.Format(time.RFC3339Nano)
	if _, err := p.db.ExecContext(ctx,
		`INSERT INTO tenants (id, name, status, storage_id, config, wrapped_key, policy, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.ID, t.Name, t.Status, t.StorageID, cfg, t.WrappedKey, t.Policy, ts, ts); err != nil {
		return Tenant{}, fmt.Errorf("create tenant %s: %w", t.ID, err)
	}
	p.tenants[t.ID] = t
	return t.clone(), nil
}

// Tenant returns the tenant with the given id.
func (p *Plane) Tenant(id tenant.ID) (Tenant, error) {
	p.mu.RLock()
	t, ok := p.tenants[id]
	p.mu.RUnlock()
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

// UpdateTenant applies change to a copy of the tenant and stores the result.
// change runs without the plane's lock held (it may read the plane); if the
// tenant changed meanwhile, it runs again on the new version. It cannot alter
// the id, storage id or data key.
func (p *Plane) UpdateTenant(ctx context.Context, id tenant.ID, change func(*Tenant) error) (Tenant, error) {
	for {
		p.mu.RLock()
		old, ok := p.tenants[id]
		p.mu.RUnlock()
		if !ok {
			return Tenant{}, fmt.Errorf("%w: tenant %s", kind.NotFound, id)
		}
		t := old.clone()
		if err := change(&t); err != nil {
			return Tenant{}, err
		}
		t.ID, t.StorageID, t.WrappedKey, t.CreatedAt = old.ID, old.StorageID, old.WrappedKey, old.CreatedAt
		if err := validate(t); err != nil {
			return Tenant{}, err
		}
		cfg, err := encodeConfig(t)
		if err != nil {
			return Tenant{}, fmt.Errorf("encode tenant: %w", err)
		}
		updated, retry, err := p.storeUpdate(ctx, old.revision, t, cfg)
		if !retry {
			return updated, err
		}
	}
}

// storeUpdate writes t if the stored tenant is still at revision, and
// reports whether the caller must retry because it is not.
func (p *Plane) storeUpdate(ctx context.Context, revision uint64, t Tenant, cfg string) (Tenant, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur, ok := p.tenants[t.ID]
	if !ok {
		return Tenant{}, false, fmt.Errorf("%w: tenant %s", kind.NotFound, t.ID)
	}
	if cur.revision != revision {
		return Tenant{}, true, nil
	}
	t.UpdatedAt = p.now().UTC()
	if _, err := p.db.ExecContext(ctx,
		`UPDATE tenants SET name = ?, status = ?, config = ?, policy = ?, updated_at = ? WHERE id = ?`,
		t.Name, t.Status, cfg, t.Policy, t.UpdatedAt.Format(time.RFC3339Nano), t.ID); err != nil {
		return Tenant{}, false, fmt.Errorf("update tenant %s: %w", t.ID, err)
	}
	t.revision = revision + 1
	p.tenants[t.ID] = t
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
	return p.deleteTenant(ctx, inc.Tenant(), inc)
}

func (p *Plane) deleteTenant(ctx context.Context, id tenant.ID, inc tenant.Incarnation) (Tenant, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.tenants[id]
	if !ok || (inc != "" && t.Incarnation() != inc) {
		return Tenant{}, fmt.Errorf("%w: tenant %s", kind.NotFound, id)
	}
	if _, err := p.db.ExecContext(ctx, `DELETE FROM tenants WHERE id = ?`, id); err != nil {
		return Tenant{}, fmt.Errorf("delete tenant %s: %w", id, err)
	}
	delete(p.tenants, id)
	for name, t := range p.tools {
		if t.Owner == id {
			delete(p.tools, name)
		}
	}
	for kid, k := range p.keys {
		if k.tenant == id {
			delete(p.keys, kid)
		}
	}
	return t, nil
}

// AddKey records a new API key for the tenant. Only its hash is stored.
func (p *Plane) AddKey(ctx context.Context, id tenant.ID, keyID tenant.KeyID, hash auth.KeyHash) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.tenants[id]; !ok {
		return fmt.Errorf("%w: tenant %s", kind.NotFound, id)
	}
	if _, err := p.db.ExecContext(ctx,
		`INSERT INTO api_keys (id, tenant_id, hash, created_at) VALUES (?, ?, ?, ?)`,
		keyID, id, hash[:], p.now().UTC().Format(time.RFC3339Nano)); err != nil {
		return fmt.Errorf("add api key for %s: %w", id, err)
	}
	p.keys[keyID] = keyEntry{tenant: id, hash: hash}
	return nil
}

// RevokeKey revokes one of the tenant's keys, effective immediately. A key of
// another tenant is reported as not found.
func (p *Plane) RevokeKey(ctx context.Context, id tenant.ID, keyID tenant.KeyID) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	k, ok := p.keys[keyID]
	if !ok || k.tenant != id {
		return fmt.Errorf("%w: key %s", kind.NotFound, keyID)
	}
	if _, err := p.db.ExecContext(ctx,
		`UPDATE api_keys SET revoked_at = ? WHERE id = ? AND tenant_id = ?`,
		p.now().UTC().Format(time.RFC3339Nano), keyID, id); err != nil {
		return fmt.Errorf("revoke api key %s: %w", keyID, err)
	}
	delete(p.keys, keyID)
	return nil
}

// KeyRecord implements auth.Keys.
func (p *Plane) KeyRecord(id tenant.KeyID) (auth.KeyRecord, bool) {
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
	return auth.KeyRecord{Tenant: k.tenant, Incarnation: t.Incarnation(), Hash: k.hash, Status: t.Status}, true
}

// current returns the tenant whose current incarnation is inc. A deleted
// tenant, or an earlier life of a re-created one, is unknown: a request
// authenticated before the delete must not reach the new tenant.
func (p *Plane) current(inc tenant.Incarnation) (Tenant, error) {
	p.mu.RLock()
	t, ok := p.tenants[inc.Tenant()]
	p.mu.RUnlock()
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
	p.mu.Lock()
	defer p.mu.Unlock()
	tx, err := p.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("rotate master key: %w", err)
	}
	defer tx.Rollback()
	rewrapped := make(map[tenant.ID][]byte, len(p.tenants))
	for id, t := range p.tenants {
		dataKey, err := keyring.UnwrapKey(ctx, p.kek, id, t.WrappedKey)
		if err != nil {
			return fmt.Errorf("rotate master key: %w", err)
		}
		w, err := keyring.WrapKey(ctx, next, id, dataKey)
		clear(dataKey)
		if err != nil {
			return fmt.Errorf("rotate master key: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE tenants SET wrapped_key = ? WHERE id = ?`, w, id); err != nil {
			return fmt.Errorf("rotate master key: %w", err)
		}
		rewrapped[id] = w
	}
	check, err := next.Wrap(ctx, kekCheckPlain, kekCheckAAD)
	if err != nil {
		return fmt.Errorf("rotate master key: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE keyring SET check_value = ? WHERE id = 1`, check); err != nil {
		return fmt.Errorf("rotate master key: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("rotate master key: %w", err)
	}
	for id, w := range rewrapped {
		t := p.tenants[id]
		t.WrappedKey = w
		p.tenants[id] = t
	}
	p.kek = next
	return nil
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
	if t.Limits.RequestsPerMinute < 0 || t.Limits.TokensPerMinute < 0 || t.Limits.MaxConcurrent < 0 ||
		t.Limits.TokenBudget < 0 || t.Limits.BudgetPeriodHours < 0 {
		return fmt.Errorf("%w: limits must not be negative", kind.Invalid)
	}
	return nil
}
