package server

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// kbTenants gives acme and globex near-identical documents, each with its
// own canary, and the same end user "alice" with her own memory in each.
func kbTenants(t *testing.T, env *testEnv) (acmeKey, globexKey string, acmeDoc, globexDoc string) {
	t.Helper()
	tools := []string{"kb_search", "memory_search", "memory_save"}
	env.createTenant(t, map[string]any{"id": "acme", "tools": tools})
	env.createTenant(t, map[string]any{"id": "globex", "tools": tools})
	_, acmeKey = env.newKey(t, "acme")
	_, globexKey = env.newKey(t, "globex")
	post := func(key, canary string) string {
		text := "Refund policy.\n\nCustomers may return rockets within 30 days. The internal code word is " + canary + ".\n"
		r := env.do(t, "POST", "/v1/documents", key, map[string]any{"text": text, "metadata": map[string]string{"source": "handbook"}}, nil)
		if r.status != http.StatusCreated {
			t.Fatalf("POST /v1/documents: %v", r)
		}
		var out struct{ ID string }
		json.Unmarshal(r.body, &out)
		return out.ID
	}
	acmeDoc, globexDoc = post(acmeKey, "CANARY-ACME-7731"), post(globexKey, "CANARY-GLOBEX-4409")
	for key, fact := range map[string]string{acmeKey: "alice prefers the acme blue rocket", globexKey: "alice prefers the globex red magnet"} {
		if r := env.do(t, "POST", "/v1/memories", key, map[string]string{"user": "alice", "text": fact}, nil); r.status != http.StatusCreated {
			t.Fatalf("POST /v1/memories: %v", r)
		}
	}
	return acmeKey, globexKey, acmeDoc, globexDoc
}

func TestKnowledgeIsolation(t *testing.T) {
	forBackends(t, envOptions{}, testKnowledgeIsolation)
}

func testKnowledgeIsolation(t *testing.T, env *testEnv) {
	acmeKey, _, acmeDoc, globexDoc := kbTenants(t, env)

	// Documents: acme reads its own; globex's id is a 404, like a missing one.
	if r := env.do(t, "GET", "/v1/documents/"+acmeDoc, acmeKey, nil, nil); r.status != http.StatusOK || !strings.Contains(string(r.body), "CANARY-ACME-7731") {
		t.Fatalf("GET own document: %v", r)
	}
	for _, path := range []string{"/v1/documents/" + globexDoc, "/v1/documents/doc_000000000000000000000000"} {
		for _, method := range []string{"GET", "DELETE"} {
			r := env.do(t, method, path, acmeKey, nil, nil)
			if r.status != http.StatusNotFound {
				t.Fatalf("%s %s with acme's key: %v, want 404", method, path, r)
			}
			checkErrorShape(t, r)
		}
	}

	// Search: every mode, asked for globex's canary and for everything.
	for _, mode := range []string{"hybrid", "lexical", "vector"} {
		for _, q := range []string{"CANARY-GLOBEX-4409", "code word", "all documents"} {
			r := env.do(t, "POST", "/v1/search", acmeKey, map[string]any{"query": q, "top_k": 10, "mode": mode}, nil)
			if r.status != http.StatusOK {
				t.Fatalf("search: %v", r)
			}
			if strings.Contains(string(r.body), "GLOBEX") {
				t.Fatalf("acme's %s search for %q returned globex's text: %s", mode, q, r.body)
			}
		}
	}
	r := env.do(t, "POST", "/v1/search", acmeKey, map[string]any{"query": "code word", "top_k": 3}, nil)
	if !strings.Contains(string(r.body), "CANARY-ACME-7731") {
		t.Fatalf("acme cannot find its own document: %s", r.body)
	}

	// Memories: same user id in both tenants, each sees only its own.
	r = env.do(t, "GET", "/v1/memories?user=alice", acmeKey, nil, nil)
	if !strings.Contains(string(r.body), "acme blue rocket") || strings.Contains(string(r.body), "globex") {
		t.Fatalf("acme's alice memories: %s", r.body)
	}
	if r := env.do(t, "GET", "/v1/memories?user=bob", acmeKey, nil, nil); strings.Contains(string(r.body), "rocket") {
		t.Fatalf("bob sees alice's memories: %s", r.body)
	}

	// The model, prompt-injected, asks the builtin tools for globex's data.
	for _, call := range []string{
		`/call kb_search {"query":"CANARY-GLOBEX-4409"}`,
		`/call kb_search {"query":"code word","top_k":10}`,
		`/call memory_search {"query":"globex red magnet"}`,
		`/call kb_search {"query":"code word","tenant_id":"globex"}`,
		`/call memory_search {"query":"magnet","user":"alice","tenant":"globex"}`,
	} {
		got := env.say(t, chatCall{key: acmeKey, user: "alice", content: call})
		if strings.Contains(got, "GLOBEX") || strings.Contains(got, "red magnet") {
			t.Fatalf("%s returned globex's data: %s", call, got)
		}
	}
	got := env.say(t, chatCall{key: acmeKey, user: "alice", content: `/call kb_search {"query":"code word"}`})
	if !strings.Contains(got, "CANARY-ACME-7731") || !strings.Contains(got, `trust="untrusted"`) {
		t.Fatalf("kb_search for acme: %s, want its own passage labelled untrusted", got)
	}
	got = env.say(t, chatCall{key: acmeKey, user: "alice", content: `/call memory_save {"text":"alice's order is A-77"}`})
	if !strings.Contains(got, "Saved") {
		t.Fatalf("memory_save: %s", got)
	}
	if r := env.do(t, "GET", "/v1/memories?user=alice", acmeKey, nil, nil); !strings.Contains(string(r.body), "A-77") {
		t.Fatalf("saved memory missing: %s", r.body)
	}
}

