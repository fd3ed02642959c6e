package control

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/tools"
)

func (p *Plane) loadTools(ctx context.Context) error {
	rows, err := p.db.QueryContext(ctx, `SELECT name, definition FROM tools`)
	if err != nil {
		return fmt.Errorf("load tools: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			return fmt.Errorf("load tools: %w", err)
		}
		var d tools.Definition
		if err := json.Unmarshal([]byte(def), &d); err != nil {
			return fmt.Errorf("load tool %s: %w", name, err)
		}
		t, err := tools.Compile(d)
		if err != nil {
			return fmt.Errorf("load tool %s: %w", name, err)
		}
		p.tools[name] = t
	}
	return rows.Err()
}

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
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.tools[t.Name]; ok {
		return nil, fmt.Errorf("%w: tool %s", kind.Conflict, t.Name)
	}
	var owner sql.NullString
	if t.Owner != "" {
		if _, ok := p.tenants[t.Owner]; !ok {
			return nil, fmt.Errorf("%w: tool %s: owner tenant %s does not exist", kind.Invalid, t.Name, t.Owner)
		}
		owner = sql.NullString{String: string(t.Owner), Valid: true}
	}
	if _, err := p.db.ExecContext(ctx, `INSERT INTO tools (name, owner, definition, created_at) VALUES (?, ?, ?, ?)`,
		t.Name, owner, string(def), p.now().UTC().Format(time.RFC3339Nano)); err != nil {
		return nil, fmt.Errorf("create tool %s: %w", t.Name, err)
	}
	p.tools[t.Name] = t
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
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.tools[name]; !ok {
		return fmt.Errorf("%w: tool %s", kind.NotFound, name)
	}
	if _, err := p.db.ExecContext(ctx, `DELETE FROM tools WHERE name = ?`, name); err != nil {
		return fmt.Errorf("delete tool %s: %w", name, err)
	}
	delete(p.tools, name)
	return nil
}
