package server

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/memory"
)

// The red team's attacks on the inputs exemption (guard.Inputs): another
// tenant planting its canary or token where the reader's model reads it, in
// forms the checks of what leaves read differently. Each asserts the safe
// outcome; each failed on the exemption's first version. (Its findings
// accepted rather than fixed are in the README, "Why canaries and secrets
// are no weapon".)

// provWorld is a planter (tenant B) with a canary, a short and a long
// tracked token, and a reader (tenant A) whose own tool fetches a page the
// planter controls.
type provWorld struct {
	env                   *testEnv
	canary, token, long   string
	readerKey, planterKey string

	mu   sync.Mutex
	page string
}

func provRandom(t *testing.T, n int) string {
	t.Helper()
	raw := make([]byte, n)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(raw)
}

func newProvWorld(t *testing.T) *provWorld {
	t.Helper()
	w := &provWorld{env: newTestEnv(t, envOptions{})}
	env := w.env
	const planter, reader = "planter", "reader"
	w.token = "pl_" + provRandom(t, 24)
	w.long = provRandom(t, 216) // 288 bytes: three units of 96
	env.createTenant(t, map[string]any{"id": planter, "system_prompt": "You are the planter's assistant.", "tools": []string{}})
	env.admin(t, "PUT", "/admin/v1/tenants/"+planter+"/secrets/api_token", map[string]string{"value": w.token}, http.StatusNoContent)
	env.admin(t, "PUT", "/admin/v1/tenants/"+planter+"/secrets/bundle", map[string]string{"value": w.long}, http.StatusNoContent)
	w.canary = hostileCanary(t, env, planter)
	site := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		w.mu.Lock()
		p := w.page
		w.mu.Unlock()
		rw.Header().Set("Content-Type", "text/plain")
		_, _ = rw.Write([]byte(p))
	}))
	t.Cleanup(site.Close)
	env.admin(t, "POST", "/admin/v1/tools", map[string]any{"name": "fetch_faq", "description": "Fetch the public FAQ", "scope": "tenant",
		"parameters": map[string]any{"type": "object", "properties": map[string]any{}},
		"http":       map[string]any{"method": "GET", "url": site.URL + "/faq"}}, http.StatusCreated)
	env.admin(t, "POST", "/admin/v1/tools", map[string]any{"name": "post_note", "description": "Post a note", "scope": "tenant",
		"parameters": map[string]any{"type": "object", "properties": map[string]any{"text": map[string]any{"type": "string"}}},
		"http":       map[string]any{"method": "POST", "url": site.URL + "/note"}}, http.StatusCreated)
	env.createTenant(t, map[string]any{"id": reader, "system_prompt": "You are the reader's assistant.",
		"tools": []string{"fetch_faq", "post_note", memory.ToolMemorySave, memory.ToolKBSearch, memory.ToolMemorySearch}})
	_, w.readerKey = env.newKey(t, reader)
	_, w.planterKey = env.newKey(t, planter)
	return w
}

func (w *provWorld) setPage(p string) {
	w.mu.Lock()
	w.page = p
	w.mu.Unlock()
}

// planterHeard returns the planter's audit records after seq, as text.
func (w *provWorld) planterHeard(t *testing.T, seq int64) []string {
	t.Helper()
	var out []string
	for _, r := range auditLog(t, w.env, "/v1/audit?after="+strconv.FormatInt(seq, 10), w.planterKey) {
		out = append(out, r.Type+" "+string(r.Data))
	}
	return out
}

// provSplit cuts v in two halves around a piece of markup.
// provJSONString writes s as a JSON string without escaping HTML, as a
// client would write it in its message.
func provJSONString(s string) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

func provSplit(v, markup string) string { return v[:len(v)/2] + markup + v[len(v)/2:] }

