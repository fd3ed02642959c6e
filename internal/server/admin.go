package server

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/audit"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/guard"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/lifecycle"
	"github.com/bulkhead-ai/bulkhead/internal/memory"
	"github.com/bulkhead-ai/bulkhead/internal/redact"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// profileBody is one agent profile as the admin API takes it.
type profileBody struct {
	SystemPrompt     string   `json:"system_prompt"`
	Model            string   `json:"model"`
	Fallbacks        []string `json:"fallbacks,omitempty"`
	Models           []string `json:"models,omitempty"`
	Tools            []string `json:"tools"`
	APIKeySecret     string   `json:"api_key_secret,omitempty"`
	NoCache          bool     `json:"no_cache,omitempty"`
	CacheToolAnswers bool     `json:"cache_tool_answers,omitempty"`
	// ClientTools false refuses requests that declare their own tools;
	// absent or true lets them.
	ClientTools *bool `json:"client_tools,omitempty"`
}

func (p profileBody) profile() control.Profile {
	return control.Profile{SystemPrompt: p.SystemPrompt, Model: p.Model, Fallbacks: p.Fallbacks, Models: p.Models, Tools: p.Tools,
		APIKeySecret: p.APIKeySecret, NoCache: p.NoCache, CacheToolAnswers: p.CacheToolAnswers,
		NoClientTools: p.ClientTools != nil && !*p.ClientTools}
}

func viewProfile(p control.Profile) profileBody {
	return profileBody{SystemPrompt: p.SystemPrompt, Model: p.Model, Fallbacks: p.Fallbacks, Models: p.Models, Tools: nonNil(p.Tools),
		APIKeySecret: p.APIKeySecret, NoCache: p.NoCache, CacheToolAnswers: p.CacheToolAnswers,
		ClientTools: clientToolsView(p)}
}

// clientToolsView shows whether a profile takes client tools, always.
func clientToolsView(p control.Profile) *bool {
	on := !p.NoClientTools
	return &on
}

// tenantBody is the admin API's tenant definition. Pointers tell "absent"
// from "empty" so PATCH changes only what it names.
type tenantBody struct {
	ID           *string                 `json:"id"`
	Name         *string                 `json:"name"`
	Status       *string                 `json:"status"`
	SystemPrompt *string                 `json:"system_prompt"`
	Model        *string                 `json:"model"`
	Fallbacks    *[]string               `json:"fallbacks"`
	Models       *[]string               `json:"models"`
	Tools        *[]string               `json:"tools"`
	APIKeySecret *string                 `json:"api_key_secret"`
	NoCache      *bool                   `json:"no_cache"`
	CacheTools   *bool                   `json:"cache_tool_answers"`
	ClientTools  *bool                   `json:"client_tools"`
	Profiles     *map[string]profileBody `json:"profiles"`
	Limits       *control.Limits         `json:"limits"`
	AllowedHosts *[]string               `json:"allowed_hosts"`
	Embedder     *string                 `json:"embedder"`
	CORSOrigins  *[]string               `json:"cors_origins"`
}

// fields names the fields b sets, for the audit record of a change: the
// names, never the values (a system prompt is the tenant's content).
func (b tenantBody) fields() []string {
	var out []string
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"name", b.Name != nil}, {"status", b.Status != nil}, {"system_prompt", b.SystemPrompt != nil},
		{"model", b.Model != nil}, {"fallbacks", b.Fallbacks != nil}, {"models", b.Models != nil}, {"tools", b.Tools != nil}, {"api_key_secret", b.APIKeySecret != nil},
		{"no_cache", b.NoCache != nil}, {"cache_tool_answers", b.CacheTools != nil}, {"client_tools", b.ClientTools != nil},
		{"profiles", b.Profiles != nil},
		{"limits", b.Limits != nil}, {"allowed_hosts", b.AllowedHosts != nil}, {"embedder", b.Embedder != nil},
		{"cors_origins", b.CORSOrigins != nil},
	} {
		if f.set {
			out = append(out, f.name)
		}
	}
	return out
}

