package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"sync"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/guard"
	"github.com/bulkhead-ai/bulkhead/internal/label"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
)

// Results by reference (CaMeL style). A tool that declares its results held
// (tools.Definition.Held) never shows them to the model: the model reads a
// reference, "$r1", with the result's type and size, written by the
// runtime, so no instruction in the result can reach it and reading the
// reference taints nothing. Passed as a whole string argument to another
// call, the reference is replaced by the value before the guard, the
// redactor and policy see the call, and the value's label joins the turn's
// for that decision and for what the call returns.
//
// References live in the toolbox, which is one turn's: a reference never
// resolves in another turn, session, end user or tenant. A string shaped
// like a reference that this turn did not make refuses the call.

// maxRefs bounds the results one turn holds.
const maxRefs = 64

// refShape is what the model writes to name a reference.
var refShape = regexp.MustCompile(`^\$r[0-9]{1,9}$`)

// refs is one turn's held results. It is safe for concurrent use: a step's
// calls run in parallel.
type refs struct {
	mu   sync.Mutex
	vals map[string]held
	// inputs are the values held since takeInputs that external tools
	// returned: the turn's own inputs, as their results would be had they
	// been shown (inputs.go).
	inputs []string
}

type held struct {
	text  string
	label label.Label
}

// hold keeps text, labelled l, and returns what the model reads instead.
// input says whether text is one of the turn's own inputs (an external
// tool's result).
func (r *refs) hold(text string, l label.Label, input bool) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.vals == nil {
		r.vals = map[string]held{}
	}
	if len(r.vals) >= maxRefs {
		return fmt.Sprintf("error: the result was not kept: this turn holds %d results already", maxRefs)
	}
	name := "$r" + strconv.Itoa(len(r.vals)+1)
	r.vals[name] = held{text, l}
	if input {
		r.inputs = append(r.inputs, text)
	}
	kind := "text"
	if json.Valid([]byte(text)) {
		kind = "json"
	}
	return fmt.Sprintf("held as %s (%s, %d bytes): the value is not shown to you; pass %q as an argument to use it", name, kind, len(text), name)
}

// takeInputs returns the inputs held since the last take.
func (r *refs) takeInputs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	in := r.inputs
	r.inputs = nil
	return in
}

// errUnknownRef refuses a call naming a reference this turn did not make.
type errUnknownRef struct{ name string }

func (e errUnknownRef) Error() string {
	return fmt.Sprintf("unknown reference %s: a reference is valid only in the turn that made it", e.name)
}

// resolve returns v with every string that is a reference replaced by its
// value, and the join of the values' labels. Keys are never replaced. A
// reference-shaped string this turn did not make is an errUnknownRef.
func (r *refs) resolve(v any) (any, label.Label, error) {
	if !hasRef(v) {
		return v, label.Label{}, nil // the common case: nothing to copy
	}
	var used label.Label
	var walk func(any) (any, error)
	walk = func(x any) (any, error) {
		switch x := x.(type) {
		case string:
			if !refShape.MatchString(x) {
				return x, nil
			}
			r.mu.Lock()
			h, ok := r.vals[x]
			r.mu.Unlock()
			if !ok {
				return nil, errUnknownRef{x}
			}
			used = used.Join(h.label)
			return h.text, nil
		case []any:
			out := make([]any, len(x))
			for i, e := range x {
				var err error
				if out[i], err = walk(e); err != nil {
					return nil, err
				}
			}
			return out, nil
		case map[string]any:
			out := make(map[string]any, len(x))
			for k, e := range x {
				var err error
				if out[k], err = walk(e); err != nil {
					return nil, err
				}
			}
			return out, nil
		}
		return x, nil
	}
	out, err := walk(v)
	return out, used, err
}

// hasRef reports whether any string in v is shaped like a reference.
func hasRef(v any) bool {
	switch x := v.(type) {
	case string:
		return len(x) >= 3 && x[0] == '$' && refShape.MatchString(x)
	case []any:
		for _, e := range x {
			if hasRef(e) {
				return true
			}
		}
	case map[string]any:
		for _, e := range x {
			if hasRef(e) {
				return true
			}
		}
	}
	return false
}

// refMention finds references in an answer.
var refMention = regexp.MustCompile(`\$r[0-9]{1,9}\b`)

// showHeld puts into a final answer, for the user, the held values it names
// by reference, after the answer passed the guard: each value is checked by
// the guard as an answer of its own, and one more confidential than the end
// user may see (label.Secret) is not shown. shown reports whether any
// value was put in. A reference the turn did not make stays as written.
// Streamed answers are sent as the model writes them, references included.
func (a *Agent) showHeld(ctx context.Context, scope auth.Scope, profile Profile, in *guard.Inputs, r *refs, answer string) (_ string, shown bool) {
	out := refMention.ReplaceAllStringFunc(answer, func(name string) string {
		r.mu.Lock()
		h, ok := r.vals[name]
		r.mu.Unlock()
		if !ok {
			return name
		}
		if h.label.Confidentiality > label.EndUser {
			return "[" + name + " is " + h.label.Confidentiality.String() + " and is not shown]"
		}
		m, finish := llm.Message{Role: "assistant", Content: h.text}, ""
		a.guardAnswer(ctx, scope, profile, in, &m, &finish)
		shown = true
		return m.Content
	})
	return out, shown
}

// pending collects the labels of the tool results a step returns to the
// model, for the turn to join once the step is done.
type pending struct {
	mu   sync.Mutex
	read label.Label
}

func (p *pending) note(l label.Label) {
	p.mu.Lock()
	p.read = p.read.Join(l)
	p.mu.Unlock()
}

// take returns what was noted since the last take.
func (p *pending) take() label.Label {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.read
	p.read = label.Label{}
	return l
}
