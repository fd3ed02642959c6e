// Package secret holds credentials so that they cannot be printed, logged
// or encoded by accident. A Value prints as [REDACTED] however it is
// formatted (fmt, log/slog, encoding/json, encoding.TextMarshaler), also as
// part of a larger value; its content comes out only through Reveal, which
// is called at the exact places a credential is used: where a tool
// request's header or body is filled in, where a model client sets its
// Authorization header, and in the redactor that must recognize it.
package secret

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
)

// Redacted is what a Value prints as.
const Redacted = "[REDACTED]"

// Value is a credential. The zero Value is empty.
//
// It holds a pointer, not the bytes: code that prints a struct by reflection
// without calling methods (fmt on an unexported field, say) then shows an
// address, never the credential.
type Value struct {
	p *string
}

// New returns s as a Value.
func New(s string) Value {
	if s == "" {
		return Value{}
	}
	return Value{p: &s}
}

// Reveal returns the credential itself. Call it only where the credential
// is injected into an outgoing request, or handed to the redactor.
func (v Value) Reveal() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

// IsZero reports whether v is empty.
func (v Value) IsZero() bool { return v.p == nil || *v.p == "" }

// Len returns the credential's length in bytes, which is not secret.
func (v Value) Len() int { return len(v.Reveal()) }

// Equal reports whether v and o hold the same credential, in time that does
// not depend on where they differ.
func (v Value) Equal(o Value) bool {
	return subtle.ConstantTimeCompare([]byte(v.Reveal()), []byte(o.Reveal())) == 1
}

// String returns [REDACTED].
func (Value) String() string { return Redacted }

// GoString returns [REDACTED], for %#v.
func (Value) GoString() string { return Redacted }

// Format prints [REDACTED] for every verb, so %x, %d or %q cannot reach the
// bytes either.
func (Value) Format(f fmt.State, _ rune) { fmt.Fprint(f, Redacted) }

// LogValue logs [REDACTED].
func (Value) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalJSON encodes "[REDACTED]".
func (Value) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText encodes [REDACTED], for map keys and text encoders.
func (Value) MarshalText() ([]byte, error) { return []byte(Redacted), nil }