// tenantView is a tenant as the admin API shows it.
type tenantView struct {
	ID           tenant.ID              `json:"id"`
	Name         string                 `json:"name"`
	Status       tenant.Status          `json:"status"`
	SystemPrompt string                 `json:"system_prompt"`
	Model        string                 `json:"model"`
	Fallbacks    []string               `json:"fallbacks,omitempty"`
	Models       []string               `json:"models,omitempty"`
	Tools        []string               `json:"tools"`
	APIKeySecret string                 `json:"api_key_secret,omitempty"`
	NoCache      bool                   `json:"no_cache,omitempty"`
	CacheTools   bool                   `json:"cache_tool_answers,omitempty"`
	ClientTools  *bool                  `json:"client_tools"`
	Profiles     map[string]profileBody `json:"profiles"`
	Limits       control.Limits         `json:"limits"`
	AllowedHosts []string               `json:"allowed_hosts"`
	Embedder     string                 `json:"embedder,omitempty"`
	CORSOrigins  []string               `json:"cors_origins"`
	CreatedAt    time.Time              `json:"created_at"`
	UpdatedAt    time.Time              `json:"updated_at"`
}

func viewTenant(t control.Tenant) tenantView {
	def := t.Profiles[control.DefaultProfile]
	v := tenantView{ID: t.ID, Name: t.Name, Status: t.Status,
		SystemPrompt: def.SystemPrompt, Model: def.Model, Fallbacks: def.Fallbacks, Models: def.Models, Tools: nonNil(def.Tools), APIKeySecret: def.APIKeySecret,
		NoCache: def.NoCache, CacheTools: def.CacheToolAnswers, ClientTools: clientToolsView(def), AllowedHosts: nonNil(t.AllowedHosts), Embedder: t.Embedder,
		CORSOrigins: nonNil(t.CORSOrigins), Profiles: map[string]profileBody{}, Limits: t.Limits, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt}
	for name, p := range t.Profiles {
		if name != control.DefaultProfile {
			v.Profiles[name] = viewProfile(p)
		}
	}
	return v
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// setIf sets *dst to *src when the field was present in the body.
func setIf[T any](dst *T, src *T) {
	if src != nil {
		*dst = *src
	}
}

// apply copies the fields present in b onto t, filling unset models with the
// default and checking each model names a configured provider.
func (b tenantBody) apply(t *control.Tenant, d Deps) error {
	setIf(&t.Name, b.Name)
	if b.Status != nil {
		s, err := tenant.ParseStatus(*b.Status)
		if err != nil {
			return fmt.Errorf("%w: %w", kind.Invalid, err)
		}
		t.Status = s
	}
	if t.Profiles == nil {
		t.Profiles = map[string]control.Profile{}
	}
	def := t.Profiles[control.DefaultProfile]
	setIf(&def.SystemPrompt, b.SystemPrompt)
	setIf(&def.Model, b.Model)
	setIf(&def.Fallbacks, b.Fallbacks)
	setIf(&def.Models, b.Models)
	setIf(&def.Tools, b.Tools)
	setIf(&def.APIKeySecret, b.APIKeySecret)
	setIf(&def.NoCache, b.NoCache)
	setIf(&def.CacheToolAnswers, b.CacheTools)
	if b.ClientTools != nil {
		def.NoClientTools = !*b.ClientTools
	}
	setIf(&t.AllowedHosts, b.AllowedHosts)
	if b.CORSOrigins != nil {
		origins, err := canonicalOrigins(*b.CORSOrigins)
		if err != nil {
			return err
		}
		t.CORSOrigins = origins
	}
	if b.Embedder != nil {
		if *b.Embedder != "" && d.Embedders != nil && !d.Embedders(*b.Embedder) {
			return fmt.Errorf("%w: no embedder %q is configured", kind.Invalid, *b.Embedder)
		}
		t.Embedder = *b.Embedder
	}
	if b.Profiles != nil {
		if _, ok := (*b.Profiles)[control.DefaultProfile]; ok {
			return fmt.Errorf("%w: define the %q profile with the top-level fields, not under profiles", kind.Invalid, control.DefaultProfile)
		}
		maps.DeleteFunc(t.Profiles, func(string, control.Profile) bool { return true })
		for name, p := range *b.Profiles {
			t.Profiles[name] = p.profile()
		}
	}
	t.Profiles[control.DefaultProfile] = def
	setIf(&t.Limits, b.Limits)
	for name, p := range t.Profiles {
		if p.Model == "" {
			p.Model = d.DefaultModel
			t.Profiles[name] = p
		}
		if _, err := d.Models.Resolve(p.Model); err != nil {
			return fmt.Errorf("%w: profile %q: %w", kind.Invalid, name, err)
		}
		for _, m := range p.Fallbacks {
			if _, err := d.Models.Resolve(m); err != nil {
				return fmt.Errorf("%w: profile %q: fallbacks: %w", kind.Invalid, name, err)
			}
		}
		for _, m := range p.Models {
			if _, err := d.Models.Resolve(m); err != nil {
				return fmt.Errorf("%w: profile %q: models: %w", kind.Invalid, name, err)
			}
		}
		for _, tool := range p.Tools {
			if _, ok := d.Catalog.Tool(tool); !ok {
				return fmt.Errorf("%w: profile %q: no tool %q in the catalog", kind.Invalid, name, tool)
			}
		}
	}
	return nil
}

func handleCreateTenant(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := decode[tenantBody](w, r, d.MaxBodyBytes, true)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		created, err := createTenant(r.Context(), d, body)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		encode(w, http.StatusCreated, viewTenant(created))
	})
}

