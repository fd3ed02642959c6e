package server

import (
	"net/http"

	"github.com/bulkhead-ai/bulkhead/internal/policy"
)

// handlePolicyTemplates lists the opt-in label policies (trusted-action,
// permitted-flow) with their Cedar text, for a tenant's policy to include.
func handlePolicyTemplates() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		encode(w, http.StatusOK, map[string]any{"object": "list", "data": policy.Templates()})
	})
}