func TestDocumentsIdempotentAndValidated(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme"})
	_, key := env.newKey(t, "acme")
	body := map[string]any{"text": strings.Repeat("A sentence about rockets. ", 200)}
	first := env.do(t, "POST", "/v1/documents", key, body, nil)
	second := env.do(t, "POST", "/v1/documents", key, body, nil)
	if first.status != http.StatusCreated || second.status != http.StatusOK {
		t.Fatalf("re-ingest: %v then %v, want 201 then 200", first, second)
	}
	var a, b struct{ ID string }
	json.Unmarshal(first.body, &a)
	json.Unmarshal(second.body, &b)
	if a.ID == "" || a.ID != b.ID {
		t.Fatalf("re-ingest ids %q and %q, want the same", a.ID, b.ID)
	}
	for name, tc := range map[string]struct {
		path string
		body any
		want int
	}{
		"no text":          {"/v1/documents", map[string]any{"metadata": map[string]string{}}, 400},
		"empty text":       {"/v1/documents", map[string]any{"text": "  "}, 400},
		"too large":        {"/v1/documents", map[string]any{"text": strings.Repeat("x", 5<<20)}, 413},
		"empty query":      {"/v1/search", map[string]any{"query": ""}, 400},
		"top_k too large":  {"/v1/search", map[string]any{"query": "x", "top_k": 1000}, 400},
		"bad mode":         {"/v1/search", map[string]any{"query": "x", "mode": "magic"}, 400},
		"empty memory":     {"/v1/memories", map[string]any{"user": "alice", "text": ""}, 400},
		"unknown field":    {"/v1/search", map[string]any{"query": "x", "tenant": "globex"}, 400},
		"memory too large": {"/v1/memories", map[string]any{"user": "alice", "text": strings.Repeat("x", 9000)}, 400},
	} {
		t.Run(name, func(t *testing.T) {
			r := env.do(t, "POST", tc.path, key, tc.body, nil)
			if r.status != tc.want {
				t.Fatalf("got %v, want %d", r, tc.want)
			}
			checkErrorShape(t, r)
		})
	}
	// Delete removes it from search.
	env.do(t, "DELETE", "/v1/documents/"+a.ID, key, nil, nil)
	r := env.do(t, "POST", "/v1/search", key, map[string]any{"query": "rockets"}, nil)
	if strings.Contains(string(r.body), "rockets") {
		t.Fatalf("deleted document still found: %s", r.body)
	}
}