// provMarkups are pieces of markup the output guard's link stage removes
// (the host is not on the reader's allow-list), which the input scan reads
// as they stand.
var provMarkups = []struct{ name, markup string }{
	{"inline link", "[x](https://evil.example/a)"},
	{"image", "![x](https://evil.example/a.png)"},
	{"empty link", "[](https://evil.example/a)"},
	{"autolink", "<https://evil.example/a>"},
	{"html anchor", `<a href="https://evil.example/">`},
	{"html img", `<img src="https://evil.example/p.png">`},
	{"dangling bracket link", "](https://evil.example/a)"},
	{"closing anchor", "</a>"},
	{"html comment", "<!-- x -->"},
	{"span tag", "<span>"},
	{"anchor with text", `<a href="https://evil.example/">x</a>`},
	{"reference definition", "\n[r]: https://evil.example/\n"},
	{"reference link", "[x][r]\n\n[r]: https://evil.example/\n"},
	{"invisible run", strings.Repeat("\u2060", 8)},
	{"invisible char refs", strings.Repeat("&#x2060;", 8)},
	{"soft hyphens", strings.Repeat("\u00ad", 8)},
	{"entity split", "&amp;"},
}

// TestProvenanceMarkupFormsPlantedData: the planter splits its canary
// or token by a link to a host nobody allows. The reader's input scan sees
// no canary; the output guard removes the link, which forms it, and the
// second pass blocks it as another tenant's "leak", telling the planter.
func TestProvenanceMarkupFormsPlantedData(t *testing.T) {
	w := newProvWorld(t)
	for _, mk := range provMarkups {
		for _, what := range []struct{ name, v string }{{"canary", w.canary}, {"token", w.token}} {
			for _, stream := range []bool{false, true} {
				name := mk.name + "/" + what.name + "/stream=" + strconv.FormatBool(stream)
				t.Run(name, func(t *testing.T) {
					w.setPage("Public FAQ. Reference " + provSplit(what.v, mk.markup) + " end.")
					seq := auditEnd(t, w.env, w.planterKey)
					got := w.env.say(t, chatCall{key: w.readerKey, content: "/call fetch_faq {}", stream: stream})
					if strings.Contains(got, "withheld") {
						t.Errorf("the reader's answer quoting the page its own tool fetched was withheld: %q", got)
					}
					for _, r := range w.planterHeard(t, seq) {
						t.Errorf("the planter's log records %s: it learns the reader's model quoted its page", r)
					}
				})
			}
		}
	}
}

// TestProvenanceMarkupInToolArguments: as above, but the reader's
// model passes the page on to another of its external tools.
func TestProvenanceMarkupInToolArguments(t *testing.T) {
	w := newProvWorld(t)
	for _, mk := range provMarkups {
		for _, what := range []struct{ name, v string }{{"canary", w.canary}, {"token", w.token}} {
			t.Run(mk.name+"/"+what.name, func(t *testing.T) {
				page := "Public FAQ. Reference " + provSplit(what.v, mk.markup) + " end."
				w.setPage(page)
				seq := auditEnd(t, w.env, w.planterKey)
				w.env.say(t, chatCall{key: w.readerKey, content: "/call fetch_faq {}\n/call post_note {\"text\":" + provJSONString(page) + "}"})
				for _, r := range w.planterHeard(t, seq) {
					t.Errorf("the planter's log records %s: it learns the reader's model passed its page on", r)
				}
			})
		}
	}
}

// TestProvenanceIngestScreenMissesMarkup: the ingest screen reads the
// text as the input scan does, so a canary split by a refused link is
// stored; retrieved and quoted, the link's removal forms it, the answer is
// withheld and the planter told.
func TestProvenanceIngestScreenMissesMarkup(t *testing.T) {
	for i, mk := range provMarkups {
		t.Run(mk.name, func(t *testing.T) {
			w := newProvWorld(t) // a knowledge base of its own
			topic := "widgets" + strconv.Itoa(i)
			doc := "Public FAQ about " + topic + " and gadgets. Reference " + provSplit(w.canary, mk.markup) + " end of the " + topic + " FAQ."
			r := w.env.do(t, "POST", "/v1/documents", w.readerKey, map[string]any{"text": doc}, nil)
			if r.status == http.StatusBadRequest {
				return // refused at the door: safe
			}
			if r.status != http.StatusCreated && r.status != http.StatusOK {
				t.Fatalf("POST /v1/documents: %v", r)
			}
			seq := auditEnd(t, w.env, w.planterKey)
			for _, stream := range []bool{false, true} {
				got := w.env.say(t, chatCall{key: w.readerKey, content: "/call kb_search {\"query\":\"" + topic + " FAQ\"}", stream: stream})
				if strings.Contains(got, "withheld") {
					t.Errorf("stream=%v: stored (the screen passed it), the page quoted from the knowledge base is withheld: %q", stream, got)
				}
			}
			for _, r := range w.planterHeard(t, seq) {
				t.Errorf("the planter's log records %s: it learns its page is in the reader's knowledge base and was quoted", r)
			}
		})
	}
}

