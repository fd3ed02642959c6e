package server

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/agent"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/quota"
	"github.com/bulkhead-ai/bulkhead/internal/requestid"
)

// apiError is OpenAI's error shape.
type apiError struct {
	Error apiErrorBody `json:"error"`
}

type apiErrorBody struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    string  `json:"code"`
}

// errMethodNotAllowed is the one error kind only routing produces.
var errMethodNotAllowed = errors.New("method not allowed")

// errorStatus is the one place an error becomes an HTTP status and the
// OpenAI error fields. Internal errors are logged and reported only as
// "internal error": their text may hold details a client must not see.
func errorStatus(err error) (status int, typ, code, message string) {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge), errors.Is(err, kind.TooLarge):
		return http.StatusRequestEntityTooLarge, "invalid_request_error", "request_too_large", "request body too large"
	case errors.Is(err, errMethodNotAllowed):
		return http.StatusMethodNotAllowed, "invalid_request_error", "method_not_allowed", err.Error()
	case errors.Is(err, kind.Invalid):
		return http.StatusBadRequest, "invalid_request_error", "invalid_request", err.Error()
	case errors.Is(err, kind.NotFound):
		return http.StatusNotFound, "invalid_request_error", "not_found", err.Error()
	case errors.Is(err, kind.Conflict):
		return http.StatusConflict, "invalid_request_error", "conflict", err.Error()
	case errors.Is(err, kind.Unauthenticated):
		return http.StatusUnauthorized, "authentication_error", "invalid_api_key", err.Error()
	case errors.Is(err, kind.Denied):
		return http.StatusForbidden, "permission_error", "permission_denied", err.Error()
	case errors.Is(err, kind.Limited):
		return http.StatusTooManyRequests, "rate_limit_error", "rate_limit_exceeded", err.Error()
	case errors.Is(err, kind.Unavailable):
		// The cause names upstream hosts and internals: it goes to the log only.
		return http.StatusBadGateway, "api_error", "upstream_error", "the model provider failed; try again later"
	case errors.Is(err, kind.Damaged):
		// Which file is gone is the operator's business: it is in the log.
		return http.StatusServiceUnavailable, "api_error", "storage_unavailable", "the tenant's data is unavailable; the operator has been alerted"
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "api_error", "timeout", "request timed out"
	case errors.Is(err, context.Canceled):
		// The client went away: nobody reads this, and it is no server error.
		return statusClientClosed, "api_error", "client_closed_request", "the client closed the request"
	}
	return http.StatusInternalServerError, "api_error", "internal_error", "internal error"
}

// statusClientClosed is nginx's "client closed request", for the log.
const statusClientClosed = 499

// writeError sends err to the client in OpenAI's shape and logs it. A
// Retry-After goes with a 429: the tenant's own limit's, or the model
// provider's. A 502 or 504 says x-should-retry: false, which OpenAI's SDKs
// obey: the provider call was already retried here, and a client retrying
// it again would multiply the calls one request costs.
func writeError(logger *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	r = withRequestID(w, r)
	err = streamCause(r, err)
	status, typ, code, message := errorStatus(err)
	var limited *quota.LimitedError
	var upstream *agent.LimitedError
	switch {
	case errors.As(err, &limited):
		w.Header().Set("Retry-After", retryAfterSeconds(limited.RetryAfter))
	case errors.As(err, &upstream) && upstream.HasRetryAfter:
		w.Header().Set("Retry-After", retryAfterSeconds(upstream.RetryAfter))
	}
	if status == http.StatusBadGateway || status == http.StatusGatewayTimeout {
		w.Header().Set("X-Should-Retry", "false")
	}
	logFailure(logger, r, "request failed", status, code, err)
	encode(w, status, apiError{Error: apiErrorBody{Message: message, Type: typ, Code: code}})
}

func retryAfterSeconds(d time.Duration) string {
	return strconv.Itoa(int(math.Ceil(d.Seconds())))
}

// streamCause replaces a cancellation by its cause when the request was
// cancelled for a reason of the server's (a tenant deleted, a key revoked),
// so that only a client that went away reads as one.
func streamCause(r *http.Request, err error) error {
	if !errors.Is(err, context.Canceled) {
		return err
	}
	if cause := context.Cause(r.Context()); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// logFailure logs a failed request. The log gets the route, not the path,
// and a client error's code, not its message: both carry what the client
// sent (ids, model names, a pasted secret), which the operator's log must
// not hold verbatim. A server error's cause is the runtime's own and is what
// the operator needs.
func logFailure(logger *slog.Logger, r *http.Request, msg string, status int, code string, err error, attrs ...slog.Attr) {
	level := slog.LevelInfo
	attrs = append(attrs, slog.String("method", r.Method), slog.String("route", cmp.Or(r.Pattern, "unmatched")),
		slog.Int("status", status), slog.String("code", code))
	if id, ok := requestid.FromContext(r.Context()); ok {
		attrs = append(attrs, slog.String("request_id", id))
	}
	if status >= 500 {
		level = slog.LevelError
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	logger.LogAttrs(r.Context(), level, msg, attrs...)
}