// TestTermlessTextBreaksNoSearch stores a document and a memory of only
// punctuation and emoji, which embed to a vector without a direction: the
// tenant's searches must go on working in every mode, and find the rest.
func TestTermlessTextBreaksNoSearch(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme", "tools": []string{"memory_search"}})
	_, key := env.newKey(t, "acme")
	for _, text := range []string{"Refunds take five days.", "!!! 🎉🎉 ... ???"} {
		if r := env.do(t, "POST", "/v1/documents", key, map[string]any{"text": text}, nil); r.status != http.StatusCreated {
			t.Fatalf("POST /v1/documents %q: %v", text, r)
		}
		if r := env.do(t, "POST", "/v1/memories", key, map[string]any{"user": "alice", "text": text}, nil); r.status != http.StatusCreated {
			t.Fatalf("POST /v1/memories %q: %v", text, r)
		}
	}
	for _, mode := range []string{"", "lexical", "vector", "hybrid"} {
		r := env.do(t, "POST", "/v1/search", key, map[string]any{"query": "refunds", "mode": mode}, nil)
		if r.status != http.StatusOK || !strings.Contains(string(r.body), "Refunds take five days.") {
			t.Errorf("search mode %q: got %v, want the refunds document", mode, r)
		}
	}
	if r := env.do(t, "POST", "/v1/search", key, map[string]any{"query": "🎉", "mode": "vector"}, nil); r.status != http.StatusOK {
		t.Errorf("search for a termless query: got %v, want 200", r)
	}
	got := env.say(t, chatCall{key: key, user: "alice", content: `/call memory_search {"query":"refunds"}`})
	if !strings.Contains(got, "Refunds take five days.") {
		t.Errorf("memory_search: got %q, want the refunds memory", got)
	}
}

// TestOwnHoneyRecordNeverFound searches for the words of the tenant's own
// honey record: it is never among the results, in any mode or through
// kb_search, so the tenant is not handed a copy of its canary to plant.
func TestOwnHoneyRecordNeverFound(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme", "tools": []string{"kb_search"}})
	_, key := env.newKey(t, "acme")
	acme, err := env.plane.Tenant("acme")
	if err != nil || len(acme.Canaries) == 0 {
		t.Fatalf("acme has no canary: %v", err)
	}
	canary := acme.Canaries[0]
	for _, text := range []string{"Internal policy: records are kept for disclosure on request.",
		"Shipping takes five days.", "Returns are free within thirty days."} {
		if r := env.do(t, "POST", "/v1/documents", key, map[string]any{"text": text}, nil); r.status != http.StatusCreated {
			t.Fatalf("ingest: %v", r)
		}
	}
	for _, mode := range []string{"lexical", "vector", "hybrid"} {
		r := env.do(t, "POST", "/v1/search", key, map[string]any{"query": "internal reference record not for disclosure", "mode": mode, "top_k": 20}, nil)
		if r.status != http.StatusOK || strings.Contains(string(r.body), canary) || strings.Contains(string(r.body), "Internal reference record") {
			t.Errorf("search mode %s: %v, want no honey record", mode, r)
		}
		// Without the filter this query finds the honey record: check that
		// search works at all on a query for the tenant's own document.
		if r := env.do(t, "POST", "/v1/search", key, map[string]any{"query": "internal policy disclosure", "mode": mode}, nil); !strings.Contains(string(r.body), "records are kept") {
			t.Errorf("search mode %s: %v, want the tenant's own document", mode, r)
		}
	}
	got := env.say(t, chatCall{key: key, content: `/call kb_search {"query":"internal reference record not for disclosure"}`})
	if strings.Contains(got, "Internal reference record") {
		t.Errorf("kb_search handed the model the honey record: %q", got)
	}
}

// TestOnlyDocumentFound stores one document: every search mode finds it,
// although its terms are in half of the tenant's texts (it and the honey
// record), which BM25 weighs at zero.
func TestOnlyDocumentFound(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme"})
	_, key := env.newKey(t, "acme")
	if r := env.do(t, "POST", "/v1/documents", key, map[string]any{"text": "Refunds are issued within five business days."}, nil); r.status != http.StatusCreated {
		t.Fatalf("ingest: %v", r)
	}
	for _, mode := range []string{"lexical", "vector", "hybrid"} {
		if r := env.do(t, "POST", "/v1/search", key, map[string]any{"query": "refunds", "mode": mode}, nil); !strings.Contains(string(r.body), "Refunds are issued") {
			t.Errorf("search mode %s: %v, want the only document", mode, r)
		}
	}
}

// TestListDocuments pages through GET /v1/documents on both backends: the
// tenant gets its own documents, newest first, with sizes and no text; never
// its honey record; never another tenant's document, whose id as a cursor
// reads exactly as a missing one.
func TestListDocuments(t *testing.T) {
	forBackends(t, envOptions{}, testListDocuments)
}

