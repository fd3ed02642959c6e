// Package tools defines the tools an agent may call and runs them. The
// model only ever proposes a call: this package validates the arguments,
// fills in the parameters bound to the caller (never taken from the model),
// and executes against a host the operator fixed, with the tenant's own
// credentials injected at that moment.
package tools

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/label"
	"github.com/bulkhead-ai/bulkhead/internal/secret"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Scope says whose data a tool touches.
type Scope string

const (
	// ScopeTenant tools act inside the calling tenant.
	ScopeTenant Scope = "tenant"
	// ScopeGlobal tools touch no tenant data.
	ScopeGlobal Scope = "global"
	// ScopeCrossTenant tools reach across tenants: admin tooling, never for
	// agents. The global policy forbids them.
	ScopeCrossTenant Scope = "cross_tenant"
)

// Bound parameter sources.
const (
	BindTenantID = "tenant.id"
	BindUserID   = "user.id"
	// BindSecretPrefix + NAME binds a parameter to the tenant's secret NAME: a
	// fixed per-tenant value such as an account id.
	BindSecretPrefix = "secret."
)

// Definition is a tool as the operator declares it.
type Definition struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Scope       Scope  `json:"scope"`
	// Owner is the tenant a tenant-defined tool belongs to; empty for the
	// operator's tools, which any tenant may name in a profile.
	Owner      tenant.ID       `json:"owner,omitempty"`
	Parameters json.RawMessage `json:"parameters"`
	// Bound maps parameter names to their source; the runtime fills them
	// and the model never sees them.
	Bound   map[string]string `json:"bound,omitempty"`
	HTTP    *HTTPSpec         `json:"http,omitempty"`
	MCP     *MCPSpec          `json:"mcp,omitempty"`
	Builtin string            `json:"builtin,omitempty"`
	// Consequential says the tool acts on the world (sends, writes, pays,
	// posts); undeclared means it does. Egress is the most confidential
	// label its destination may receive; undeclared means public.
	// ResultConfidentiality is the label of what it returns; undeclared
	// means tenant for a tenant tool, public for a global one. Policy reads
	// them as resource.consequential, resource.egress and
	// resource.receives (see Flow). A builtin's are the runtime's own and
	// cannot be declared.
	Consequential *bool `json:"consequential,omitempty"`
	// Held keeps the tool's results from the model: it sees a reference
	// ($r1) with the result's type and size, and may pass the reference
	// as an argument to another call, which the runtime fills in. Not for
	// builtins.
	Held                  bool                   `json:"held,omitempty"`
	Egress                *label.Confidentiality `json:"egress,omitempty"`
	ResultConfidentiality *label.Confidentiality `json:"result_confidentiality,omitempty"`
}

// Flow is what a tool does with information, as policy sees it.
type Flow struct {
	Consequential bool
	// Egress is the most confidential label the tool's destination may
	// receive: the turn's confidentiality must be at or below it for a
	// "permitted flow" policy to let a call through.
	Egress label.Confidentiality
	// Result is the confidentiality of what the tool returns; a result is
	// always untrusted.
	Result label.Confidentiality
}

// builtinFlows are the builtins' flows, set by the runtime rather than by a
// stored definition (which may predate labels). Searching reads the end
// user's memories or the tenant's documents and sends the query nowhere
// outside the runtime; saving a memory persists what the model writes into
// later turns, which is acting on the world.
var builtinFlows = map[string]Flow{
	"kb_search":     {Consequential: false, Egress: label.EndUser, Result: label.Tenant},
	"memory_search": {Consequential: false, Egress: label.EndUser, Result: label.EndUser},
	"memory_save":   {Consequential: true, Egress: label.EndUser, Result: label.EndUser},
}

// clientFlow is every client tool's: the runtime cannot know what the
// client does with a call, so it acts; the client runs for the end user,
// whose data it may receive, and its results come back as client messages.
var clientFlow = Flow{Consequential: true, Egress: label.EndUser, Result: label.EndUser}

// flowOf computes d's flow from its declarations and the defaults, or
// refuses declarations on a builtin.
func flowOf(d Definition) (Flow, error) {
	if d.Builtin != "" {
		f, ok := builtinFlows[d.Builtin]
		if !ok {
			// An unknown builtin has no executor either; fail closed.
			f = Flow{Consequential: true, Egress: label.Public, Result: label.Secret}
		}
		return f, nil
	}
	f := Flow{Consequential: true, Egress: label.Public, Result: label.Tenant}
	if d.Scope == ScopeGlobal {
		f.Result = label.Public
	}
	if d.Consequential != nil {
		f.Consequential = *d.Consequential
	}
	if d.Egress != nil {
		f.Egress = *d.Egress
	}
	if d.ResultConfidentiality != nil {
		f.Result = *d.ResultConfidentiality
	}
	for _, c := range []label.Confidentiality{f.Egress, f.Result} {
		if c > label.Secret {
			return Flow{}, fmt.Errorf("unknown confidentiality %d", c)
		}
	}
	return f, nil
}

