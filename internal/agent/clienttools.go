package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/tools"
)

// Client tools are declared by the request (OpenAI's "tools") and run by the
// client. The model sees them next to the profile's server-side tools; a
// call to one is checked as a server-side call is (strict decoding, the
// client's schema, the guard, the redactor, policy on Tool::"client/<name>")
// and then, instead of being executed, returned to the client with the
// arguments as checked. The client's follow-up request carries the results
// as "tool" messages: untrusted input, like user text.
//
// A model step is returned to the client only when every call in it is a
// client call and every one passed. Otherwise the step is answered inside
// Bulkhead, statelessly: the server-side calls run, and each client call
// gets a tool message saying why it was not returned (refused, or held back
// because the step also called server-side tools or another call was
// refused), so the model, which then sees every result, calls again. Running
// the server-side calls and returning the client ones in one answer would
// need the server-side half kept until the follow-up, which a request
// without X-Session-Id has nowhere to keep.

// Messages for the model about client calls that were not returned.
const (
	heldMixed   = "error: not returned to the client: this step also called server-side tools; call client tools in a step of their own, after reading the other results"
	heldTooMany = "error: not returned to the client: too many tool calls in one step"
	heldRefused = "error: not returned to the client: another call of this step was refused; call this one again if it is still needed"
	heldOneCall = "error: not returned to the client: this client takes one function call per answer; call one function at a time"
)

// addClientTools offers the turn's client tools, or refuses the request
// (kind.Invalid, naming the tool): when the profile takes none, when one
// is declared twice, when one has the name of a server-side tool of the
// profile (whether or not policy offers that tool, so the answer does not
// depend on policy), or when one declares a parameter the runtime fills
// for the profile's server-side tools, or tenant_id. Only the profile's
// own tools count: a 400 for the name of a tool in the catalog would tell
// the tenant about tools it cannot see. A client tool policy forbids is not
// offered; a call to it is refused and audited by name.
func (b *toolbox) addClientTools(profile Profile, decls []llm.Tool) error {
	if len(decls) == 0 {
		return nil
	}
	if profile.NoClientTools {
		return fmt.Errorf("%w: tools: the model %q does not take client tools", kind.Invalid, profile.Name)
	}
	runtime := []string{"tenant_id"}
	if b.a.Tools != nil {
		for _, name := range profile.Tools {
			if t, ok := b.a.Tools.Tool(name); ok {
				for param := range t.Bound {
					runtime = append(runtime, param)
				}
			}
		}
	}
	b.client = map[string]*tools.Tool{}
	for _, d := range decls {
		name := d.Function.Name
		if slices.Contains(profile.Tools, name) {
			return fmt.Errorf("%w: tools: client tool %q has the name of a server-side tool of the model %q", kind.Invalid, name, profile.Name)
		}
		if _, dup := b.client[name]; dup {
			return fmt.Errorf("%w: tools: client tool %q is declared twice", kind.Invalid, name)
		}
		if r := b.red.String(name); r != name {
			return fmt.Errorf("%w: tools: a client tool name holds a tenant secret", kind.Invalid)
		}
		t, err := tools.CompileClient(b.scope.Tenant(), name, d.Function.Description, d.Function.Parameters, runtime)
		if err != nil {
			return err
		}
		b.client[name] = t
		if ok, _ := b.set.Listable(b.principal, resource(t)); !ok {
			continue
		}
		b.offered = append(b.offered, llm.Tool{Type: "function", Function: llm.FunctionDef{
			Name: name, Description: d.Function.Description, Parameters: t.VisibleParameters(), Strict: d.Function.Strict}})
	}
	return nil
}

// isClient reports whether the model's call names a declared client tool.
func (b *toolbox) isClient(tc llm.ToolCall) bool {
	_, ok := b.client[tc.Function.Name]
	return ok
}

// clientStep decides a model step's client calls. It returns the calls to
// give the client, as checked and with fresh ids, when the step is one to
// return. Otherwise held has, for each client call, the tool message that
// says why it was not returned (nil when the step calls no client tool).
func (b *toolbox) clientStep(ctx context.Context, calls []llm.ToolCall) (returned []llm.ToolCall, held []string) {
	clients := 0
	for _, tc := range calls {
		if b.isClient(tc) {
			clients++
		}
	}
	if clients == 0 {
		return nil, nil
	}
	held = make([]string, len(calls))
	switch {
	case len(calls) > maxCallsPerStep:
		for i := range held {
			held[i] = heldTooMany
		}
	case b.oneCall && clients > 1:
		// The legacy functions API answers with one function_call.
		for i, tc := range calls {
			if b.isClient(tc) {
				held[i] = heldOneCall
			}
		}
	case clients == len(calls):
		refused := false
		for i, tc := range calls {
			out, msg, ok := b.checkClient(ctx, tc)
			if !ok {
				held[i], refused = msg, true
				continue
			}
			returned = append(returned, out)
		}
		if !refused {
			return returned, nil
		}
		for i := range held {
			if held[i] == "" {
				held[i] = heldRefused
			}
		}
	default:
		for i, tc := range calls {
			if b.isClient(tc) {
				held[i] = heldMixed
			}
		}
	}
	return nil, held
}

