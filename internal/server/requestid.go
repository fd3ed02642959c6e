package server

import (
	"net/http"

	"github.com/bulkhead-ai/bulkhead/internal/requestid"
)

// requestIDs gives every request an id: the client's X-Request-Id when it is
// sane (requestid.Valid), else a fresh one. It is sent back in the response,
// carried in the context for log lines and audit records, and so the same
// in all three.
func requestIDs(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, withRequestID(w, r))
	})
}

// withRequestID returns r carrying a request id, set in w's headers too; a
// request that has one already is returned as it is.
func withRequestID(w http.ResponseWriter, r *http.Request) *http.Request {
	if _, ok := requestid.FromContext(r.Context()); ok {
		return r
	}
	id := requestid.Pick(r.Header.Get(requestid.Header))
	w.Header().Set(requestid.Header, id)
	return r.WithContext(requestid.NewContext(r.Context(), id))
}
