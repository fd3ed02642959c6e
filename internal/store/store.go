// Package store defines the tenant data plane: the records a tenant owns and the
// errors its backends return. Backends (store/sqlite, later store/postgres) take
// an auth.Scope on every call and must make it impossible to read or write
// another tenant's rows; the conformance tests in store/storetest prove it.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Message is one stored chat message of a session.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
	// Meta holds the rest of the message (tool calls, tool call id, name) as
	// JSON; the store does not interpret it.
	Meta      json.RawMessage `json:"meta,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
}

var (
	// ErrNoScope is returned when a call carries no authenticated scope.
	ErrNoScope = errors.New("store: no tenant scope")
	// ErrUnknownTenant is returned for a scope whose tenant is not provisioned.
	ErrUnknownTenant = errors.New("store: unknown tenant")
	// ErrNotFound is returned for a record the tenant does not have.
	ErrNotFound = fmt.Errorf("store: %w", kind.NotFound)
)

// Secret is one of a tenant's credentials, decrypted.
type Secret struct {
	Name  tenant.SecretName
	Value SecretValue
}

// SecretValue is a credential. It prints and logs as [REDACTED].
type SecretValue []byte

func (SecretValue) String() string       { return "[REDACTED]" }
func (SecretValue) GoString() string     { return "[REDACTED]" }
func (SecretValue) LogValue() slog.Value { return slog.StringValue("[REDACTED]") }

// Export is everything a tenant has stored, decrypted, except secret values.
type Export struct {
	Sessions    []ExportedSession   `json:"sessions"`
	SecretNames []tenant.SecretName `json:"secret_names"`
}

// ExportedSession is one conversation with its messages, oldest first.
type ExportedSession struct {
	User      tenant.UserID    `json:"user"`
	Session   tenant.SessionID `json:"session"`
	CreatedAt time.Time        `json:"created_at"`
	UpdatedAt time.Time        `json:"updated_at"`
	Messages  []Message        `json:"messages"`
}
