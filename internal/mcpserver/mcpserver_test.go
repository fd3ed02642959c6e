package mcpserver

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// TestSelection: the profile and the end user a request selects, and what
// it may not change: the end user an end-user token names.
func TestSelection(t *testing.T) {
	for _, c := range []struct {
		name        string
		query       string
		header      map[string][]string
		tokenUser   tenant.UserID
		wantProfile string
		wantNamed   bool
		wantUser    tenant.UserID
		wantErr     bool
	}{
		{name: "default", wantProfile: "default"},
		{name: "query", query: "?profile=support", wantProfile: "support", wantNamed: true},
		{name: "header", header: map[string][]string{ProfileHeader: {"support"}}, wantProfile: "support", wantNamed: true},
		{name: "query and header agree", query: "?profile=a", header: map[string][]string{ProfileHeader: {"a"}}, wantProfile: "a", wantNamed: true},
		{name: "query and header differ", query: "?profile=a", header: map[string][]string{ProfileHeader: {"b"}}, wantErr: true},
		{name: "two profiles", query: "?profile=a&profile=b", wantErr: true},
		{name: "end user of a key", header: map[string][]string{UserHeader: {"alice"}}, wantProfile: "default", wantUser: "alice"},
		{name: "two end users", header: map[string][]string{UserHeader: {"alice", "bob"}}, wantErr: true},
		{name: "token's own user", tokenUser: "alice", header: map[string][]string{UserHeader: {"alice"}}, wantProfile: "default", wantUser: "alice"},
		{name: "token user kept", tokenUser: "alice", wantProfile: "default", wantUser: "alice"},
		{name: "token user changed", tokenUser: "alice", header: map[string][]string{UserHeader: {"mallory"}}, wantErr: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/mcp"+c.query, nil)
			for k, vs := range c.header {
				for _, v := range vs {
					r.Header.Add(k, v)
				}
			}
			scope, profile, named, err := selection(r, authtest.Scope(t, "acme", c.tokenUser))
			if c.wantErr {
				if !errors.Is(err, kind.Invalid) {
					t.Fatalf("err = %v, want kind.Invalid", err)
				}
				return
			}
			if err != nil || profile != c.wantProfile || named != c.wantNamed || scope.User() != c.wantUser || scope.Tenant() != "acme" {
				t.Errorf("got %q, %v, user %q, tenant %s, %v; want %q, %v, user %q", profile, named, scope.User(), scope.Tenant(), err, c.wantProfile, c.wantNamed, c.wantUser)
			}
		})
	}
}