// runStep runs a step's server-side calls and returns the tool messages
// for the model in the calls' order, the client calls answered from held
// (clientStep).
func (b *toolbox) runStep(ctx context.Context, calls []llm.ToolCall, held []string) []llm.Message {
	if held == nil {
		return b.run(ctx, calls)
	}
	var server []llm.ToolCall
	for _, tc := range calls {
		if !b.isClient(tc) {
			server = append(server, tc)
		}
	}
	ran := b.run(ctx, server)
	msgs := make([]llm.Message, len(calls))
	for i, tc := range calls {
		if b.isClient(tc) {
			msgs[i] = toolMessage(tc, held[i])
			continue
		}
		msgs[i], ran = ran[0], ran[1:]
	}
	return msgs
}

// checkClient checks one client call on the path of a server-side call
// (toolbox.authorize), and returns it as the client gets it: the arguments
// the checks passed, in their canonical encoding, and an id of Bulkhead's,
// since the model's could carry anything.
func (b *toolbox) checkClient(ctx context.Context, tc llm.ToolCall) (llm.ToolCall, string, bool) {
	t := b.client[tc.Function.Name]
	// The name is the tenant's own; the server log gets a label.
	log := b.a.Logger.With("tenant", b.scope.Tenant(), "tool", tools.ClientPrefix+tools.Opaque(tc.Function.Name))
	args, _, log, msg, ok := b.authorize(ctx, log, t, tc.Function.Arguments)
	if !ok {
		return llm.ToolCall{}, msg, false
	}
	log.InfoContext(ctx, "client tool call returned to the client")
	return llm.ToolCall{ID: newCallID(), Type: "function",
		Function: llm.FunctionCall{Name: tc.Function.Name, Arguments: string(args.JSON)}}, "", true
}

func newCallID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return "call_" + hex.EncodeToString(b[:])
}

// withoutRepeat drops the client's copy of the assistant message that ended
// the stored history: a client keeping a session server-side may still
// send back the tool-call message it was given, before its tool results,
// and the model must see it once.
func withoutRepeat(stored, fresh []llm.Message) []llm.Message {
	if len(stored) == 0 || len(fresh) == 0 {
		return fresh
	}
	last, first := stored[len(stored)-1], fresh[0]
	if last.Role != "assistant" || first.Role != "assistant" || len(last.ToolCalls) == 0 || len(last.ToolCalls) != len(first.ToolCalls) {
		return fresh
	}
	for i, tc := range last.ToolCalls {
		again := first.ToolCalls[i]
		// A legacy function_call comes back without an id: the same call
		// is the same function with the same (checked) arguments.
		legacy := again.ID == "" && again.Function == tc.Function
		if tc.ID != again.ID && !legacy {
			return fresh
		}
	}
	return fresh[1:]
}

// linkLegacy gives ids to the calls and results of OpenAI's legacy
// functions API, which has none: an assistant message's function_call gets
// one of its position, and a "function" message (a tool message with a
// name and no tool_call_id) answers the open call of that name in the
// assistant message before it, whether the client sent that message or the
// session history holds it. A result that answers no call is refused.
func linkLegacy(msgs []llm.Message) error {
	var open []llm.ToolCall // calls of the last assistant message not yet answered
	for i := range msgs {
		m := &msgs[i]
		switch m.Role {
		case "assistant":
			for j := range m.ToolCalls {
				if m.ToolCalls[j].ID == "" {
					m.ToolCalls[j].ID = fmt.Sprintf("call_fn%d_%d", i, j)
				}
			}
			open = slices.Clone(m.ToolCalls)
		case "tool":
			k := slices.IndexFunc(open, func(tc llm.ToolCall) bool {
				if m.ToolCallID == "" {
					return tc.Function.Name == m.Name
				}
				return tc.ID == m.ToolCallID
			})
			if k < 0 {
				if m.ToolCallID == "" {
					return fmt.Errorf("%w: messages: the function message of %q answers no function_call of the assistant message before it", kind.Invalid, m.Name)
				}
				continue
			}
			if m.ToolCallID == "" {
				// Linked by its id now; a tool message's name is no
				// member of OpenAI's tool messages, and a strict provider
				// would refuse it.
				m.Name = ""
			}
			m.ToolCallID = open[k].ID
			open = slices.Delete(open, k, k+1)
		}
	}
	return nil
}