// HTTPSpec calls an HTTP endpoint. URL and header values may hold
// {{secret.NAME}} and {{bound.NAME}}; the scheme and host may not, so the
// model can never choose where a call goes. POST/PUT/PATCH send the
// arguments as a JSON body, GET/DELETE as query parameters.
type HTTPSpec struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers,omitempty"`
}

// MCPSpec calls a tool on an MCP server, over streamable HTTP (URL) or stdio
// (Command). Header and Env values may hold {{secret.NAME}}. Each tenant gets
// its own session (and, for stdio, its own process).
type MCPSpec struct {
	URL     string            `json:"url,omitempty"`
	Command []string          `json:"command,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	// Tool is the upstream tool's name; empty means the definition's name.
	Tool string `json:"tool,omitempty"`
}

// Tool is a validated Definition, ready to offer and call.
type Tool struct {
	Definition
	schema *jsonschema.Resolved
	// keys is what the schema declares about argument keys, for Decode.
	keys *keys
	// reserved are the query parameters the HTTP URL fixes, which no
	// top-level argument may name.
	reserved reservedNames
	// visible is the parameter schema the model sees: bound parameters
	// removed.
	visible json.RawMessage
	flow    Flow
}

// Flow returns what the tool does with information (see Definition).
func (t *Tool) Flow() Flow { return t.flow }

var (
	namePattern     = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	templatePattern = regexp.MustCompile(`\{\{\s*([a-z]+)\.([A-Za-z0-9_.-]+)\s*\}\}`)
)

// Limits on what a definition may hold.
const (
	maxDescription = 4 << 10
	maxParameters  = 64 << 10
)

// Compile validates d and prepares it for use. Errors wrap kind.Invalid and
// say what is wrong.
func Compile(d Definition) (*Tool, error) {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: tool %q: %s", kind.Invalid, d.Name, fmt.Sprintf(format, args...))
	}
	if !namePattern.MatchString(d.Name) {
		return nil, invalid("name must be 1-64 of [A-Za-z0-9_-]")
	}
	if len(d.Description) > maxDescription {
		return nil, invalid("description longer than %d bytes", maxDescription)
	}
	switch d.Scope {
	case ScopeTenant, ScopeGlobal, ScopeCrossTenant:
	default:
		return nil, invalid("scope must be %q, %q or %q", ScopeTenant, ScopeGlobal, ScopeCrossTenant)
	}
	if d.Owner != "" {
		if _, err := tenant.ParseID(string(d.Owner)); err != nil {
			return nil, invalid("owner: %v", err)
		}
	}
	executors := 0
	for _, set := range []bool{d.HTTP != nil, d.MCP != nil, d.Builtin != ""} {
		if set {
			executors++
		}
	}
	if executors != 1 {
		return nil, invalid("exactly one of http, mcp or builtin is required")
	}

	if len(d.Parameters) == 0 {
		d.Parameters = json.RawMessage(`{"type":"object","properties":{}}`)
	}
	schema, resolved, err := parseSchema(d.Parameters)
	if err != nil {
		return nil, invalid("%v", err)
	}

	for param, source := range d.Bound {
		if _, ok := schema.Properties[param]; !ok {
			return nil, invalid("bound parameter %q is not among the parameters", param)
		}
		if err := checkSource(source); err != nil {
			return nil, invalid("bound parameter %q: %v", param, err)
		}
	}
	if err := checkExecutor(d); err != nil {
		return nil, invalid("%v", err)
	}
	if err := checkLabelNames(schema); err != nil {
		return nil, invalid("%v", err)
	}
	if d.Builtin != "" && (d.Consequential != nil || d.Egress != nil || d.ResultConfidentiality != nil || d.Held) {
		return nil, invalid("a builtin's consequential, egress, result_confidentiality and held are the runtime's and cannot be declared")
	}
	flow, err := flowOf(d)
	if err != nil {
		return nil, invalid("%v", err)
	}

	visible := schema.CloneSchemas()
	for param := range d.Bound {
		delete(visible.Properties, param)
		visible.Required = slices.DeleteFunc(slices.Clone(visible.Required), func(r string) bool { return r == param })
	}
	vb, err := json.Marshal(visible)
	if err != nil {
		return nil, invalid("parameters: %v", err)
	}
	var fixed []string
	if d.HTTP != nil {
		if fixed, err = queryNames(d.HTTP.URL); err != nil {
			return nil, invalid("%v", err)
		}
	}
	return &Tool{Definition: d, schema: resolved, visible: vb, reserved: newReserved(fixed), flow: flow,
		keys: keysOf(schema, schema, map[*jsonschema.Schema]*keys{})}, nil
}

// parseSchema parses and resolves a tool's parameters, which must be a
// JSON schema of an object.
func parseSchema(params json.RawMessage) (*jsonschema.Schema, *jsonschema.Resolved, error) {
	if len(params) > maxParameters {
		return nil, nil, fmt.Errorf("parameters schema larger than %d bytes", maxParameters)
	}
	var schema jsonschema.Schema
	if err := json.Unmarshal(params, &schema); err != nil {
		return nil, nil, fmt.Errorf("parameters: %v", err)
	}
	if schema.Type != "object" {
		return nil, nil, fmt.Errorf(`parameters must be a JSON schema of "type": "object"`)
	}
	resolved, err := schema.Resolve(nil)
	if err != nil {
		return nil, nil, fmt.Errorf("parameters: %v", err)
	}
	return &schema, resolved, nil
}

// checkLabelNames refuses a top-level parameter named like a context
// attribute the runtime sets for policy (label.Reserved): the call's
// arguments share Cedar's context record with the turn's labels.
func checkLabelNames(schema *jsonschema.Schema) error {
	for name := range schema.Properties {
		if label.Reserved(name) {
			return fmt.Errorf("parameter %q is reserved: policy reads the turn's label as context.%s", name, name)
		}
	}
	return nil
}

// queryNames lists the query parameter names of a URL template. A name
// must be fixed text: arguments are checked against it before any
// placeholder is filled.
func queryNames(tmpl string) ([]string, error) {
	tmpl, _, _ = strings.Cut(tmpl, "#")
	_, query, ok := strings.Cut(tmpl, "?")
	if !ok {
		return nil, nil
	}
	var names []string
	for _, part := range strings.FieldsFunc(query, func(r rune) bool { return r == '&' || r == ';' }) {
		name, _, _ := strings.Cut(part, "=")
		if strings.Contains(name, "{{") || strings.Contains(name, "}}") {
			return nil, fmt.Errorf("http.url: placeholders may not appear in query parameter names")
		}
		n, err := url.QueryUnescape(name)
		if err != nil {
			return nil, fmt.Errorf("http.url: query parameter name %q: %v", name, err)
		}
		if n != "" {
			names = append(names, n)
		}
	}
	return names, nil
}

func checkSource(source string) error {
	switch {
	case source == BindTenantID, source == BindUserID:
		return nil
	case strings.HasPrefix(source, BindSecretPrefix):
		_, err := tenant.ParseSecretName(strings.TrimPrefix(source, BindSecretPrefix))
		return err
	}
	return fmt.Errorf("source %q must be %q, %q or %q+NAME", source, BindTenantID, BindUserID, BindSecretPrefix)
}

func checkExecutor(d Definition) error {
	switch {
	case d.HTTP != nil:
		switch strings.ToUpper(d.HTTP.Method) {
		case "GET", "POST", "PUT", "PATCH", "DELETE":
		default:
			return fmt.Errorf("http.method must be GET, POST, PUT, PATCH or DELETE")
		}
		// The scheme and host are fixed: no placeholder may come before the
		// path.
		u, err := url.Parse(templatePattern.ReplaceAllString(d.HTTP.URL, "x"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("http.url must be an absolute http(s) URL")
		}
		if i := strings.Index(d.HTTP.URL, "{{"); i >= 0 && i < len(u.Scheme)+3+len(u.Host) {
			return fmt.Errorf("http.url: placeholders may not appear in the scheme or host")
		}
		return checkTemplates(d, d.HTTP.URL, d.HTTP.Headers, true)
	case d.MCP != nil:
		if (d.MCP.URL == "") == (len(d.MCP.Command) == 0) {
			return fmt.Errorf("mcp needs exactly one of url or command")
		}
		if d.MCP.URL != "" {
			u, err := url.Parse(d.MCP.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Contains(d.MCP.URL, "{{") {
				return fmt.Errorf("mcp.url must be an absolute http(s) URL without placeholders")
			}
		}
		if len(d.MCP.Command) > 0 && d.Owner != "" {
			// A stdio server is a process on this host: only the operator's
			// own tools may start one.
			return fmt.Errorf("mcp.command is allowed only on operator tools (no owner); use mcp.url")
		}
		for _, arg := range d.MCP.Command {
			if strings.Contains(arg, "{{") {
				return fmt.Errorf("mcp.command may not hold placeholders; use env")
			}
		}
		if err := checkTemplates(d, "", d.MCP.Headers, false); err != nil {
			return err
		}
		return checkTemplates(d, "", d.MCP.Env, false)
	}
	return nil
}

// checkTemplates checks every placeholder names a secret or, where allowed,
// a bound parameter.
func checkTemplates(d Definition, urlTemplate string, values map[string]string, allowBound bool) error {
	all := append([]string{urlTemplate}, slices.Collect(maps.Values(values))...)
	for _, v := range all {
		for _, m := range templatePattern.FindAllStringSubmatch(v, -1) {
			switch m[1] {
			case "secret":
				if _, err := tenant.ParseSecretName(m[2]); err != nil {
					return fmt.Errorf("placeholder %s: %v", m[0], err)
				}
			case "bound":
				if _, ok := d.Bound[m[2]]; !allowBound || !ok {
					return fmt.Errorf("placeholder %s names no bound parameter", m[0])
				}
			default:
				return fmt.Errorf("placeholder %s: only secret.NAME and bound.NAME exist", m[0])
			}
		}
	}
	return nil
}

// VisibleParameters returns the schema offered to the model: the tool's
// parameters without the bound ones.
func (t *Tool) VisibleParameters() json.RawMessage { return t.visible }

// SecretNames lists the tenant secrets the tool's templates and bindings use.
func (t *Tool) SecretNames() []tenant.SecretName {
	var names []tenant.SecretName
	add := func(s string) {
		for _, m := range templatePattern.FindAllStringSubmatch(s, -1) {
			if m[1] == "secret" {
				names = append(names, tenant.SecretName(m[2]))
			}
		}
	}
	for _, source := range t.Bound {
		if name, ok := strings.CutPrefix(source, BindSecretPrefix); ok {
			names = append(names, tenant.SecretName(name))
		}
	}
	if h := t.HTTP; h != nil {
		add(h.URL)
		for _, v := range h.Headers {
			add(v)
		}
	}
	if m := t.MCP; m != nil {
		for _, v := range m.Headers {
			add(v)
		}
		for _, v := range m.Env {
			add(v)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// ErrBoundByModel is returned when the model supplies a parameter the
// runtime binds (tenant id, end user, account): an attempt to act as someone
// else, refused whatever its value.
var ErrBoundByModel = errors.New("the model supplied a parameter the runtime fills")

// maxArguments bounds the model's argument JSON.
const maxArguments = 64 << 10

// Arguments turns the model's raw JSON arguments into the call's arguments
// in one step: Decode, then Complete. Callers that must inspect or rewrite
// the model's values in between (the agent's guard and redaction) call the
// two themselves.
func (t *Tool) Arguments(raw string, bind func(source string) (string, error)) (map[string]any, error) {
	model, err := t.Decode(raw)
	if err != nil {
		return nil, err
	}
	args, err := t.Complete(model, bind)
	if err != nil {
		return nil, err
	}
	return args.Value, nil
}

// Call is one authorized call, ready to execute.
type Call struct {
	Tool *Tool
	// Scope is the caller's identity, for builtin tools that read the
	// tenant's own store; Tenant is its tenant.
	Scope  auth.Scope
	Tenant tenant.ID
	Args   map[string]any // validated, bound parameters filled
	// Body is Args' canonical encoding (Complete), the exact bytes policy
	// and the guard passed: executors send it as it is. Nil means encode
	// Args.
	Body []byte
	// Bound holds the bound parameters' values, for {{bound.NAME}}.
	Bound map[string]string
	// Secrets holds the tenant secrets the tool uses, for {{secret.NAME}}.
	Secrets map[tenant.SecretName]secret.Value
}

// Result is what a tool returned, as text for the model.
type Result struct {
	Content string
	// IsError marks a failure the model should see and may recover from.
	IsError bool
	// Truncated marks Content as cut at the executor's output limit. Its
	// end may then hold the start of a secret the redactor cannot
	// recognise from a start alone; the caller redacts it as a stream cut
	// short (see redact.Stream) and appends TruncatedMark.
	Truncated bool
}