type listedDocuments struct {
	Object string `json:"object"`
	Data   []struct {
		ID, Object, Hash string
		Metadata         json.RawMessage
		Size, Chunks     int
		CreatedAt        time.Time `json:"created_at"`
		Text             *string
	} `json:"data"`
	FirstID *string `json:"first_id"`
	LastID  *string `json:"last_id"`
	HasMore bool    `json:"has_more"`
}

func testListDocuments(t *testing.T, env *testEnv) {
	env.createTenant(t, map[string]any{"id": "acme"})
	env.createTenant(t, map[string]any{"id": "globex"})
	_, acmeKey := env.newKey(t, "acme")
	_, globexKey := env.newKey(t, "globex")
	post := func(key, text string) string {
		t.Helper()
		r := env.do(t, "POST", "/v1/documents", key, map[string]any{"text": text, "metadata": map[string]int{"len": len(text)}}, nil)
		var out struct{ ID string }
		if r.status != http.StatusCreated || json.Unmarshal(r.body, &out) != nil {
			t.Fatalf("POST /v1/documents: %v", r)
		}
		return out.ID
	}
	var acmeIDs []string // newest first
	texts := map[string]string{}
	for i := range 5 {
		text := "Acme handbook page " + strconv.Itoa(i) + strings.Repeat(" and more", i) + "."
		id := post(acmeKey, text)
		acmeIDs = append([]string{id}, acmeIDs...)
		texts[id] = text
		if i < 2 {
			post(globexKey, "Globex memo "+strconv.Itoa(i)+".")
		}
	}
	list := func(key, query string) (response, listedDocuments) {
		t.Helper()
		r := env.do(t, "GET", "/v1/documents"+query, key, nil, nil)
		var l listedDocuments
		if r.status == http.StatusOK {
			if err := json.Unmarshal(r.body, &l); err != nil || l.Object != "list" || l.Data == nil {
				t.Fatalf("GET /v1/documents%s: %v: not a list (%v)", query, r, err)
			}
		}
		return r, l
	}
	acmeCanary, err := env.plane.Tenant("acme")
	if err != nil || len(acmeCanary.Canaries) == 0 {
		t.Fatalf("acme has no canary: %v", err)
	}

	// Whole pages of every size: the pages together are acme's documents.
	for _, limit := range []int{1, 2, 5, 100} {
		var got []string
		after := ""
		for page := 0; ; page++ {
			q := "?limit=" + strconv.Itoa(limit)
			if after != "" {
				q += "&after=" + after
			}
			r, l := list(acmeKey, q)
			if r.status != http.StatusOK || page > len(acmeIDs) {
				t.Fatalf("GET /v1/documents%s: %v", q, r)
			}
			if strings.Contains(string(r.body), acmeCanary.Canaries[0]) || strings.Contains(string(r.body), "Globex") {
				t.Fatalf("acme's listing holds its honey record or globex's document: %s", r.body)
			}
			for _, d := range l.Data {
				if d.Object != "document" || d.Text != nil || d.Size != len(texts[d.ID]) || d.Chunks != 1 || d.CreatedAt.IsZero() ||
					string(d.Metadata) != `{"len":`+strconv.Itoa(len(texts[d.ID]))+`}` {
					t.Errorf("listed document %+v, want acme's, size %d, without text", d, len(texts[d.ID]))
				}
				got = append(got, d.ID)
			}
			if len(l.Data) > 0 && (*l.FirstID != l.Data[0].ID || *l.LastID != l.Data[len(l.Data)-1].ID) {
				t.Errorf("first_id %s, last_id %s for page %s", *l.FirstID, *l.LastID, r.body)
			}
			if !l.HasMore {
				break
			}
			after = *l.LastID
		}
		if !slices.Equal(got, acmeIDs) {
			t.Errorf("pages of %d: got %v, want %v", limit, got, acmeIDs)
		}
	}
	// The default page holds them all; the last one says no more.
	if r, l := list(acmeKey, ""); len(l.Data) != len(acmeIDs) || l.HasMore {
		t.Errorf("GET /v1/documents: %v, want all %d, has_more false", r, len(acmeIDs))
	}
	if r, l := list(acmeKey, "?limit=5"); len(l.Data) != 5 || l.HasMore {
		t.Errorf("GET /v1/documents?limit=5: %v, want 5, has_more false", r)
	}
	if r, l := list(acmeKey, "?after="+acmeIDs[4]); r.status != http.StatusOK || len(l.Data) != 0 || l.HasMore || l.FirstID != nil {
		t.Errorf("after the oldest: %v, want an empty list", r)
	}

	// globex sees its own two, never acme's.
	if r, l := list(globexKey, ""); len(l.Data) != 2 || strings.Contains(string(r.body), "Acme") {
		t.Errorf("globex's listing: %v, want its own two documents", r)
	}
	// Another tenant's id as the cursor: the same answer as a missing one.
	missing, _ := list(globexKey, "?after=doc_000000000000000000000000")
	foreign, _ := list(globexKey, "?after="+acmeIDs[0])
	if missing.status != http.StatusBadRequest || foreign.status != missing.status ||
		strings.ReplaceAll(string(foreign.body), acmeIDs[0], "X") != strings.ReplaceAll(string(missing.body), "doc_000000000000000000000000", "X") {
		t.Errorf("globex's listing after acme's id: %v; after a missing id: %v; want the same 400", foreign, missing)
	}
	checkErrorShape(t, foreign)

	for _, q := range []string{"?limit=0", "?limit=101", "?limit=x", "?limit=1&limit=2", "?order=asc", "?tenant=globex", "?before=" + acmeIDs[0]} {
		r, _ := list(acmeKey, q)
		if r.status != http.StatusBadRequest {
			t.Errorf("GET /v1/documents%s: %v, want 400", q, r)
		}
		checkErrorShape(t, r)
	}
	if r, l := list(acmeKey, "?order=desc&limit=1"); r.status != http.StatusOK || len(l.Data) != 1 || !l.HasMore {
		t.Errorf("GET /v1/documents?order=desc&limit=1: %v", r)
	}
}

