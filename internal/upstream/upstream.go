// Package upstream provides what Bulkhead's clients for OpenAI-compatible
// HTTP APIs share: checking a base URL, an HTTP client that does not follow
// redirects, retries with backoff and Retry-After, and error messages read
// from upstream bodies with the API key removed.
package upstream

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// BaseURL checks that raw is an http or https URL with a host and without
// user info, a query or a fragment, and returns it without trailing slashes.
// Its errors never repeat raw, which may hold a credential.
func BaseURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the url.Error repeats the raw URL
		}
		return "", fmt.Errorf("invalid base URL: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", errors.New("invalid base URL: scheme must be http or https")
	case u.Host == "":
		return "", errors.New("invalid base URL: missing host")
	case u.User != nil:
		return "", errors.New("invalid base URL: user info not allowed (use APIKey)")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", errors.New("invalid base URL: query and fragment not allowed")
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// NewClient returns a client with a dedicated keep-alive transport that waits
// at most timeout for response headers and does not follow redirects: a
// redirect comes back as the response itself rather than replaying the
// request (and its credentials) somewhere else.
func NewClient(timeout time.Duration) *http.Client {
	var t *http.Transport
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		t = dt.Clone()
	} else {
		t = &http.Transport{Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true}
	}
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 64
	t.IdleConnTimeout = 90 * time.Second
	t.ResponseHeaderTimeout = timeout
	return &http.Client{
		Transport: t,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
