package upstream

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	backoffCap    = 5 * time.Second
	retryAfterCap = 10 * time.Second
)

// Hint marks a failed attempt as one that may be retried. When HasAfter is
// set, After is the wait the upstream asked for in Retry-After.
type Hint struct {
	After    time.Duration
	HasAfter bool
}

// StatusHint returns a Hint for a response whose status may be retried (429,
// 500, 502, 503 or 504), carrying its Retry-After; nil for any other status.
func StatusHint(resp *http.Response) *Hint {
	if !retryable(resp.StatusCode) {
		return nil
	}
	h := &Hint{}
	h.After, h.HasAfter = retryAfter(resp.Header.Get("Retry-After"), retryAfterCap)
	return h
}

// Retry calls attempt until it succeeds, fails with a nil *Hint, or has been
// retried retries times; it returns the result of the last call. Between
// calls it waits for the Hint's Retry-After, or else for an exponential
// backoff from base, capped at 5s, with equal jitter. When ctx is done after
// a failure, Retry returns ctx.Err(); when ctx's deadline would pass during
// the wait, it returns the failure at once.
func Retry[T any](ctx context.Context, retries int, base time.Duration, attempt func() (T, *Hint, error)) (T, error) {
	var zero T
	for n := 0; ; n++ {
		v, hint, err := attempt()
		if err == nil {
			return v, nil
		}
		if cerr := ctx.Err(); cerr != nil {
			return zero, cerr
		}
		if hint == nil || n >= retries {
			return zero, err
		}
		wait := hint.After
		if !hint.HasAfter {
			wait = backoff(n, base, backoffCap)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return zero, err // the caller's deadline would pass while waiting
		}
		if werr := sleep(ctx, wait); werr != nil {
			return zero, werr
		}
	}
}

// RetryAfter parses a response's Retry-After value (delay-seconds or an HTTP
// date) into a wait of at most an hour, for passing on to a client; it
// reports false when the value is missing or malformed.
func RetryAfter(v string) (time.Duration, bool) {
	return retryAfter(v, time.Hour)
}

// retryable reports whether a response with status may succeed if sent again.
func retryable(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// backoff returns the wait before retry number attempt+1: base doubled
// attempt times, at most limit, of which half is fixed and half random
// (equal jitter).
func backoff(attempt int, base, limit time.Duration) time.Duration {
	d := limit
	if attempt < 30 {
		d = min(base<<attempt, limit)
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// retryAfter parses a Retry-After value, delay-seconds or an HTTP date, into
// a wait of at most limit. It reports false for an empty, negative or
// malformed value.
func retryAfter(v string, limit time.Duration) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.Atoi(v); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int(limit/time.Second) {
			return limit, true
		}
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(time.Until(t), 0), limit), true
	}
	return 0, false
}

// sleep waits for d or until ctx is done, and then returns ctx.Err().
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
