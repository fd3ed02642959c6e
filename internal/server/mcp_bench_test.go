package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// BenchmarkMCPToolCall measures one HTTP tool called directly (a POST to
// the tool server with its token) and through /mcp (the Go SDK client's
// tools/call on an open session: JSON-RPC, the session check, schema,
// binding, policy, secret injection, guard, redaction, audit), one of each
// per iteration, and reports bulkhead's overhead at p50 and p99. Run with
// -benchtime=2000x.
func BenchmarkMCPToolCall(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"customer":"c-42","status":"active","orders":3}`)
	}))
	b.Cleanup(up.Close)
	env := newTestEnv(b, envOptions{})
	env.admin(b, "POST", "/admin/v1/tools", map[string]any{"name": "crm_lookup", "description": "Look up a customer", "scope": "tenant",
		"parameters": json.RawMessage(`{"type":"object","properties":{"customer":{"type":"string"},"tenant_id":{"type":"string"}},"required":["customer"]}`),
		"bound":      map[string]string{"tenant_id": "tenant.id"},
		"http": map[string]any{"method": "POST", "url": up.URL + "/lookup",
			"headers": map[string]string{"Authorization": "Bearer {{secret.crm_token}}"}}}, http.StatusCreated)
	env.createTenant(b, map[string]any{"id": "acme", "tools": []string{"crm_lookup"}})
	env.admin(b, "PUT", "/admin/v1/tenants/acme/secrets/crm_token", map[string]string{"value": acmeCRMToken}, http.StatusNoContent)
	_, key := env.newKey(b, "acme")

	client := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
	cs, err := client.Connect(b.Context(), &mcp.StreamableClientTransport{Endpoint: env.srv.URL + "/mcp",
		HTTPClient: &http.Client{Transport: keyTransport{base: env.client.Transport, key: key}}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer cs.Close()
	args := map[string]any{"customer": "c-42"}
	direct := []byte(`{"customer":"c-42","tenant_id":"acme"}`)

	b.ResetTimer()
	d, m := make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N)
	for range b.N {
		start := time.Now()
		r, _ := http.NewRequest(http.MethodPost, up.URL+"/lookup", bytes.NewReader(direct))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "Bearer "+acmeCRMToken)
		resp, err := env.client.Do(r)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d = append(d, time.Since(start))

		start = time.Now()
		res, err := cs.CallTool(b.Context(), &mcp.CallToolParams{Name: "crm_lookup", Arguments: args})
		if err != nil || res.IsError {
			b.Fatalf("tools/call: %+v, %v", res, err)
		}
		m = append(m, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(d)
	slices.Sort(m)
	pct := func(lat []time.Duration, p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	us := func(x time.Duration) float64 { return float64(x) / float64(time.Microsecond) }
	b.ReportMetric(us(pct(d, 0.50)), "direct-p50-µs")
	b.ReportMetric(us(pct(m, 0.50)), "mcp-p50-µs")
	b.ReportMetric(us(pct(m, 0.50)-pct(d, 0.50)), "overhead-p50-µs")
	b.ReportMetric(us(pct(m, 0.99)-pct(d, 0.99)), "overhead-p99-µs")
}
