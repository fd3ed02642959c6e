// Package requestid gives every HTTP request an id that its response, its
// log lines and its audit records share, so one client call can be followed
// through all three.
package requestid

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
)

// Header is the request and response header that carries the id.
const Header = "X-Request-Id"

// MaxLen bounds a client-supplied id.
const MaxLen = 128

// New returns a fresh random id.
func New() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return "req_" + hex.EncodeToString(b[:])
}

// Valid reports whether s may be used as a client-supplied id: 1 to MaxLen
// characters from [A-Za-z0-9._-]. Anything else could forge log lines or
// headers, and is replaced by a fresh id rather than refused.
func Valid(s string) bool {
	if len(s) == 0 || len(s) > MaxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// Pick returns the client's id if it is valid, else a fresh one.
func Pick(client string) string {
	if Valid(client) {
		return client
	}
	return New()
}

type ctxKey struct{}

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the id ctx carries, if any.
func FromContext(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(ctxKey{}).(string)
	return id, ok
}

// Handler wraps h so that every record logged with a context carrying an id
// gets a "request_id" attribute.
func Handler(h slog.Handler) slog.Handler {
	if _, ok := h.(handler); ok {
		return h
	}
	return handler{h}
}

type handler struct{ slog.Handler }

func (h handler) Handle(ctx context.Context, r slog.Record) error {
	if id, ok := FromContext(ctx); ok {
		r = r.Clone()
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return handler{h.Handler.WithAttrs(attrs)}
}

func (h handler) WithGroup(name string) slog.Handler {
	return handler{h.Handler.WithGroup(name)}
}

// Annotate adds ctx's id to data as "request_id", for an audit record, and
// returns data (a new map if data is nil and there is an id).
func Annotate(ctx context.Context, data map[string]any) map[string]any {
	id, ok := FromContext(ctx)
	if !ok {
		return data
	}
	if data == nil {
		data = map[string]any{}
	}
	data["request_id"] = id
	return data
}
