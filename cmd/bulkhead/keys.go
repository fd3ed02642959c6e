package main

import (
	"fmt"
	"time"
)

// keyBody is the body of a key creation: nil with neither a name nor an
// expiry, so the request is the one older servers took.
func keyBody(name, expires string, now time.Time) (map[string]any, error) {
	if name == "" && expires == "" {
		return nil, nil
	}
	body := map[string]any{}
	if name != "" {
		body["name"] = name
	}
	if expires != "" {
		at, err := time.Parse(time.RFC3339, expires)
		if err != nil {
			d, derr := time.ParseDuration(expires)
			if derr != nil || d <= 0 {
				return nil, fmt.Errorf("--expires %q: want a positive duration (720h) or an RFC 3339 time", expires)
			}
			at = now.Add(d)
		}
		body["expires_at"] = at.UTC().Format(time.RFC3339)
	}
	return body, nil
}
