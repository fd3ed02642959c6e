package store

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// CheckSecret refuses a call on a secret without an authenticated scope
// (ErrNoScope) or with a malformed name (an error wrapping kind.Invalid).
func CheckSecret(scope auth.Scope, name tenant.SecretName) error {
	if !scope.Valid() {
		return ErrNoScope
	}
	_, err := tenant.ParseSecretName(string(name))
	return err
}

// CheckDocument refuses, with an error wrapping kind.Invalid, a document to
// put whose id (when set), hash or metadata is malformed: the id must pass
// ValidDocumentID, the hash be the hex SHA-256 of the text and the metadata,
// when set, JSON.
func CheckDocument(doc Document) error {
	if doc.ID != "" && !ValidDocumentID(doc.ID) {
		return fmt.Errorf("%w: document id must be 1-128 of [A-Za-z0-9._:-]", kind.Invalid)
	}
	sum := sha256.Sum256([]byte(doc.Text))
	if doc.Hash != hex.EncodeToString(sum[:]) {
		return fmt.Errorf("%w: document hash is not the hex SHA-256 of its text", kind.Invalid)
	}
	if len(doc.Metadata) > 0 && !json.Valid(doc.Metadata) {
		return fmt.Errorf("%w: document metadata is not JSON", kind.Invalid)
	}
	return nil
}

// NewDocumentID returns "doc_" and 24 random hex digits.
func NewDocumentID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return "doc_" + hex.EncodeToString(b[:])
}

// ValidDocumentID reports whether id is 1 to 128 of [A-Za-z0-9._:-]; so it
// holds no NUL, which the encryption contexts rely on (see package seal).
func ValidDocumentID(id string) bool {
	if len(id) < 1 || len(id) > 128 {
		return false
	}
	for _, c := range []byte(id) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// CheckMemoryUser refuses, with an error wrapping kind.Invalid, an end user
// that cannot have memories: the anonymous one, which stands for any number
// of people, or a malformed id.
func CheckMemoryUser(user tenant.UserID) error {
	if user == "" {
		return fmt.Errorf("%w: memories belong to a named end user, not the anonymous one", kind.Invalid)
	}
	if _, err := tenant.ParseUserID(string(user)); err != nil {
		return fmt.Errorf("%w: %w", kind.Invalid, err)
	}
	return nil
}
