package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/tools"
)

// CreateTool adds a tool to the catalog. Names are unique across the
// catalog, so a tenant's tool can never shadow the operator's or another
// tenant's.
func (p *Plane) CreateTool(ctx context.Context, d tools.Definition) (*tools.Tool, error) {
	t, err := tools.Compile(d)
	if err != nil {
		return nil, err
	}
	def, err := json.Marshal(t.Definition)
	if err != nil {
		return nil, fmt.Errorf("encode tool: %w", err)
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if _, ok := p.Tool(t.Name); ok {
		return nil, fmt.Errorf("%w: tool %s", kind.Conflict, t.Name)
	}
	v, err := p.be.createTool(ctx, t, string(def), p.stamp())
	switch {
	case errors.Is(err, errExists):
		return nil, fmt.Errorf("%w: tool %s", kind.Conflict, t.Name)
	case errors.Is(err, errNoOwner):
		return nil, fmt.Errorf("%w: tool %s: owner tenant %s does not exist", kind.Invalid, t.Name, t.Owner)
	case err != nil:
		return nil, fmt.Errorf("create tool %s: %w", t.Name, err)
	}
	p.mu.Lock()
	p.tools[t.Name] = t
	p.mu.Unlock()
	p.committed(v)
	return t, nil
}

// Tool returns the catalog's tool by name.
func (p *Plane) Tool(name string) (*tools.Tool, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	t, ok := p.tools[name]
	return t, ok
}

// Tools lists the catalog, ordered by name.
func (p *Plane) Tools() []*tools.Tool {
	p.mu.RLock()
	out := make([]*tools.Tool, 0, len(p.tools))
	for _, t := range p.tools {
		out = append(out, t)
	}
	p.mu.RUnlock()
	slices.SortFunc(out, func(a, b *tools.Tool) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// DeleteTool removes a tool from the catalog. Profiles that name it stop
// offering it.
func (p *Plane) DeleteTool(ctx context.Context, name string) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	v, err := p.be.deleteTool(ctx, name)
	if errors.Is(err, errMissing) {
		p.mu.Lock()
		delete(p.tools, name) // if the snapshot still had it, it is gone
		p.mu.Unlock()
		return fmt.Errorf("%w: tool %s", kind.NotFound, name)
	}
	if err != nil {
		return fmt.Errorf("delete tool %s: %w", name, err)
	}
	p.mu.Lock()
	delete(p.tools, name)
	p.mu.Unlock()
	p.committed(v)
	return nil
}
