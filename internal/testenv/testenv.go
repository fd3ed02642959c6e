// Package testenv lets tests depend on optional tools (Node, PostgreSQL,
// Redis, …) without silently passing when they are missing.
//
// Locally a missing dependency skips the test with a loud message; with
// BULKHEAD_REQUIRE_ALL=1 (as CI sets it) the test fails instead, so nothing
// is skipped unnoticed there.
package testenv

import (
	"os"
	"testing"
)

// RequireAllEnv is the environment variable that turns skips into failures.
const RequireAllEnv = "BULKHEAD_REQUIRE_ALL"

// Require stops the test unless ok. what names the dependency and hint says
// how to provide it. It fails the test when BULKHEAD_REQUIRE_ALL=1 and skips
// it otherwise.
func Require(t testing.TB, what string, ok bool, hint string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv(RequireAllEnv) == "1" {
		t.Fatalf("%s is required (%s=1): %s", what, RequireAllEnv, hint)
	}
	t.Skipf("SKIPPED — %s not available: %s. CI sets %s=1 and fails instead.", what, hint, RequireAllEnv)
}
