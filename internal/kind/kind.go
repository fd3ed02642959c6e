// Package kind names the few kinds of failure a caller can act on. Errors wrap
// one of these with %w; the HTTP layer maps kinds to status codes in one place.
package kind

import "errors"

var (
	Invalid         = errors.New("invalid request")
	NotFound        = errors.New("not found")
	Conflict        = errors.New("already exists")
	Unauthenticated = errors.New("unauthenticated")
	Denied          = errors.New("permission denied")
	Limited         = errors.New("rate limited")
	TooLarge        = errors.New("request too large")
	Unavailable     = errors.New("upstream unavailable")
	// Damaged is stored state that is missing or broken (a tenant database
	// deleted or truncated under the server): only the operator can help.
	Damaged = errors.New("storage damaged")
)
