package server

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The isolation property test: random interleavings of what three tenants
// do through the HTTP API (ingest, chat with and without sessions, tool
// calls, memories, cached answers, deletes, key revocations, deleting and
// re-creating a tenant), each response checked against a model of who may
// see what. Everything a tenant stores carries a token naming the tenant
// and its incarnation ("tokpai2d5": tenant pa, second incarnation, document
// 5), so a response to pa in incarnation 2 may hold no token but pa's of
// incarnation 2, and the ones it must hold are known.
//
// BULKHEAD_PROPERTY_SEED sets the seed (default 1) and
// BULKHEAD_PROPERTY_STEPS the steps (default 200). A failure prints the
// seed and a minimal trace: the failing run's steps with every step
// dropped that the failure does not need.

var propTenants = []string{"pa", "pb", "pc"}

var propToken = regexp.MustCompile(`tok(p[abc])i(\d+)([dmsp])(\d+)`)

// propOp is one step, chosen from the seed alone, so that a trace replays
// with any steps dropped; what it acts on (the k-th live document, say)
// is resolved against the model when it runs.
type propOp struct {
	kind   string
	tenant int // index into propTenants
	other  int // a second tenant, for cross-tenant attempts
	k      int // which document, memory, user or session
	stream bool
}

func (o propOp) String() string {
	return fmt.Sprintf("%s(%s, other=%s, k=%d, stream=%v)", o.kind, propTenants[o.tenant], propTenants[o.other], o.k, o.stream)
}

var propKinds = []string{
	"ingest", "ingest", "get_doc", "delete_doc", "search", "search",
	"memory", "memories", "chat", "chat", "chat_cached", "tool", "audit",
	"revoke", "recreate", "foreign_doc",
}

func propOps(seed uint64, n int) []propOp {
	r := rand.New(rand.NewPCG(seed, 7))
	ops := make([]propOp, n)
	for i := range ops {
		ops[i] = propOp{kind: propKinds[r.IntN(len(propKinds))], tenant: r.IntN(3), other: r.IntN(3), k: r.IntN(4), stream: r.IntN(2) == 0}
	}
	return ops
}

// propDoc is a document in the model.
type propDoc struct {
	id, token string
	live      bool
}

// propState is the model of one tenant.
type propState struct {
	inc      int
	key      string
	keyID    string
	revoked  []string // keys that must be refused
	docs     []*propDoc
	memories map[string][]string // by end user: tokens
	sent     []string            // other tenants' tokens it sent itself, which its history may hold
	n        int                 // tokens made in this incarnation
}

func (s *propState) token(id, kind string) string {
	s.n++
	return fmt.Sprintf("tok%si%d%s%d", id, s.inc, kind, s.n)
}