// createTenant provisions the tenant body defines; the admin API and the
// console both create tenants through it.
func createTenant(ctx context.Context, d Deps, body tenantBody) (control.Tenant, error) {
	if body.ID == nil {
		return control.Tenant{}, fmt.Errorf("%w: id is required", kind.Invalid)
	}
	id, err := tenant.ParseID(*body.ID)
	if err != nil {
		return control.Tenant{}, fmt.Errorf("%w: %w", kind.Invalid, err)
	}
	canary, err := guard.NewCanary()
	if err != nil {
		return control.Tenant{}, err
	}
	t := control.Tenant{ID: id, Name: string(id), Canaries: []string{canary}}
	if err := body.apply(&t, d); err != nil {
		return control.Tenant{}, err
	}
	created, err := d.Lifecycle.Provision(ctx, t)
	if err != nil {
		return control.Tenant{}, err
	}
	d.Logger.InfoContext(ctx, "tenant created", "tenant", created.ID)
	return created, nil
}

func handleListTenants(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		all := d.Tenants.Tenants()
		views := make([]tenantView, 0, len(all))
		for _, t := range all {
			views = append(views, viewTenant(t))
		}
		encode(w, http.StatusOK, map[string]any{"object": "list", "data": views})
	})
}

// pathTenant parses the {tenant} path segment. On the admin API a path names
// the tenant to act on; on the tenant API no path ever does.
func pathTenant(r *http.Request) (tenant.ID, error) {
	id, err := tenant.ParseID(r.PathValue("tenant"))
	if err != nil {
		return "", fmt.Errorf("%w: %w", kind.NotFound, err)
	}
	return id, nil
}

// pathTenantRecord returns the tenant the path names.
func pathTenantRecord(d Deps, r *http.Request) (control.Tenant, error) {
	id, err := pathTenant(r)
	if err != nil {
		return control.Tenant{}, err
	}
	return d.Tenants.Tenant(id)
}

func handleGetTenant(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t, err := pathTenantRecord(d, r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		encode(w, http.StatusOK, viewTenant(t))
	})
}

func handlePatchTenant(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := pathTenant(r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		body, err := decode[tenantBody](w, r, d.MaxBodyBytes, true)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		if body.ID != nil && *body.ID != string(id) {
			writeError(d.Logger, w, r, fmt.Errorf("%w: a tenant's id cannot be changed", kind.Invalid))
			return
		}
		scope, err := adminTenantScope(d, r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		t, err := updateTenant(d, r, scope, body)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		encode(w, http.StatusOK, viewTenant(t))
	})
}

// updateTenant changes the fields body sets on scope's tenant, audited; the
// admin API and the console (suspend, resume) both change tenants through it.
func updateTenant(d Deps, r *http.Request, scope auth.Scope, body tenantBody) (control.Tenant, error) {
	change := map[string]any{"fields": body.fields()}
	if body.Status != nil {
		change["status"] = *body.Status
	}
	if err := recordChange(d, r, scope, "tenant.update", change); err != nil {
		return control.Tenant{}, err
	}
	t, err := d.Lifecycle.Update(r.Context(), scope.Tenant(), func(t *control.Tenant) error { return body.apply(t, d) })
	if err != nil {
		changeFailed(d, r, scope, "tenant.update", err)
		return control.Tenant{}, err
	}
	d.Logger.InfoContext(r.Context(), "tenant updated", "tenant", t.ID, "status", t.Status)
	RegisterTenant(d.Guard, t)
	return t, nil
}

