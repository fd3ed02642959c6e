package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

const (
	maxIssuers     = 16
	maxCORSOrigins = 32
)

func validateIssuers(is []auth.Issuer) error {
	if len(is) > maxIssuers {
		return fmt.Errorf("%w: more than %d issuers", kind.Invalid, maxIssuers)
	}
	for i, a := range is {
		if a.ID == "" {
			return fmt.Errorf("%w: issuer without an id", kind.Invalid)
		}
		if err := a.Validate(); err != nil {
			return err
		}
		for _, b := range is[:i] {
			if a.ID == b.ID {
				return fmt.Errorf("%w: issuer id %s appears twice", kind.Invalid, a.ID)
			}
			if a.Issuer == b.Issuer && a.Audience == b.Audience {
				return fmt.Errorf("%w: issuer %s with audience %q is already registered", kind.Conflict, a.Issuer, a.Audience)
			}
		}
	}
	return nil
}

// CanonicalOrigin returns s as a browser sends it in Origin: scheme, host
// and port only, lower case. Wildcards and "null" are refused: an origin
// list names the tenant's own front ends.
func CanonicalOrigin(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || strings.Contains(u.Host, "*") {
		return "", fmt.Errorf("%w: cors origin %q must be scheme://host[:port]", kind.Invalid, s)
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

func validateOrigins(origins []string) error {
	if len(origins) > maxCORSOrigins {
		return fmt.Errorf("%w: more than %d cors origins", kind.Invalid, maxCORSOrigins)
	}
	for _, o := range origins {
		c, err := CanonicalOrigin(o)
		if err != nil {
			return err
		}
		if c != o {
			return fmt.Errorf("%w: cors origin %q must be written %q", kind.Invalid, o, c)
		}
	}
	return nil
}

// IssuerRecords implements auth.Issuers: the registrations of issuer iss in
// every tenant. A replica that has not heard from the database for longer
// than PostgresOptions.MaxStaleness finds none, as it finds no key.
func (p *Plane) IssuerRecords(iss string) []auth.IssuerRecord {
	if !p.fresh() {
		return nil
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	var out []auth.IssuerRecord
	for _, t := range p.tenants {
		for _, i := range t.Issuers {
			if i.Issuer == iss {
				out = append(out, auth.IssuerRecord{Tenant: t.ID, Incarnation: t.Incarnation(), Status: t.Status, Issuer: i})
			}
		}
	}
	return out
}

// OriginListed reports whether some active tenant lists origin among its
// CORS origins: enough to answer a browser's preflight, which carries no
// credential. Whether the response may be read is decided per tenant, once
// the request has authenticated.
func (p *Plane) OriginListed(origin string) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, t := range p.tenants {
		if t.Status == tenant.StatusActive && slices.Contains(t.CORSOrigins, origin) {
			return true
		}
	}
	return false
}

// AddIssuer registers an end-user token issuer for tenant id and returns it
// with its new id. An issuer and audience another tenant registered is a
// conflict: a token must name exactly one tenant.
// An empty iss.ID is given a new one (NewIssuerID).
func (p *Plane) AddIssuer(ctx context.Context, id tenant.ID, iss auth.Issuer) (auth.Issuer, error) {
	if iss.ID == "" {
		var err error
		if iss.ID, err = NewIssuerID(); err != nil {
			return auth.Issuer{}, err
		}
	}
	iss.CreatedAt = p.stamp()
	if err := iss.Validate(); err != nil {
		return auth.Issuer{}, err
	}
	_, err := p.UpdateTenant(ctx, id, func(t *Tenant) error {
		for _, r := range p.IssuerRecords(iss.Issuer) {
			if r.Tenant != id && r.Issuer.Audience == iss.Audience {
				return fmt.Errorf("%w: issuer %s with audience %q is registered by another tenant; use a distinct audience", kind.Conflict, iss.Issuer, iss.Audience)
			}
		}
		t.Issuers = append(t.Issuers, iss)
		return nil
	})
	if err != nil {
		return auth.Issuer{}, err
	}
	return iss, nil
}

// DeleteIssuer removes registration issuerID of tenant id. Tokens it
// admitted stop working at once (on other replicas, once they follow).
func (p *Plane) DeleteIssuer(ctx context.Context, id tenant.ID, issuerID string) error {
	_, err := p.UpdateTenant(ctx, id, func(t *Tenant) error {
		i := slices.IndexFunc(t.Issuers, func(x auth.Issuer) bool { return x.ID == issuerID })
		if i < 0 {
			return fmt.Errorf("%w: issuer %s", kind.NotFound, issuerID)
		}
		t.Issuers = slices.Delete(t.Issuers, i, i+1)
		return nil
	})
	return err
}

// NewIssuerID returns a fresh issuer registration id.
func NewIssuerID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate issuer id: %w", err)
	}
	return "iss_" + hex.EncodeToString(b[:]), nil
}
