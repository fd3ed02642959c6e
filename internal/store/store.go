// Package store defines the tenant data plane: the records a tenant owns and the
// errors its backends return. Backends (store/sqlite, later store/postgres) take
// an auth.Scope on every call and must make it impossible to read or write
// another tenant's rows; the conformance tests in store/storetest prove it.
package store

import (
	"errors"
	"time"
)

// Message is one stored chat message of a session.
type Message struct {
	Role    string
	Content string
	// Meta holds the rest of the message (tool calls, tool call id, name) as
	// JSON; the store does not interpret it.
	Meta      []byte
	CreatedAt time.Time
}

var (
	// ErrNoScope is returned when a call carries no authenticated scope.
	ErrNoScope = errors.New("store: no tenant scope")
	// ErrUnknownTenant is returned for a scope whose tenant is not provisioned.
	ErrUnknownTenant = errors.New("store: unknown tenant")
)