// propRun runs ops on a fresh server and returns the first violation, with
// the index of the step that found it, or -1 and "".
func propRun(t *testing.T, ops []propOp) (int, string) {
	e := newTestEnv(t, envOptions{})
	states := make([]*propState, len(propTenants))
	create := func(i int, inc int) string {
		id := propTenants[i]
		s := &propState{inc: inc, memories: map[string][]string{}}
		r := e.do(t, "POST", "/admin/v1/tenants", testAdminToken, map[string]any{
			"id": id, "system_prompt": "You are " + fmt.Sprintf("tok%si%dp0", id, inc) + ".", "tools": []string{"kb_search", "memory_search"},
		}, nil)
		if r.status != http.StatusCreated {
			return fmt.Sprintf("create %s: %v", id, r)
		}
		s.keyID, s.key = e.newKey(t, id)
		states[i] = s
		return ""
	}
	for i := range propTenants {
		if v := create(i, 1); v != "" {
			return -1, v
		}
	}
	// own checks that body, returned to tenant i, holds only tokens of i's
	// current incarnation (of user, when it is a memory list).
	// (sent, if not empty, is a token the client itself sent, which its
	// answer may hold.)
	own := func(i int, body []byte, sent ...string) string {
		s := states[i]
		for _, m := range propToken.FindAllStringSubmatch(string(body), -1) {
			if (m[1] != propTenants[i] || m[2] != strconv.Itoa(s.inc)) && !slices.Contains(sent, m[0]) && !slices.Contains(s.sent, m[0]) {
				return fmt.Sprintf("%s (incarnation %d) sees %s", propTenants[i], s.inc, m[0])
			}
		}
		return ""
	}
	liveDoc := func(s *propState, k int) *propDoc {
		var live []*propDoc
		for _, d := range s.docs {
			if d.live {
				live = append(live, d)
			}
		}
		if len(live) == 0 {
			return nil
		}
		return live[k%len(live)]
	}
	// anyToken picks a token of any tenant, any incarnation, live or not.
	var allTokens []string
	pick := func(k int) string {
		if len(allTokens) == 0 {
			return "nothing"
		}
		return allTokens[(k*7919+len(allTokens))%len(allTokens)]
	}

	for step, op := range ops {
		i, s, id := op.tenant, states[op.tenant], propTenants[op.tenant]
		fail := func(format string, args ...any) (int, string) {
			return step, fmt.Sprintf(format, args...)
		}
		switch op.kind {
		case "ingest":
			tok := s.token(id, "d")
			r := e.do(t, "POST", "/v1/documents", s.key, map[string]any{"text": "A note about " + tok + " for the property test."}, nil)
			var d struct{ ID string }
			if r.status != http.StatusCreated || json.Unmarshal(r.body, &d) != nil || d.ID == "" {
				return fail("ingest: %v", r)
			}
			s.docs = append(s.docs, &propDoc{id: d.ID, token: tok, live: true})
			allTokens = append(allTokens, tok)
		case "get_doc", "delete_doc":
			if len(s.docs) == 0 {
				continue
			}
			d := s.docs[op.k%len(s.docs)]
			if op.kind == "delete_doc" {
				d = liveDoc(s, op.k)
				if d == nil {
					continue
				}
				if r := e.do(t, "DELETE", "/v1/documents/"+d.id, s.key, nil, nil); r.status != http.StatusNoContent {
					return fail("delete own document: %v", r)
				}
				d.live = false
			}
			r := e.do(t, "GET", "/v1/documents/"+d.id, s.key, nil, nil)
			switch {
			case d.live && (r.status != http.StatusOK || !strings.Contains(string(r.body), d.token)):
				return fail("get own live document %s: %v", d.token, r)
			case !d.live && r.status != http.StatusNotFound:
				return fail("get own deleted document %s: %v, want 404", d.token, r)
			}
			if v := own(i, r.body); v != "" {
				return fail("get document: %s", v)
			}
		case "foreign_doc":
			// Another tenant's document id, live or deleted: not found,
			// and deleting it changes nothing.
			o := states[op.other]
			if op.other == i || len(o.docs) == 0 {
				continue
			}
			d := o.docs[op.k%len(o.docs)]
			for _, m := range []string{"GET", "DELETE"} {
				if r := e.do(t, m, "/v1/documents/"+d.id, s.key, nil, nil); r.status != http.StatusNotFound {
					return fail("%s %s's document as %s: %v, want 404", m, propTenants[op.other], id, r)
				}
			}
			if d.live {
				if r := e.do(t, "GET", "/v1/documents/"+d.id, o.key, nil, nil); r.status != http.StatusOK {
					return fail("%s's document after %s tried to delete it: %v", propTenants[op.other], id, r)
				}
			}
		case "search":
			// Half the time a token of one's own live document, which must
			// be found; else any token.
			q := pick(op.k)
			d := liveDoc(s, op.k)
			if op.stream && d != nil {
				q = d.token
			}
			r := e.do(t, "POST", "/v1/search", s.key, map[string]any{"query": q, "top_k": 20, "mode": "lexical"}, nil)
			if r.status != http.StatusOK {
				return fail("search: %v", r)
			}
			if v := own(i, r.body); v != "" {
				return fail("search %q: %s", q, v)
			}
			if op.stream && d != nil && !strings.Contains(string(r.body), d.token) {
				return fail("search for own live %s does not find it: %s", d.token, r.body)
			}
		case "memory":
			user := fmt.Sprintf("u%d", op.k%2)
			tok := s.token(id, "m")
			if r := e.do(t, "POST", "/v1/memories", s.key, map[string]any{"user": user, "text": "remember " + tok}, nil); r.status != http.StatusCreated {
				return fail("add memory: %v", r)
			}
			s.memories[user] = append(s.memories[user], tok)
			allTokens = append(allTokens, tok)
		case "memories":
			user := fmt.Sprintf("u%d", op.k%2)
			r := e.do(t, "GET", "/v1/memories?user="+user, s.key, nil, nil)
			if r.status != http.StatusOK {
				return fail("list memories: %v", r)
			}
			if v := own(i, r.body); v != "" {
				return fail("memories of %s: %s", user, v)
			}
			for _, tok := range s.memories[user] {
				if !strings.Contains(string(r.body), tok) {
					return fail("memories of %s lack %s: %s", user, tok, r.body)
				}
			}
			for u, toks := range s.memories {
				for _, tok := range toks {
					if u != user && strings.Contains(string(r.body), tok) {
						return fail("memories of %s hold %s of %s", user, tok, u)
					}
				}
			}
		case "chat":
			// The model echoes its whole context: system prompt, history,
			// retrieved passages and memories. All must be the tenant's.
			tok := s.token(id, "s")
			c := chatCall{key: s.key, user: fmt.Sprintf("u%d", op.k%2), content: "about " + tok + " and " + pick(op.k) + "\n/echo", stream: op.stream}
			if op.k < 2 {
				c.session = fmt.Sprintf("s%d", op.k)
			}
			s.sent = append(s.sent, pick(op.k))
			r := e.chat(t, c)
			body, err := propContent(r, c.stream)
			if err != nil {
				return fail("chat: %v", err)
			}
			if v := own(i, body); v != "" {
				return fail("chat: %s", v)
			}
			if !strings.Contains(string(body), tok) {
				return fail("chat answer lacks its own %s", tok)
			}
		case "chat_cached":
			// Every tenant asks the same deterministic question: each
			// gets its own answer, whether cached or not.
			c := chatCall{key: s.key, content: "the same question for everyone", extra: map[string]any{"temperature": 0}, stream: op.stream}
			body, err := propContent(e.chat(t, c), c.stream)
			if err != nil {
				return fail("cached chat: %v", err)
			}
			if v := own(i, body); v != "" {
				return fail("cached chat: %s", v)
			}
			if p := fmt.Sprintf("tok%si%dp0", id, s.inc); !strings.Contains(string(body), p) {
				return fail("cached chat answer lacks the tenant's own prompt %s: %s", p, body)
			}
		case "tool":
			tool, args := "kb_search", map[string]any{"query": pick(op.k)}
			if op.stream {
				tool, args = "memory_search", map[string]any{"query": "remember"}
			}
			a, _ := json.Marshal(args)
			s.sent = append(s.sent, pick(op.k))
			r := e.chat(t, chatCall{key: s.key, user: fmt.Sprintf("u%d", op.k%2), content: "/call " + tool + " " + string(a)})
			if r.status != http.StatusOK {
				return fail("tool chat: %v", r)
			}
			if v := own(i, r.body, pick(op.k)); v != "" {
				return fail("tool %s: %s", tool, v)
			}
		case "audit":
			r := e.do(t, "GET", "/v1/audit", s.key, nil, nil)
			var a struct{ Tenant string }
			if r.status != http.StatusOK || json.Unmarshal(r.body, &a) != nil || a.Tenant != id {
				return fail("audit: %v", r)
			}
			if v := own(i, r.body); v != "" {
				return fail("audit: %s", v)
			}
		case "revoke":
			if r := e.do(t, "DELETE", "/admin/v1/tenants/"+id+"/keys/"+s.keyID, testAdminToken, nil, nil); r.status != http.StatusNoContent {
				return fail("revoke key: %v", r)
			}
			s.revoked = append(s.revoked, s.key)
			s.keyID, s.key = e.newKey(t, id)
		case "recreate":
			if r := e.do(t, "DELETE", "/admin/v1/tenants/"+id, testAdminToken, nil, nil); r.status != http.StatusNoContent {
				return fail("delete tenant: %v", r)
			}
			old := s
			if v := create(i, s.inc+1); v != "" {
				return fail("%s", v)
			}
			states[i].revoked = append(old.revoked, old.key)
		}
		// After every step: every key revoked or of a deleted incarnation
		// is refused.
		for _, k := range s.revoked {
			if r := e.do(t, "GET", "/v1/models", k, nil, nil); r.status != http.StatusUnauthorized {
				return fail("a revoked key of %s: %v, want 401", id, r)
			}
		}
	}
	return -1, ""
}