func handleDeleteTenant(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := pathTenant(r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		if err := deleteTenant(r.Context(), d, id); err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// deleteTenant offboards a tenant; the admin API and the console both
// delete tenants through it.
func deleteTenant(ctx context.Context, d Deps, id tenant.ID) error {
	if _, err := d.Lifecycle.Offboard(ctx, id); err != nil {
		return err
	}
	d.Logger.InfoContext(ctx, "tenant deleted", "tenant", id)
	return nil
}

type keyView struct {
	ID        tenant.KeyID `json:"id"`
	Key       string       `json:"key"`
	Tenant    tenant.ID    `json:"tenant"`
	Name      string       `json:"name"`
	CreatedAt time.Time    `json:"created_at"`
	ExpiresAt *time.Time   `json:"expires_at"`
}

// keyRequest is the optional body of a key creation.
type keyRequest struct {
	Name      string     `json:"name"`
	ExpiresAt *time.Time `json:"expires_at"` // RFC 3339; must be in the future
}

// keyOptions reads the optional body of a key creation.
func keyOptions(w http.ResponseWriter, r *http.Request, limit int64) (control.KeyOptions, error) {
	if r.ContentLength == 0 {
		return control.KeyOptions{}, nil
	}
	req, err := decode[keyRequest](w, r, limit, true)
	if err != nil {
		return control.KeyOptions{}, err
	}
	o := control.KeyOptions{Name: req.Name}
	if req.ExpiresAt != nil {
		if !req.ExpiresAt.After(time.Now()) {
			return o, fmt.Errorf("%w: expires_at must be in the future", kind.Invalid)
		}
		o.ExpiresAt = req.ExpiresAt.UTC()
	}
	return o, nil
}

func handleCreateKey(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, err := adminTenantScope(d, r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		opts, err := keyOptions(w, r, d.MaxBodyBytes)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		v, err := createKey(d, r, scope, opts)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		encode(w, http.StatusCreated, v)
	})
}

// createKey makes an API key for scope's tenant, audited, and returns it
// with its secret, which is shown this once; the admin API and the console
// both create keys through it.
func createKey(d Deps, r *http.Request, scope auth.Scope, opts control.KeyOptions) (keyView, error) {
	id := scope.Tenant()
	keyID, secret, hash, err := auth.NewKey()
	if err != nil {
		return keyView{}, err
	}
	change := map[string]any{"key_id": keyID}
	if !opts.ExpiresAt.IsZero() {
		change["expires_at"] = opts.ExpiresAt
	}
	if err := recordChange(d, r, scope, "key.create", change); err != nil {
		return keyView{}, err
	}
	if err := d.Tenants.AddKeyWith(r.Context(), id, keyID, hash, opts); err != nil {
		changeFailed(d, r, scope, "key.create", err)
		return keyView{}, err
	}
	d.Logger.InfoContext(r.Context(), "api key created", "tenant", id, "key_id", keyID)
	v := keyView{ID: keyID, Key: secret.Reveal(), Tenant: id, Name: opts.Name, CreatedAt: time.Now().UTC()}
	if !opts.ExpiresAt.IsZero() {
		v.ExpiresAt = &opts.ExpiresAt
	}
	return v, nil
}

// handleListKeys lists a tenant's API keys, revoked ones too, oldest first:
// ids and times, never a key or its hash.
func handleListKeys(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t, err := pathTenantRecord(d, r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		keys, err := d.Tenants.Keys(r.Context(), t.ID)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		type item struct {
			control.Key
			Object string    `json:"object"`
			Tenant tenant.ID `json:"tenant"`
		}
		out := make([]item, len(keys))
		for i, k := range keys {
			out[i] = item{Key: k, Object: "api_key", Tenant: t.ID}
		}
		encode(w, http.StatusOK, map[string]any{"object": "list", "data": out})
	})
}