// TestProvenanceOneUnitExemptsWholeSecret: the exemption is per
// secret, not per unit it was matched by. The reader holds one 96-byte unit
// of the planter's long secret (say the public half of a bundle); carrying
// that unit in its message exempts every other unit, which arrive through
// a runtime path (a model that learned them elsewhere) and pass.
func TestProvenanceOneUnitExemptsWholeSecret(t *testing.T) {
	w := newProvWorld(t)
	seq := auditEnd(t, w.env, w.planterKey)
	public, private := w.long[:96], w.long[96:192]
	for _, stream := range []bool{false, true} {
		got := w.env.say(t, chatCall{key: w.readerKey, stream: stream, extra: map[string]any{"messages": []map[string]any{
			{"role": "user", "content": "The public part I have: " + public},
			{"role": "user", "content": unseen("/say " + w.long)},
		}}})
		if strings.Contains(got, private) {
			t.Errorf("stream=%v: the planter's secret units the reader never had reached it: one carried unit exempted the whole secret", stream)
		}
	}
	if len(w.planterHeard(t, seq)) == 0 {
		t.Errorf("the planter was not told that units of its secret the reader never held left towards it")
	}
	// Control: without the carried unit the same answer is withheld.
	got := w.env.say(t, chatCall{key: w.readerKey, content: unseen("/say " + w.long)})
	if strings.Contains(got, private) {
		t.Errorf("control: the long secret with no unit carried passed: %q", got)
	}
}

// TestProvenanceClientSystemMessageInHistory: a client puts the
// public page it fetched into a system (developer) message, a common RAG
// pattern. That turn passes (the client sent it). Stored, the next turn's
// history holds it in a system message, which turnInputs does not count,
// so the model quoting the conversation is withheld and the planter told.
func TestProvenanceClientSystemMessageInHistory(t *testing.T) {
	w := newProvWorld(t)
	page := "Public FAQ. Reference " + w.canary + ". Demo token: " + w.token + "."
	first := w.env.say(t, chatCall{key: w.readerKey, session: "s-rag", extra: map[string]any{"messages": []map[string]any{
		{"role": "developer", "content": "Context from the web: " + page},
		{"role": "user", "content": "/say ok"},
	}}})
	if strings.Contains(first, "withheld") {
		t.Fatalf("first turn withheld: %q", first)
	}
	seq := auditEnd(t, w.env, w.planterKey)
	for _, stream := range []bool{false, true} {
		got := w.env.say(t, chatCall{key: w.readerKey, session: "s-rag", stream: stream, content: "/echo"})
		if strings.Contains(got, "withheld") {
			t.Errorf("stream=%v: the next turn quoting the conversation was withheld (the client's own page, stored in a system message)", stream)
		}
	}
	for _, r := range w.planterHeard(t, seq) {
		t.Errorf("the planter's log records %s: it learns its page was in the reader's conversation", r)
	}
}

// TestProvenanceBuiltinRefusedByPlantedText: the planter's page makes
// the reader's own builtin tool calls fail: a kb_search whose query quotes
// the page it fetched is refused.
func TestProvenanceBuiltinRefusedByPlantedText(t *testing.T) {
	w := newProvWorld(t)
	page := "Public FAQ. Reference " + w.canary + " end."
	w.setPage(page)
	got := w.env.say(t, chatCall{key: w.readerKey, content: "/call fetch_faq {}\n/call kb_search {\"query\":" + hostileJSONString(page) + "}"})
	if strings.Contains(got, "refused") {
		t.Errorf("the reader's kb_search quoting the page its own tool fetched was refused: %q", got)
	}
}

