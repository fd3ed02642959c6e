//go:build redteamswitch

package redteam_test

import (
	"context"
	"crypto/rand"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/config"
	"github.com/bulkhead-ai/bulkhead/internal/layers"
	"github.com/bulkhead-ai/bulkhead/internal/redteam"
	"github.com/bulkhead-ai/bulkhead/internal/server"
)

// switchable are the layers package layers can switch off.
var switchable = []redteam.Layer{redteam.LayerPolicy, redteam.LayerBinding, redteam.LayerRedaction, redteam.LayerAnswer,
	redteam.LayerStream, redteam.LayerToolArgs, redteam.LayerToolRes, redteam.LayerCache, redteam.LayerQuota, redteam.LayerLifecycle,
	redteam.LayerAuth, redteam.LayerStore} // store last: what it wrote while off stays in the shared store

// TestEveryLayerCaught is the proof that the suite can fail: with each
// isolation layer switched off in turn, at least one scenario must report a
// leak. A layer no scenario notices is a gap in the suite.
func TestEveryLayerCaught(t *testing.T) {
	target, admin := startServer(t)
	for _, l := range switchable {
		t.Run(string(l), func(t *testing.T) {
			t.Setenv(layers.Env, string(l))
			rep, err := redteam.Run(t.Context(), redteam.Options{Target: target, AdminToken: admin})
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			var caught []string
			for _, r := range rep.Results {
				if r.Leaked() {
					caught = append(caught, r.Name)
				}
			}
			if len(caught) == 0 {
				t.Fatalf("layer %s off: no scenario reported a leak (%s)", l, rep.Summary())
			}
			t.Logf("layer %s off: %s; leaking scenarios: %s", l, rep.Summary(), strings.Join(caught, ", "))
		})
	}
}

func startServer(t *testing.T) (target, admin string) {
	t.Helper()
	cfg, err := config.Parse([]byte("providers:\n  - name: redteam\n    type: redteam\n"))
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	admin = "redteam-test-admin-token"
	inst, err := server.Open(context.Background(), server.Options{DataDir: t.TempDir(), Config: cfg, AdminToken: admin, MasterKey: key})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(inst.Handler())
	t.Cleanup(func() {
		srv.Close()
		inst.Close()
	})
	return srv.URL, admin
}