func handleRevokeKey(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, err := adminTenantScope(d, r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		if err := revokeKey(d, r, scope, tenant.KeyID(r.PathValue("id"))); err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// revokeKey revokes one of scope's tenant's keys, audited; the admin API and
// the console both revoke keys through it.
func revokeKey(d Deps, r *http.Request, scope auth.Scope, keyID tenant.KeyID) error {
	id := scope.Tenant()
	if err := recordChange(d, r, scope, "key.revoke", map[string]any{"key_id": keyID}); err != nil {
		return err
	}
	if err := d.Lifecycle.RevokeKey(r.Context(), id, keyID); err != nil {
		changeFailed(d, r, scope, "key.revoke", err)
		return err
	}
	d.Logger.InfoContext(r.Context(), "api key revoked", "tenant", id, "key_id", keyID)
	return nil
}

func handleHealth() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		encode(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// secretBody is a secret's value; it is accepted, never shown.
type secretBody struct {
	Value *string `json:"value"`
}

// maxSecretLen bounds one secret value.
const maxSecretLen = 16 << 10

// adminTenantScope checks the tenant in the path exists and returns the
// operator's Scope acting in it.
func adminTenantScope(d Deps, r *http.Request) (scope auth.Scope, err error) {
	t, err := pathTenantRecord(d, r)
	if err != nil {
		return scope, err
	}
	return auth.AdminScope(r.Context(), t.Incarnation())
}

func handlePutSecret(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, err := adminTenantScope(d, r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		name, err := tenant.ParseSecretName(r.PathValue("name"))
		if err != nil {
			writeError(d.Logger, w, r, fmt.Errorf("%w: %w", kind.Invalid, err))
			return
		}
		body, err := decode[secretBody](w, r, d.MaxBodyBytes, true)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		switch {
		case body.Value == nil:
			err = fmt.Errorf("%w: value is required", kind.Invalid)
		case len(*body.Value) > maxSecretLen:
			err = fmt.Errorf("%w: value must be at most %d bytes", kind.Invalid, maxSecretLen)
		case redact.Check(*body.Value) != nil:
			// Shorter values cannot be redacted without mangling ordinary
			// text, and one the redactor cannot find would leak unredacted.
			err = fmt.Errorf("%w: value: %w", kind.Invalid, redact.Check(*body.Value))
		}
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		if err := recordChange(d, r, scope, "secret.set", map[string]any{"secret": name}); err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		if err := d.Data.PutSecret(r.Context(), scope, name, []byte(*body.Value)); err != nil {
			changeFailed(d, r, scope, "secret.set", err)
			writeError(d.Logger, w, r, err)
			return
		}
		if d.Guard != nil {
			d.Guard.SetSecret(scope.Tenant(), string(name), []byte(*body.Value))
		}
		d.Logger.InfoContext(r.Context(), "secret set", "tenant", scope.Tenant(), "secret", name)
		w.WriteHeader(http.StatusNoContent)
	})
}

func handleDeleteSecret(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, err := adminTenantScope(d, r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		name, err := tenant.ParseSecretName(r.PathValue("name"))
		if err != nil {
			writeError(d.Logger, w, r, fmt.Errorf("%w: %w", kind.NotFound, err))
			return
		}
		if err := recordChange(d, r, scope, "secret.delete", map[string]any{"secret": name}); err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		if err := d.Data.DeleteSecret(r.Context(), scope, name); err != nil {
			changeFailed(d, r, scope, "secret.delete", err)
			writeError(d.Logger, w, r, err)
			return
		}
		if d.Guard != nil {
			d.Guard.DeleteSecret(scope.Tenant(), string(name))
		}
		d.Logger.InfoContext(r.Context(), "secret deleted", "tenant", scope.Tenant(), "secret", name)
		w.WriteHeader(http.StatusNoContent)
	})
}

// exportView is everything a tenant has, decrypted, but secret values.
type exportView struct {
	Tenant     tenantView   `json:"tenant"`
	Data       store.Export `json:"data"`
	ExportedAt time.Time    `json:"exported_at"`
}

func handleExport(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, err := adminTenantScope(d, r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		t, err := d.Tenants.Tenant(scope.Tenant())
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		data, err := d.Data.Export(r.Context(), scope)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		d.Logger.InfoContext(r.Context(), "tenant exported", "tenant", scope.Tenant())
		record(d, r, scope, "tenant.export", nil)
		encode(w, http.StatusOK, exportView{Tenant: viewTenant(t), Data: data, ExportedAt: time.Now().UTC()})
	})
}

// ProvisionRecords returns the lifecycle participants that write a new tenant's first
// records: the "tenant.create" audit event and the honey record (when k is
// not nil). They run inside the operator's request, so they act with its
// AdminScope; their state goes with the tenant's store.
func ProvisionRecords(k Knowledge, log AuditLog) []lifecycle.Participant {
	var out []lifecycle.Participant
	if log != nil {
		out = append(out, lifecycle.Func{Label: "audit of creation", ProvisionFunc: func(ctx context.Context, t control.Tenant) error {
			scope, err := auth.AdminScope(ctx, t.Incarnation())
			if err != nil {
				return err
			}
			return log.Record(scope, audit.Event{Type: "tenant.create"})
		}})
	}
	if k != nil {
		out = append(out, lifecycle.Func{Label: "honey record", ProvisionFunc: func(ctx context.Context, t control.Tenant) error {
			if len(t.Canaries) == 0 {
				return nil
			}
			scope, err := auth.AdminScope(ctx, t.Incarnation())
			if err != nil {
				return err
			}
			_, _, err = k.AddDocument(ctx, scope, memory.HoneyText(t.Canaries[0]), json.RawMessage(`{"honey":true}`))
			return err
		}})
	}
	return out
}