// propTry runs ops in a subtest of its own, so that each run's server is
// closed when it ends.
func propTry(t *testing.T, ops []propOp) (at int, why string) {
	t.Run("run", func(t *testing.T) { at, why = propRun(t, ops) })
	return at, why
}

// propContent returns the answer of a chat response, joined from its
// deltas when streamed (a token may be split across them).
func propContent(r response, stream bool) ([]byte, error) {
	if r.status != http.StatusOK {
		return nil, fmt.Errorf("got %v, want 200", r)
	}
	if !stream {
		c, err := answer(r)
		return []byte(c), err
	}
	sse, err := parseSSE(r)
	return []byte(sse.content), err
}

func propEnv(name string, def uint64) uint64 {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err == nil {
			return n
		}
	}
	return def
}

func TestIsolationProperty(t *testing.T) {
	seed := propEnv("BULKHEAD_PROPERTY_SEED", 1)
	steps := int(propEnv("BULKHEAD_PROPERTY_STEPS", 200))
	if testing.Short() {
		steps = min(steps, 40)
	}
	ops := propOps(seed, steps)
	at, why := propTry(t, ops)
	if at < 0 && why == "" {
		t.Logf("seed %d: %d steps held", seed, steps)
		return
	}
	if at < 0 {
		t.Fatalf("seed %d: setup: %s", seed, why)
	}
	// Shrink: drop steps, one at a time, while some step still fails.
	trace := slices.Clone(ops[:at+1])
	deadline := time.Now().Add(2 * time.Minute)
	for changed := true; changed && time.Now().Before(deadline); {
		changed = false
		for j := len(trace) - 2; j >= 0 && time.Now().Before(deadline); j-- {
			try := slices.Delete(slices.Clone(trace), j, j+1)
			if a, w := propTry(t, try); a >= 0 {
				trace, why, changed = try[:a+1], w, true
				if j >= len(trace) {
					j = len(trace) - 1
				}
			}
		}
	}
	var b strings.Builder
	for n, op := range trace {
		fmt.Fprintf(&b, "\n  %d. %s", n+1, op)
	}
	t.Fatalf("seed %d (BULKHEAD_PROPERTY_SEED=%d): step %d of the run failed: %s\nminimal trace (%d steps):%s", seed, seed, at+1, why, len(trace), b.String())
}
