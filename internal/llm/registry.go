package llm

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// ErrUnknownModel reports a model name that names no registered provider.
var ErrUnknownModel = errors.New("unknown model")

// Registry maps provider names to providers. Models are named
// "provider/model-name". The zero value is an empty registry ready to use; it
// is safe for concurrent use.
type Registry struct {
	mu        sync.RWMutex
	providers map[string]entry
}

type entry struct {
	provider  Provider
	keySecret tenant.SecretName
}

// Route is where a model name leads.
type Route struct {
	Provider Provider
	Model    string // the provider's own model name
	// KeySecret, when set, names the tenant secret holding the API key to
	// send (bring your own key); the caller resolves it for the tenant.
	KeySecret tenant.SecretName
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{} }

// Add registers p under name. The name must be non-empty, unused and free of
// "/"; p must not be nil.
func (r *Registry) Add(name string, p Provider) error {
	return r.AddBYOK(name, p, "")
}

// AddBYOK registers p under name like Add; every call through it uses the
// calling tenant's own API key, from the tenant secret keySecret.
func (r *Registry) AddBYOK(name string, p Provider, keySecret tenant.SecretName) error {
	switch {
	case name == "":
		return errors.New("llm: empty provider name")
	case strings.Contains(name, "/"):
		return fmt.Errorf("llm: provider name %q contains \"/\"", name)
	case p == nil:
		return fmt.Errorf("llm: nil provider %q", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.providers[name]; ok {
		return fmt.Errorf("llm: duplicate provider %q", name)
	}
	if r.providers == nil {
		r.providers = make(map[string]entry)
	}
	r.providers[name] = entry{provider: p, keySecret: keySecret}
	return nil
}

// Resolve splits model at its first "/" into a provider name and the
// provider's own model name, and returns the route there. A model with no
// "/", an empty part or an unregistered provider is an error wrapping
// ErrUnknownModel.
func (r *Registry) Resolve(model string) (Route, error) {
	name, rest, ok := strings.Cut(model, "/")
	if !ok || name == "" || rest == "" {
		return Route{}, fmt.Errorf("%w %q", ErrUnknownModel, model)
	}
	r.mu.RLock()
	e, ok := r.providers[name]
	r.mu.RUnlock()
	if !ok {
		return Route{}, fmt.Errorf("%w %q", ErrUnknownModel, model)
	}
	return Route{Provider: e.provider, Model: rest, KeySecret: e.keySecret}, nil
}

// Names returns the registered provider names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.providers))
	for n := range r.providers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
