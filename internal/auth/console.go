package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/websession"
)

// consoleKey derives the console sessions' signing key from the admin
// token's hash: every replica holds the token, so a session one issues works
// on all, and changing the token ends every session. The cookie never holds
// the token or anything it could be recovered from.
func consoleKey(admin [sha256.Size]byte) []byte {
	m := hmac.New(sha256.New, admin[:])
	m.Write([]byte("bulkhead console session v1"))
	return m.Sum(nil)
}

// ConsoleSessions returns the codec of console session cookies and their
// anti-forgery tokens.
func (a *Authenticator) ConsoleSessions() *websession.Codec { return a.sessions }

// SignIn checks a credential typed into the console's sign-in form, the
// admin token or a tenant API key (never an end user's token: end users have
// no console), and returns the session to issue for it.
func (a *Authenticator) SignIn(credential string) (websession.Session, error) {
	sum := sha256.Sum256([]byte(credential))
	if subtle.ConstantTimeCompare(sum[:], a.admin[:]) == 1 {
		return a.sessions.Start(websession.Session{Operator: true})
	}
	scope, err := a.keyScope(credential)
	if err != nil {
		return websession.Session{}, err
	}
	return a.sessions.Start(websession.Session{Tenant: scope.tenant, Incarnation: scope.inc, Key: scope.key})
}

// errSessionEnded is a tenant session whose key, tenant or incarnation is
// no longer what it signed in with.
var errSessionEnded = errors.New("console session ended")

// Session opens a console session cookie and returns ctx carrying what it
// grants: for the operator, the mark RequireAdmin sets; for a tenant, the
// Scope of its key as the key's current record allows it, checked on every
// request as API requests are, so that a revoked or expired key, or a
// suspended, deleted or re-created tenant, ends the session at once.
func (a *Authenticator) Session(ctx context.Context, cookie string) (context.Context, websession.Session, error) {
	s, err := a.sessions.Open(cookie)
	if err != nil {
		return nil, s, fmt.Errorf("%w: %w", kind.Unauthenticated, err)
	}
	if s.Operator {
		return context.WithValue(ctx, adminKey{}, true), s, nil
	}
	rec, ok := a.keys.KeyRecord(s.Key)
	if !ok || rec.Tenant != s.Tenant || rec.Incarnation != s.Incarnation {
		return nil, s, fmt.Errorf("%w: %w", kind.Unauthenticated, errSessionEnded)
	}
	scope, err := recordScope(s.Key, rec)
	if err != nil {
		return nil, s, err
	}
	return withScope(ctx, scope), s, nil
}