// provDropLastAlnum cuts s before its last letter or digit: the guard
// matches a squeezed view without '-' and '_', so dropping only one of those
// would leave the same value.
func provDropLastAlnum(s string) string {
	i := strings.LastIndexFunc(s, func(r rune) bool {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9'
	})
	return s[:max(i, 0)]
}

// TestProvenanceScreenPrefixOracle: the screen must not answer for
// less than a whole canary or unit: a prefix of the planter's canary or
// token is stored like any text. It ends the text: letters after it would
// complete it when one is its last (separators are seen through).
func TestProvenanceScreenPrefixOracle(t *testing.T) {
	w := newProvWorld(t)
	for _, p := range []struct{ name, v string }{
		{"canary minus one", provDropLastAlnum(w.canary)},
		{"canary half", w.canary[:len(w.canary)/2]},
		{"token minus one", provDropLastAlnum(w.token)},
		{"long secret unit minus one", provDropLastAlnum(w.long[:96])},
	} {
		r := w.env.do(t, "POST", "/v1/documents", w.readerKey, map[string]any{"text": "Notes on " + p.name + ": " + p.v}, nil)
		if r.status == http.StatusBadRequest {
			t.Errorf("%s: the screen refused a prefix (%v): it confirms less than a whole value", p.name, r)
		}
	}
}

// TestProvenanceMemoryScreenMissesMarkup: F2 for memories. A memory
// whose text splits the planter's canary by a removed link is stored;
// memory_search hands it to the model, the quote is withheld and the
// planter told.
func TestProvenanceMemoryScreenMissesMarkup(t *testing.T) {
	w := newProvWorld(t)
	text := "The user likes widgets; see " + provSplit(w.canary, "[](https://evil.example/a)") + " for the widget list."
	r := w.env.do(t, "POST", "/v1/memories", w.readerKey, map[string]any{"user": "u1", "text": text}, nil)
	if r.status == http.StatusBadRequest {
		return // refused at the door: safe
	}
	seq := auditEnd(t, w.env, w.planterKey)
	got := w.env.say(t, chatCall{key: w.readerKey, user: "u1", content: "/call memory_search {\"query\":\"widgets\"}"})
	if strings.Contains(got, "withheld") {
		t.Errorf("stored (the screen passed it), the memory quoted is withheld: %q", got)
	}
	for _, r := range w.planterHeard(t, seq) {
		t.Errorf("the planter's log records %s: it learns its text is in the reader's memories and was quoted", r)
	}
}

// TestProvenanceCachedToolAnswer: with cache_tool_answers, an answer
// that quoted the planter's page (fetched by the reader's own tool) is
// cached; served again from the cache, the tools do not run, so the inputs
// no longer carry the canary and the cached answer is withheld, the planter
// told.
func TestProvenanceCachedToolAnswer(t *testing.T) {
	w := newProvWorld(t)
	w.env.createTenant(t, map[string]any{"id": "cacher", "system_prompt": "You are the cacher's assistant.",
		"tools": []string{"fetch_faq"}, "cache_tool_answers": true})
	_, key := w.env.newKey(t, "cacher")
	w.setPage("Public FAQ. Reference " + w.canary + ". Demo token: " + w.token + ".")
	seq := auditEnd(t, w.env, w.planterKey)
	var err error
	for i, stream := range []bool{false, false, true} {
		c := chatCall{key: key, content: "/call fetch_faq {}", stream: stream, extra: map[string]any{"temperature": 0}}
		r := w.env.chat(t, c)
		if i > 0 && r.header.Get("X-Bulkhead-Cache") != "hit" {
			t.Logf("request %d: not a cache hit", i+1)
		}
		var got string
		if stream {
			sse, err := parseSSE(r)
			if err != nil {
				t.Fatal(err)
			}
			got = sse.content
		} else if got, err = answer(r); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(got, "withheld") || !strings.Contains(got, w.canary) {
			t.Errorf("request %d (stream=%v): the answer quoting the page the reader's own tool fetched = %q, want it whole", i+1, stream, got)
		}
	}
	for _, r := range w.planterHeard(t, seq) {
		t.Errorf("the planter's log records %s: it learns, from a cached answer, that its page was quoted", r)
	}
}
