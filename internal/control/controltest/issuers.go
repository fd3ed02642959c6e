package controltest

import (
	"context"
	"errors"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
)

// testIssuers: issuer registrations and CORS origins are stored with the
// tenant, survive a restart, and one issuer and audience belong to one
// tenant only.
func testIssuers(t *testing.T, b Backend) {
	ctx := context.Background()
	kek := NewKEK(t)
	p := MustOpen(t, b, kek)
	create(t, p, "acme", "globex")
	idp := authtest.NewIssuer(t, "https://login.example")
	reg := func(aud string) auth.Issuer {
		return auth.Issuer{Issuer: idp.URL, Audience: aud, JWKS: idp.JWKS(), Algorithms: []string{"RS256"}}
	}
	acme, err := p.AddIssuer(ctx, "acme", reg("acme-app"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.AddIssuer(ctx, "globex", reg("acme-app")); !errors.Is(err, kind.Conflict) {
		t.Fatalf("globex registering acme's issuer and audience: %v, want conflict", err)
	}
	if _, err := p.AddIssuer(ctx, "globex", reg("globex-app")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.AddIssuer(ctx, "acme", auth.Issuer{Issuer: idp.URL, Audience: "x", JWKS: idp.JWKS(), Algorithms: []string{"HS256"}}); !errors.Is(err, kind.Invalid) {
		t.Fatalf("HS256 registration: %v, want invalid", err)
	}
	if _, err := p.UpdateTenant(ctx, "acme", func(t *control.Tenant) error {
		t.CORSOrigins = []string{"https://app.example"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	p.Close()

	p = MustOpen(t, b, kek)
	recs := p.IssuerRecords(idp.URL)
	if len(recs) != 2 {
		t.Fatalf("after reopening, %d registrations of %s, want 2", len(recs), idp.URL)
	}
	for _, r := range recs {
		if r.Issuer.Audience != string(r.Tenant)+"-app" || r.Incarnation.Tenant() != r.Tenant || string(r.Issuer.JWKS) != string(idp.JWKS()) {
			t.Fatalf("registration read back as %+v", r)
		}
	}
	if !p.OriginListed("https://app.example") || p.OriginListed("https://evil.example") {
		t.Fatal("cors origins not read back")
	}
	if err := p.DeleteIssuer(ctx, "globex", acme.ID); !errors.Is(err, kind.NotFound) {
		t.Fatalf("globex deleting acme's issuer: %v, want not found", err)
	}
	if err := p.DeleteIssuer(ctx, "acme", acme.ID); err != nil {
		t.Fatal(err)
	}
	if recs := p.IssuerRecords(idp.URL); len(recs) != 1 || recs[0].Tenant != "globex" {
		t.Fatalf("after deleting acme's, registrations %+v", recs)
	}
}
