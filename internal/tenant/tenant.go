// Package tenant defines the named types that identify tenants and the people
// and conversations inside them. Parsing is strict so that an id read from any
// input is safe to use as a map key, a file-name component or a SQL value.
package tenant

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// ID names a tenant: lowercase letters, digits, '-' and '_', 1 to 63 bytes,
// starting with a letter or digit.
type ID string

// UserID names a tenant's end user. It is chosen by the tenant's backend and is
// meaningful only inside that tenant.
type UserID string

// SessionID names one conversation of one end user.
type SessionID string

// SecretName names one of a tenant's stored credentials.
type SecretName string

// KeyID is the public, non-secret part of an API key.
type KeyID string

// Status is a tenant's lifecycle state.
type Status string

const (
	StatusActive    Status = "active"
	StatusSuspended Status = "suspended"
)

// ErrInvalid is wrapped by every parse error in this package.
var ErrInvalid = errors.New("invalid identifier")

var (
	idPattern      = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	sessionPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
	secretPattern  = regexp.MustCompile(`^[a-z0-9_][a-z0-9_.-]{0,63}$`)
)

// ParseSecretName validates s as a secret name: 1-64 of [a-z0-9_.-], not
// starting with '.' or '-'.
func ParseSecretName(s string) (SecretName, error) {
	if !secretPattern.MatchString(s) {
		return "", fmt.Errorf("%w: secret name %q must be 1-64 of [a-z0-9_.-], starting with a letter, digit or '_'", ErrInvalid, s)
	}
	return SecretName(s), nil
}

// ParseID validates s as a tenant id.
func ParseID(s string) (ID, error) {
	if !idPattern.MatchString(s) {
		return "", fmt.Errorf("%w: tenant id %q must be 1-63 of [a-z0-9_-], starting with a letter or digit", ErrInvalid, s)
	}
	return ID(s), nil
}

// MaxUserIDLen bounds end-user ids.
const MaxUserIDLen = 256

// ParseUserID validates s as an end-user id. The empty string is allowed and
// means "anonymous"; it is still a distinct user from every named one.
func ParseUserID(s string) (UserID, error) {
	if len(s) > MaxUserIDLen || !utf8.ValidString(s) {
		return "", fmt.Errorf("%w: user must be valid UTF-8 of at most %d bytes", ErrInvalid, MaxUserIDLen)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("%w: user must not contain control characters", ErrInvalid)
		}
	}
	return UserID(s), nil
}

// ParseSessionID validates s as a session id.
func ParseSessionID(s string) (SessionID, error) {
	if !sessionPattern.MatchString(s) {
		return "", fmt.Errorf("%w: session id must be 1-128 of [A-Za-z0-9._:-]", ErrInvalid)
	}
	return SessionID(s), nil
}

// ParseStatus validates s as a tenant status.
func ParseStatus(s string) (Status, error) {
	switch Status(s) {
	case StatusActive, StatusSuspended:
		return Status(s), nil
	}
	return "", fmt.Errorf("%w: status must be %q or %q", ErrInvalid, StatusActive, StatusSuspended)
}

// Incarnation names one life of a tenant: its id and the storage id the
// control plane drew at random when that tenant was created, as
// "<id>@<storage id>". A tenant deleted and created again under the same id
// is a new incarnation, so state keyed by the incarnation (store handles,
// caches, indexes, quota buckets, tool sessions, audit queues) never passes
// from the old tenant to the new one. It starts with the tenant id, so keys
// built from it still lead with the tenant.
type Incarnation string

// NewIncarnation returns the incarnation of tenant id whose storage id is
// storage.
func NewIncarnation(id ID, storage string) Incarnation {
	return Incarnation(string(id) + "@" + storage)
}

// Tenant returns the tenant id part of i.
func (i Incarnation) Tenant() ID {
	id, _, _ := strings.Cut(string(i), "@")
	return ID(id)
}

// Storage returns the storage id part of i, empty if it has none.
func (i Incarnation) Storage() string {
	_, s, _ := strings.Cut(string(i), "@")
	return s
}

// CheckIncarnation reports, as an error, whether i is well formed: a valid
// tenant id, optionally followed by '@' and a storage id of lowercase hex
// digits. Without a storage id it names a tenant outside any control plane
// (unit tests of one component); a control plane never hands one out.
func CheckIncarnation(i Incarnation) error {
	id, storage, found := strings.Cut(string(i), "@")
	if _, err := ParseID(id); err != nil {
		return err
	}
	if found && !storagePattern.MatchString(storage) {
		return fmt.Errorf("%w: storage id of incarnation %q must be 1-64 lowercase hex digits", ErrInvalid, i)
	}
	return nil
}

var storagePattern = regexp.MustCompile(`^[0-9a-f]{1,64}$`)
