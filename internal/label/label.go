// Package label provides the information-flow labels the runtime attaches
// to everything a model reads: an integrity (trusted or untrusted) and a
// confidentiality (public < tenant < end user < secret).
//
// A label is computed by the runtime from where a text came from (the
// operator's prompt, the end user, a tool), never from what the text says:
// nothing in this package reads content. A turn keeps the join of the labels
// of what its model has read so far, and policy decides each tool call on
// it (FIDES and CaMeL style information-flow control).
//
// The zero Label is the bottom of the lattice (trusted, public): the
// identity of Join, and the label of a turn that has read nothing.
package label

import (
	"encoding/json"
	"fmt"
)

// Integrity says whether anyone but the operator and the tenant could have
// written a text.
type Integrity uint8

const (
	// Trusted: written by the operator or the tenant (profile prompts).
	Trusted Integrity = iota
	// Untrusted: end-user text, documents, memories, retrieved passages,
	// tool results, upstream MCP output, anything a client sent.
	Untrusted
)

var integrityNames = [...]string{Trusted: "trusted", Untrusted: "untrusted"}

func (i Integrity) String() string {
	if int(i) < len(integrityNames) {
		return integrityNames[i]
	}
	return fmt.Sprintf("integrity(%d)", i)
}

// Confidentiality says who may learn a text, ordered from least to most
// confidential.
type Confidentiality uint8

const (
	// Public: anyone may learn it.
	Public Confidentiality = iota
	// Tenant: the tenant's own systems and staff may.
	Tenant
	// EndUser: only the end user the turn runs for (and the tenant's
	// systems that are allowed to hold that user's data).
	EndUser
	// Secret: nothing outside the runtime may.
	Secret
)

var confidentialityNames = [...]string{Public: "public", Tenant: "tenant", EndUser: "end_user", Secret: "secret"}

func (c Confidentiality) String() string {
	if int(c) < len(confidentialityNames) {
		return confidentialityNames[c]
	}
	return fmt.Sprintf("confidentiality(%d)", c)
}

// ParseConfidentiality reads "public", "tenant", "end_user" or "secret".
func ParseConfidentiality(s string) (Confidentiality, error) {
	for i, n := range confidentialityNames {
		if s == n {
			return Confidentiality(i), nil
		}
	}
	return 0, fmt.Errorf("confidentiality %q must be one of public, tenant, end_user, secret", s)
}

// AtMost lists the confidentiality names at or below c, least first: what a
// destination whose egress is c may receive.
func (c Confidentiality) AtMost() []string {
	if int(c) >= len(confidentialityNames) {
		c = Secret
	}
	return confidentialityNames[:c+1]
}

// MarshalText writes the name, so that definitions and audit records read
// "end_user", not 2.
func (c Confidentiality) MarshalText() ([]byte, error) {
	if int(c) >= len(confidentialityNames) {
		return nil, fmt.Errorf("label: unknown confidentiality %d", c)
	}
	return []byte(c.String()), nil
}

// UnmarshalText reads a name written by MarshalText.
func (c *Confidentiality) UnmarshalText(b []byte) error {
	v, err := ParseConfidentiality(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// Label is one text's, or one turn's, integrity and confidentiality.
type Label struct {
	Integrity       Integrity
	Confidentiality Confidentiality
}

// Join is the label of something derived from both l and o: untrusted if
// either is, and as confidential as the more confidential.
func (l Label) Join(o Label) Label {
	return Label{Integrity: max(l.Integrity, o.Integrity), Confidentiality: max(l.Confidentiality, o.Confidentiality)}
}

// Of returns the join of labels (the zero Label for none).
func Of(labels ...Label) Label {
	var out Label
	for _, l := range labels {
		out = out.Join(l)
	}
	return out
}

func (l Label) String() string { return l.Integrity.String() + "/" + l.Confidentiality.String() }

// The labels of the runtime's sources. Only Profile is trusted: everything
// else could have been written by someone other than the operator or the
// tenant.
var (
	// Profile is the operator's or tenant's profile prompt.
	Profile = Label{Trusted, Tenant}
	// Client is what the tenant's client sent for the turn: end-user text,
	// and whatever else the client put in its messages (client tool
	// results, system messages of its own), since the runtime cannot tell
	// where the client took it from.
	Client = Label{Untrusted, EndUser}
	// Unknown is a stored text whose label was not recorded: the most
	// confidential, untrusted.
	Unknown = Label{Untrusted, Secret}
)

// Result is the label of a tool result whose content is confidential to
// level c: tool results are always untrusted.
func Result(c Confidentiality) Label { return Label{Untrusted, c} }

// The Cedar context attributes that carry a turn's label. A call's
// arguments share the context record, so no tool may declare, and no call
// may send, an argument of these names.
const (
	ContextIntegrity       = "integrity"
	ContextConfidentiality = "confidentiality"
)

// Reserved reports whether name is a context attribute the runtime sets.
func Reserved(name string) bool {
	return name == ContextIntegrity || name == ContextConfidentiality
}

// wire is Label's JSON form, as stored with session history and written in
// audit records.
type wire struct {
	Integrity       string `json:"integrity"`
	Confidentiality string `json:"confidentiality"`
}

// MarshalJSON writes {"integrity":"…","confidentiality":"…"}.
func (l Label) MarshalJSON() ([]byte, error) {
	return json.Marshal(wire{l.Integrity.String(), l.Confidentiality.String()})
}

// UnmarshalJSON reads MarshalJSON's form; an unknown name is an error, never
// a lower label.
func (l *Label) UnmarshalJSON(b []byte) error {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("label: %w", err)
	}
	var out Label
	switch w.Integrity {
	case "trusted":
		out.Integrity = Trusted
	case "untrusted":
		out.Integrity = Untrusted
	default:
		return fmt.Errorf("label: integrity %q must be trusted or untrusted", w.Integrity)
	}
	c, err := ParseConfidentiality(w.Confidentiality)
	if err != nil {
		return fmt.Errorf("label: %w", err)
	}
	out.Confidentiality = c
	*l = out
	return nil
}
