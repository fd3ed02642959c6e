package control_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/control/controltest"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopPostgres()
	os.Exit(code)
}

// BenchmarkAuthenticate is key verification plus Scope creation per request
// against the real control plane holding 10,000 tenants.
func BenchmarkAuthenticate(b *testing.B) {
	ctx := context.Background()
	p, err := control.Open(ctx, filepath.Join(b.TempDir(), "control.db"), controltest.NewKEK(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	var token string
	for i := range 10_000 {
		id := tenant.ID(fmt.Sprintf("t%05d", i))
		if _, err := p.CreateTenant(ctx, controltest.NewTenant(id, "")); err != nil {
			b.Fatal(err)
		}
		keyID, secret, hash, err := auth.NewKey()
		if err != nil {
			b.Fatal(err)
		}
		if err := p.AddKey(ctx, id, keyID, hash); err != nil {
			b.Fatal(err)
		}
		token = secret.Reveal()
	}
	a, err := auth.New(p, "admin-token-for-benchmarks")
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.Tenant(r); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
