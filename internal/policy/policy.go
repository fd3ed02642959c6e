// Package policy decides, outside the model, whether an agent may call a tool.
//
// Decisions are made by Cedar (github.com/cedar-policy/cedar-go) over three
// kinds of policy, all held in one tenant's [Set]:
//
//   - compiled-in global forbids (ids "global/…") that no tenant can override;
//   - generated permits, one per (profile, tool) the tenant's profiles offer
//     (ids "profile/<profile>/<tool>");
//   - the tenant's own uploaded policies, which may only forbid
//     (ids "tenant/<n>" or "tenant/<@id annotation>").
//
// Cedar semantics apply: default deny, and any matching forbid beats every
// permit. On top of Cedar, an evaluation error on any policy denies the call.
// Authorization is a pure function: no I/O, no entity store.
//
// Cedar names: principal Agent::"<tenant>/<profile>" (attributes tenant, user),
// action Action::"call_tool", resource Tool::"<name>" (attributes scope,
// owner, consequential, egress, receives), context = the call's arguments
// and the turn's labels, integrity and confidentiality (see
// [Set.AuthorizeLabeled]).
package policy

import (
	"errors"
	"fmt"
	"iter"
	"maps"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/ast"
	"github.com/cedar-policy/cedar-go/types"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/label"
	"github.com/bulkhead-ai/bulkhead/internal/layers"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Limits on uploaded tenant policy text.
const (
	MaxSourceBytes = 64 << 10
	MaxPolicies    = 1000
	maxIDLen       = 128
)

// Tool scopes, the values of the resource's scope attribute.
const (
	ScopeTenant      = "tenant"
	ScopeGlobal      = "global"
	ScopeCrossTenant = "cross_tenant"
	// ScopeClient is a client tool's: declared by the request and run by
	// the client, owned by the calling tenant. Its resource is named
	// Tool::"client/<name>".
	ScopeClient = "client"
)

// Policy id prefixes; a decision's Reasons and Errors name policies by id.
const (
	globalPrefix  = "global/"
	profilePrefix = "profile/"
	tenantPrefix  = "tenant/"
)

// globalSource holds the compiled-in policies. They apply to every tenant and
// every request; a tenant's upload cannot remove or outweigh them.
const globalSource = `
@id("global/forbid-cross-tenant")
forbid (principal, action, resource)
when { resource.scope == "cross_tenant" };

@id("global/forbid-other-tenants-tools")
forbid (principal, action, resource)
when { resource.owner != "" && resource.owner != principal.tenant };

@id("global/forbid-unknown-scope")
forbid (principal, action, resource)
unless { ["tenant", "global", "cross_tenant", "client"].contains(resource.scope) };
`

var (
	agentType  = types.EntityType("Agent")
	toolType   = types.EntityType("Tool")
	callTool   = types.NewEntityUID("Action", "call_tool")
	noEntities = types.NewEntityUIDSet()
)

// Principal is the agent acting: Cedar Agent::"<tenant>/<profile>" with
// attributes tenant (String) and user (String).
type Principal struct {
	Tenant  tenant.ID
	Profile string
	User    tenant.UserID
}

// Resource is the tool: Cedar Tool::"<name>" with attributes scope (String:
// "tenant", "global" or "cross_tenant"), owner (String, "" for operator
// tools), consequential (Boolean), egress (String: "public", "tenant",
// "end_user" or "secret") and receives (Set of String: the
// confidentialities at or below egress, what the tool's destination may
// receive). Any other scope is denied by a global policy.
type Resource struct {
	Name  string
	Scope string
	Owner tenant.ID
	// Consequential and Egress are the tool's declared flow (tools.Flow).
	Consequential bool
	Egress        label.Confidentiality
}

// Decision is an authorization result.
type Decision struct {
	Allow bool
	// Reasons are the ids of the policies that decided: the matching permits
	// when allowed, the matching forbids when denied (empty for default deny
	// or a denial caused only by Errors).
	Reasons []string
	// Errors are evaluation errors; any error on a call denies.
	Errors []string
}

func denied(format string, args ...any) Decision {
	return Decision{Errors: []string{fmt.Sprintf(format, args...)}}
}

// Engine compiles tenant policy sets. It is safe for concurrent use.
type Engine struct {
	global policyList
	cache  *cache
}

// NewEngine parses the compiled-in global policies.
func NewEngine() (*Engine, error) {
	list, err := cedar.NewPolicyListFromBytes("global", []byte(globalSource))
	if err != nil {
		return nil, fmt.Errorf("policy: global policies: %w", err)
	}
	e := &Engine{cache: newCache(cacheEntries, cacheBytes)}
	for _, p := range list {
		id, ok := p.Annotations()["id"]
		if !ok || !strings.HasPrefix(string(id), globalPrefix) || p.Effect() != cedar.Forbid {
			return nil, errors.New("policy: global policies must be forbids with a global/ @id")
		}
		e.global = append(e.global, entry{cedar.PolicyID(id), p})
	}
	return e, nil
}

// entry is one named policy.
type entry struct {
	id     cedar.PolicyID
	policy *cedar.Policy
}

// policyList is an ordered, immutable list of named policies.
type policyList []entry

// Set is one tenant's compiled policy set: global forbids + generated permits
// + the tenant's own policies. It is immutable and safe for concurrent use.
type Set struct {
	tenant tenant.ID
	global policyList
	// permits holds the generated permits by profile. A request evaluates
	// only its own profile's: the others name another principal and cannot
	// match it.
	permits map[string]policyList
	own     policyList
}

// requestPolicies is the part of a Set that can match one principal's
// requests; it implements cedar.PolicyIterator.
type requestPolicies [3]policyList

func (r *requestPolicies) All() iter.Seq2[cedar.PolicyID, *cedar.Policy] {
	return func(yield func(cedar.PolicyID, *cedar.Policy) bool) {
		for _, l := range r {
			for _, e := range l {
				if !yield(e.id, e.policy) {
					return
				}
			}
		}
	}
}

// Compile builds tenant id's set. profiles maps a profile name to the tool
// names it offers; each (profile, tool) gets a generated permit
//
//	permit (principal == Agent::"<id>/<profile>", action == Action::"call_tool", resource == Tool::"<tool>");
//
// with id "profile/<profile>/<tool>", and one permit for the tenant's own
// client tools (resources Tool::"client/<name>" of scope "client")
//
//	permit (principal == Agent::"<id>/<profile>", action == Action::"call_tool", resource)
//	when { resource.scope == "client" && resource.owner == principal.tenant };
//
// with id "profile/<profile>/client/*". Whether a profile takes client tools
// at all is the agent's check; the tenant's forbids narrow both. Profile names must be non-empty and
// contain no '/'; tool names must be non-empty. source is the tenant's
// uploaded Cedar text (may be empty); see [Engine.Validate] for its rules.
// Errors wrap kind.Invalid.
func (e *Engine) Compile(id tenant.ID, profiles map[string][]string, source string) (*Set, error) {
	if _, err := tenant.ParseID(string(id)); err != nil {
		return nil, fmt.Errorf("%w: policy: %v", kind.Invalid, err)
	}
	own, err := parseTenant(source)
	if err != nil {
		return nil, err
	}
	s := &Set{tenant: id, global: e.global, permits: make(map[string]policyList, len(profiles)), own: own}
	for _, profile := range slices.Sorted(maps.Keys(profiles)) {
		if profile == "" || strings.Contains(profile, "/") {
			return nil, fmt.Errorf("%w: policy: profile name %q must be non-empty and contain no '/'", kind.Invalid, profile)
		}
		agent := agentUID(id, profile)
		s.permits[profile] = append(s.permits[profile], entry{cedar.PolicyID(profilePrefix + profile + "/client/*"), clientPermit(agent)})
		tools := slices.Sorted(slices.Values(profiles[profile]))
		for _, tool := range slices.Compact(tools) {
			if tool == "" {
				return nil, fmt.Errorf("%w: policy: profile %q names an empty tool", kind.Invalid, profile)
			}
			p := cedar.NewPolicyFromAST(ast.Permit().
				PrincipalEq(agent).
				ActionEq(callTool).
				ResourceEq(types.NewEntityUID(toolType, types.String(tool))))
			s.permits[profile] = append(s.permits[profile], entry{cedar.PolicyID(profilePrefix + profile + "/" + tool), p})
		}
	}
	return s, nil
}

// clientPermit lets agent call its tenant's client tools. Catalog tools
// never have the client scope (tools.Compile refuses it), and "/" is not in
// their names, so it matches client tools only.
func clientPermit(agent types.EntityUID) *cedar.Policy {
	return cedar.NewPolicyFromAST(ast.Permit().
		PrincipalEq(agent).
		ActionEq(callTool).
		When(ast.Resource().Access("scope").Equal(ast.String(ScopeClient)).
			And(ast.Resource().Access("owner").Equal(ast.Principal().Access("tenant")))))
}

var inputPos = regexp.MustCompile(`<input>:(\d+):(\d+)`)

// parseTenant parses uploaded policy text and enforces its rules: size and
// count limits, forbid only, unique well-formed ids.
func parseTenant(source string) (policyList, error) {
	if len(source) > MaxSourceBytes {
		return nil, fmt.Errorf("%w: policy: text is %d bytes, limit is %d", kind.Invalid, len(source), MaxSourceBytes)
	}
	if strings.TrimSpace(source) == "" {
		return nil, nil
	}
	parsed, err := cedar.NewPolicyListFromBytes("tenant", []byte(source))
	if err != nil {
		msg := inputPos.ReplaceAllString(err.Error(), "line $1, column $2")
		return nil, fmt.Errorf("%w: policy: %s", kind.Invalid, msg)
	}
	if len(parsed) > MaxPolicies {
		return nil, fmt.Errorf("%w: policy: %d policies, limit is %d", kind.Invalid, len(parsed), MaxPolicies)
	}
	out := make(policyList, 0, len(parsed))
	seen := make(map[cedar.PolicyID]bool, len(parsed))
	for i, p := range parsed {
		pos := p.Position()
		where := fmt.Sprintf("line %d, column %d", pos.Line, pos.Column)
		if p.Effect() != cedar.Forbid {
			return nil, fmt.Errorf("%w: policy: %s: only forbid policies may be uploaded; a permit would widen what the profile grants", kind.Invalid, where)
		}
		name := fmt.Sprint(i)
		if a, ok := p.Annotations()["id"]; ok {
			name = string(a)
			if name == "" || len(name) > maxIDLen || strings.ContainsFunc(name, unicode.IsControl) {
				return nil, fmt.Errorf("%w: policy: %s: @id must be 1-%d bytes without control characters", kind.Invalid, where, maxIDLen)
			}
		}
		id := cedar.PolicyID(tenantPrefix + name)
		if seen[id] {
			return nil, fmt.Errorf("%w: policy: %s: duplicate policy id %q", kind.Invalid, where, id)
		}
		seen[id] = true
		out = append(out, entry{id, p})
	}
	return out, nil
}

// Validate checks uploaded tenant policy text before it is stored: size at
// most MaxSourceBytes, at most MaxPolicies policies, valid Cedar, forbid
// policies only, unique @id annotations, and a test evaluation against a
// dummy request that must complete. Evaluation errors in that test (such as a
// context attribute the dummy lacks) are expected and not reported: at call
// time they deny. Errors wrap kind.Invalid and name the line and column.
func (e *Engine) Validate(id tenant.ID, source string) error {
	s, err := e.Compile(id, nil, source)
	if err != nil {
		return err
	}
	p := Principal{Tenant: id, Profile: "validate"}
	r := Resource{Name: "validate", Scope: ScopeTenant}
	if _, _, err := s.eval(p, r, types.Record{}); err != nil {
		return fmt.Errorf("%w: policy: %v", kind.Invalid, err)
	}
	return nil
}

// Authorize decides a call. args are the call's validated JSON arguments as
// decoded by encoding/json; they become the Cedar context record:
//
//   - string → String; bool → Boolean; nil → omitted;
//   - a number is read as the digits the tool server is sent (its shortest
//     decimal form): integral and in the int64 range → Long; at most 4
//     decimal places and within Cedar's decimal range (about ±9.2e14) →
//     Decimal (Cedar never compares Long with Decimal, so
//     `context.amount >= 500` errors, and denies, when amount is 499.5);
//     any other number (1000.00004, 1e-7, 1e19) is never rounded: it is the
//     record {inexact_number: "<digits>"}, equal to no number, and any rule
//     comparing it otherwise errors, which denies;
//   - []any → Set (unordered, duplicates dropped); map[string]any → Record;
//   - json.Number as the number it spells; int and int64 → Long.
//
// Any other value (numbers out of range, NaN, nesting deeper than 32 levels,
// other Go types) denies rather than being dropped, since a dropped attribute
// could let a forbid guarded by `context has …` pass. So do a principal of a
// tenant other than the set's and any policy evaluation error; each is
// listed in Errors.
//
// Authorize knows nothing of what the turn read: it decides as
// AuthorizeLabeled does with label.Unknown (untrusted, secret), the most
// restrictive label.
func (s *Set) Authorize(p Principal, r Resource, args map[string]any) Decision {
	return s.AuthorizeLabeled(p, r, args, label.Unknown)
}

// AuthorizeLabeled is Authorize for a turn whose model has read what l
// labels: the context record also holds
//
//   - integrity: String, "trusted" or "untrusted";
//   - confidentiality: String, "public", "tenant", "end_user" or "secret".
//
// Those names are the runtime's: an argument of either name denies (tools
// may not declare one, see tools.Compile), so nothing the model writes can
// stand in for a label.
func (s *Set) AuthorizeLabeled(p Principal, r Resource, args map[string]any, l label.Label) Decision {
	for k := range args {
		if label.Reserved(k) {
			return denied("policy: argument %q has the name of a label the runtime sets", k)
		}
	}
	ctx, inexact, err := contextOf(args, l)
	if err != nil {
		return denied("%v", err)
	}
	d := s.decide(p, r, ctx, false)
	if inexact && len(d.Errors) > 0 {
		// The type error alone ("got record") would not say why.
		d.Errors = append(d.Errors, InexactError)
	}
	return d
}

// InexactError is the error Authorize adds to a decision a rule could not
// evaluate when an argument was a number Cedar cannot hold exactly: the type
// error alone ("got record") would not say why. Its text names no value.
const InexactError = "policy: an argument is a number with more than 4 decimal places or beyond Cedar's range, which rules cannot compare"

// Listable reports whether the tool may be offered to the model at all. It is
// Authorize with an empty context, except that evaluation errors in the
// tenant's own policies (such as a forbid reading an argument that is absent)
// do not deny: the call-time check decides those. Errors in global policies
// still deny. The returned Decision omits the ignored errors.
func (s *Set) Listable(p Principal, r Resource) (bool, Decision) {
	d := s.decide(p, r, types.Record{}, true)
	return d.Allow, d
}

func (s *Set) decide(p Principal, r Resource, ctx types.Record, lenient bool) Decision {
	if layers.Off("policy") { // redteamswitch builds only; see package layers
		return Decision{Allow: true, Reasons: []string{"layer off"}}
	}
	if s == nil {
		return denied("policy: no policy set")
	}
	if p.Tenant != s.tenant {
		return denied("policy: principal tenant %q does not match policy set of tenant %q", p.Tenant, s.tenant)
	}
	dec, diag, err := s.eval(p, r, ctx)
	if err != nil {
		return denied("%v", err)
	}
	var d Decision
	for _, e := range diag.Errors {
		if lenient && strings.HasPrefix(string(e.PolicyID), tenantPrefix) {
			continue
		}
		d.Errors = append(d.Errors, fmt.Sprintf("%s: %s", e.PolicyID, e.Message))
	}
	d.Allow = dec == cedar.Allow && len(d.Errors) == 0
	if d.Allow || dec == cedar.Deny {
		for _, r := range diag.Reasons {
			d.Reasons = append(d.Reasons, string(r.PolicyID))
		}
		slices.Sort(d.Reasons)
	}
	return d
}

// eval runs Cedar over the set. A panic inside the evaluator is returned as
// an error so that it denies instead of crashing the caller.
func (s *Set) eval(p Principal, r Resource, ctx types.Record) (dec cedar.Decision, diag cedar.Diagnostic, err error) {
	defer func() {
		if v := recover(); v != nil {
			dec, diag, err = cedar.Deny, cedar.Diagnostic{}, fmt.Errorf("policy: evaluation panicked: %v", v)
		}
	}()
	ents := entities{
		principal: types.Entity{
			UID:     agentUID(p.Tenant, p.Profile),
			Parents: noEntities,
			Attributes: types.NewRecord(types.RecordMap{
				"tenant": types.String(p.Tenant),
				"user":   types.String(p.User),
			}),
		},
		resource: types.Entity{
			UID:     types.NewEntityUID(toolType, types.String(r.Name)),
			Parents: noEntities,
			Attributes: types.NewRecord(types.RecordMap{
				"scope":         types.String(r.Scope),
				"owner":         types.String(r.Owner),
				"consequential": types.Boolean(r.Consequential),
				"egress":        types.String(r.Egress.String()),
				"receives":      receives(r.Egress),
			}),
		},
	}
	req := cedar.Request{
		Principal: ents.principal.UID,
		Action:    callTool,
		Resource:  ents.resource.UID,
		Context:   ctx,
	}
	policies := requestPolicies{s.global, s.permits[p.Profile], s.own}
	dec, diag = cedar.Authorize(&policies, ents, req)
	return dec, diag, nil
}

// receivesSets are the values of resource.receives, by egress.
var receivesSets = func() [label.Secret + 1]types.Set {
	var out [label.Secret + 1]types.Set
	for c := label.Public; c <= label.Secret; c++ {
		names := c.AtMost()
		vals := make([]types.Value, len(names))
		for i, n := range names {
			vals[i] = types.String(n)
		}
		out[c] = types.NewSet(vals...)
	}
	return out
}()

// receives is resource.receives for egress c; an unknown level receives
// nothing.
func receives(c label.Confidentiality) types.Set {
	if c > label.Secret {
		return types.NewSet()
	}
	return receivesSets[c]
}

func agentUID(id tenant.ID, profile string) types.EntityUID {
	return types.NewEntityUID(agentType, types.String(string(id)+"/"+profile))
}

// entities is the request's whole entity store: the principal, the resource
// and the action, none with parents.
type entities struct {
	principal, resource types.Entity
}

func (e entities) Get(uid types.EntityUID) (types.Entity, bool) {
	switch uid {
	case e.principal.UID:
		return e.principal, true
	case e.resource.UID:
		return e.resource, true
	case callTool:
		return types.Entity{UID: callTool, Parents: noEntities}, true
	}
	return types.Entity{}, false
}