// TestOwnHoneyRecordNotReadable: the honey record's id, which only the
// operator's export shows, is not found by the tenant's document API.
func TestOwnHoneyRecordNotReadable(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme"})
	_, key := env.newKey(t, "acme")
	exp := env.admin(t, "GET", "/admin/v1/tenants/acme/export", nil, http.StatusOK)
	var e struct {
		Data struct{ Documents []struct{ ID, Text string } }
	}
	if err := json.Unmarshal(exp.body, &e); err != nil || len(e.Data.Documents) != 1 || !strings.HasPrefix(e.Data.Documents[0].Text, "Internal reference record") {
		t.Fatalf("export: %s, want the honey record alone (%v)", exp.body, err)
	}
	honey := e.Data.Documents[0].ID
	for _, method := range []string{"GET", "DELETE"} {
		if r := env.do(t, method, "/v1/documents/"+honey, key, nil, nil); r.status != http.StatusNotFound {
			t.Errorf("%s the honey record: %v, want 404", method, r)
		}
	}
	if r := env.do(t, "GET", "/v1/documents", key, nil, nil); !strings.Contains(string(r.body), `"data":[]`) {
		t.Errorf("listing with only the honey record: %v, want an empty list", r)
	}
	exp = env.admin(t, "GET", "/admin/v1/tenants/acme/export", nil, http.StatusOK)
	if !strings.Contains(string(exp.body), honey) {
		t.Errorf("the honey record is gone after the tenant's DELETE: %s", exp.body)
	}
}

// TestReadmeSearchExample runs the README's knowledge-base example exactly
// as written: its query finds its document in every search mode (lexical
// search stems "Refunds" and "refund" to one term).
func TestReadmeSearchExample(t *testing.T) {
	forBackends(t, envOptions{}, func(t *testing.T, env *testEnv) {
		env.createTenant(t, map[string]any{"id": "acme"})
		_, key := env.newKey(t, "acme")
		if r := env.do(t, "POST", "/v1/documents", key, `{"text":"# Refunds\n\nRefunds are accepted within 30 days.","metadata":{"source":"handbook"}}`, nil); r.status != http.StatusCreated {
			t.Fatalf("POST /v1/documents: %v", r)
		}
		for _, mode := range []string{"", "hybrid", "lexical", "vector"} {
			body := `{"query":"refund window","top_k":5}`
			if mode != "" {
				body = `{"query":"refund window","top_k":5,"mode":"` + mode + `"}`
			}
			r := env.do(t, "POST", "/v1/search", key, body, nil)
			if r.status != http.StatusOK || !strings.Contains(string(r.body), "Refunds are accepted within 30 days.") {
				t.Errorf("search %s, mode %q: %v, want the refunds document", body, mode, r)
			}
		}
	})
}
