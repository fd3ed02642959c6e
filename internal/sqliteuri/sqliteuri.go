// Package sqliteuri builds the file: URIs the SQLite databases are opened
// with, so the control plane and the tenant stores read a path the same way.
package sqliteuri

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
)

// File returns the file: URI of the database at path with the query params.
// A URI, so no character of path can be read as a parameter. The path is made
// absolute first: a relative one would become file://data/x.db, whose first
// segment SQLite reads as a host ("invalid uri authority: data").
func File(path string, params url.Values) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("resolve database path %s: %w", path, err)
	}
	p := filepath.ToSlash(abs)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // a Windows drive, C:/x, is the URI path /C:/x
	}
	u := url.URL{Scheme: "file", Path: p, RawQuery: params.Encode()}
	return u.String(), nil
}
