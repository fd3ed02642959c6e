package server

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"hash/fnv"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/config"
)

// fakeEmbeddings is an OpenAI-compatible /v1/embeddings upstream that
// counts the texts it embeds per API key. Its vectors depend on the key as
// well as the text, as if each key reached a deployment of its own, so a
// vector served to the wrong tenant would show.
type fakeEmbeddings struct {
	srv *httptest.Server

	mu    sync.Mutex
	texts map[string]int // Authorization header → texts embedded
}

func newFakeEmbeddings(t *testing.T) *fakeEmbeddings {
	f := &fakeEmbeddings{texts: map[string]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Model string   `json:"model"`
			Input []string `json:"input"`
		}
		if r.URL.Path != "/v1/embeddings" || json.NewDecoder(r.Body).Decode(&req) != nil {
			http.Error(w, `{"error":{"message":"bad request"}}`, http.StatusBadRequest)
			return
		}
		auth := r.Header.Get("Authorization")
		f.mu.Lock()
		f.texts[auth] += len(req.Input)
		f.mu.Unlock()
		h := fnv.New32a()
		h.Write([]byte(auth))
		type datum struct {
			Index     int       `json:"index"`
			Embedding []float32 `json:"embedding"`
		}
		data := make([]datum, len(req.Input))
		for i, text := range req.Input {
			data[i] = datum{Index: i, Embedding: []float32{float32(h.Sum32()%97) + 1, float32(len(text)), 1}}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": data})
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// embedded returns how many texts the upstream embedded with the bearer key.
func (f *fakeEmbeddings) embedded(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if key == "" {
		return f.texts[""]
	}
	return f.texts["Bearer "+key]
}

// embeddingsEnv is a server with the fake upstream configured as "byok"
// (each tenant's own key, from its secret embed_key) and as "shared" (the
// operator's key, from the environment).
func embeddingsEnv(t *testing.T) (*testEnv, *fakeEmbeddings) {
	f := newFakeEmbeddings(t)
	env := newTestEnv(t, envOptions{
		embedders: map[string]config.Embedder{
			"byok":   {Type: "openai", BaseURL: f.srv.URL + "/v1", Model: "fake-embed", APIKeySecret: "embed_key"},
			"shared": {Type: "openai", BaseURL: f.srv.URL + "/v1", Model: "fake-embed", APIKeyEnv: "SHARED_EMBED_KEY"},
		},
		env: map[string]string{"SHARED_EMBED_KEY": "operator-shared-key"},
	})
	return env, f
}

// embeddingsReply is the part of an embeddings response the tests read.
type embeddingsReply struct {
	Object string `json:"object"`
	Model  string `json:"model"`
	Data   []struct {
		Object    string          `json:"object"`
		Index     int             `json:"index"`
		Embedding json.RawMessage `json:"embedding"`
	} `json:"data"`
	Usage struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

// embed posts body to /v1/embeddings, wants a 200 and returns the vectors.
func (e *testEnv) embed(t *testing.T, key string, body map[string]any) (embeddingsReply, [][]float32) {
	t.Helper()
	r := e.do(t, "POST", "/v1/embeddings", key, body, nil)
	if r.status != http.StatusOK {
		t.Fatalf("POST /v1/embeddings %v: got %v, want 200", body, r)
	}
	var rep embeddingsReply
	if err := json.Unmarshal(r.body, &rep); err != nil {
		t.Fatalf("decode embeddings: %v (%s)", err, r.body)
	}
	vecs := make([][]float32, len(rep.Data))
	for i, d := range rep.Data {
		if d.Object != "embedding" || d.Index != i {
			t.Fatalf("data[%d] = object %q index %d, want embedding %d", i, d.Object, d.Index, i)
		}
		var s string
		if json.Unmarshal(d.Embedding, &s) == nil {
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil || len(b)%4 != 0 {
				t.Fatalf("data[%d]: bad base64 embedding %q", i, s)
			}
			for j := 0; j < len(b); j += 4 {
				vecs[i] = append(vecs[i], math.Float32frombits(binary.LittleEndian.Uint32(b[j:])))
			}
		} else if err := json.Unmarshal(d.Embedding, &vecs[i]); err != nil {
			t.Fatalf("data[%d]: embedding %s: %v", i, d.Embedding, err)
		}
	}
	return rep, vecs
}

func equalVectors(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestEmbeddings(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme"})
	_, key := env.newKey(t, "acme")

	rep, one := env.embed(t, key, map[string]any{"model": "default", "input": "refund policy"})
	if rep.Object != "list" || rep.Model != "default" || len(one) != 1 || len(one[0]) == 0 {
		t.Fatalf("got object %q model %q %d vectors, want a list from default with one vector", rep.Object, rep.Model, len(one))
	}
	if rep.Usage.PromptTokens <= 0 || rep.Usage.TotalTokens != rep.Usage.PromptTokens {
		t.Errorf("usage = %+v, want positive prompt_tokens equal to total_tokens", rep.Usage)
	}

	// An array keeps its order; base64 carries the same floats.
	texts := []string{"shipping times", "refund policy", "shipping times"}
	_, many := env.embed(t, key, map[string]any{"model": "default", "input": texts, "user": "alice"})
	_, b64 := env.embed(t, key, map[string]any{"model": "default", "input": texts, "encoding_format": "base64"})
	if len(many) != 3 || len(b64) != 3 {
		t.Fatalf("got %d and %d vectors, want 3 each", len(many), len(b64))
	}
	for i := range many {
		if !equalVectors(many[i], b64[i]) {
			t.Errorf("input %d: base64 vector differs from the float one", i)
		}
	}
	if !equalVectors(many[1], one[0]) || !equalVectors(many[0], many[2]) || equalVectors(many[0], many[1]) {
		t.Error("vectors do not follow their inputs: want equal texts equal and different texts different")
	}
	// The same embedder as the tenant's documents and searches: the
	// dimension it states is accepted.
	env.embed(t, key, map[string]any{"model": "default", "input": "x", "dimensions": len(one[0]), "encoding_format": "float"})
}

func TestEmbeddingsRefusals(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme"})
	env.createTenant(t, map[string]any{"id": "globex", "embedder": "offline", "profiles": map[string]any{"globex-only": map[string]any{}}})
	_, key := env.newKey(t, "acme")
	many := make([]string, maxEmbeddingInputs+1)
	for i := range many {
		many[i] = "x"
	}
	tests := []struct {
		name       string
		body       any
		wantStatus int
		wantCode   string
		wantInMsg  string
	}{
		{"unknown field", map[string]any{"model": "default", "input": "a", "truncate": true}, 400, "invalid_request", `"truncate"`},
		{"field named in another case", `{"model":"default","input":"a","Dimensions":3}`, 400, "invalid_request", `"Dimensions"`},
		{"tenant in the body", map[string]any{"model": "default", "input": "a", "tenant": "globex"}, 400, "invalid_request", `"tenant"`},
		{"token array", map[string]any{"model": "default", "input": []int{1, 2, 3}}, 400, "invalid_request", "token arrays"},
		{"token arrays", map[string]any{"model": "default", "input": [][]int{{1, 2}}}, 400, "invalid_request", "token arrays"},
		{"mixed array", map[string]any{"model": "default", "input": []any{"a", 1}}, 400, "invalid_request", "array of strings"},
		{"no input", map[string]any{"model": "default"}, 400, "invalid_request", "input is required"},
		{"empty array", map[string]any{"model": "default", "input": []string{}}, 400, "invalid_request", "empty array"},
		{"empty string", map[string]any{"model": "default", "input": []string{"a", ""}}, 400, "invalid_request", "input[1]"},
		{"too many inputs", map[string]any{"model": "default", "input": many}, 400, "invalid_request", "at most 2048"},
		{"too many bytes", map[string]any{"model": "default", "input": []string{strings.Repeat("a", maxEmbeddingBytes/2+1), strings.Repeat("b", maxEmbeddingBytes/2)}}, 400, "invalid_request", "bytes"},
		{"bad encoding", map[string]any{"model": "default", "input": "a", "encoding_format": "int8"}, 400, "invalid_request", "encoding_format"},
		{"other dimensions", map[string]any{"model": "default", "input": "a", "dimensions": 7}, 400, "invalid_request", "dimensions"},
		{"zero dimensions", map[string]any{"model": "default", "input": "a", "dimensions": 0}, 400, "invalid_request", "dimensions"},
		{"bad user", map[string]any{"model": "default", "input": "a", "user": strings.Repeat("u", 1000)}, 400, "invalid_request", "user"},
		{"no model", map[string]any{"input": "a"}, 400, "invalid_request", "model is required"},
		{"unknown model", map[string]any{"model": "text-embedding-3-small", "input": "a"}, 404, "not_found", "does not exist"},
		{"another tenant's embedder", map[string]any{"model": "offline", "input": "a"}, 404, "not_found", "does not exist"},
		{"a chat profile", map[string]any{"model": "globex-only", "input": "a"}, 404, "not_found", "does not exist"},
		{"not JSON", "model=default", 400, "invalid_request", ""},
		{"not an object", `["a"]`, 400, "invalid_request", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := env.do(t, "POST", "/v1/embeddings", key, tt.body, nil)
			checkAPIError(t, r, tt.wantStatus, tt.wantCode)
			var e struct{ Error struct{ Message string } }
			if err := json.Unmarshal(r.body, &e); err != nil || !strings.Contains(e.Error.Message, tt.wantInMsg) {
				t.Errorf("got %s, want the message to contain %s", r.body, tt.wantInMsg)
			}
		})
	}
	t.Run("no key", func(t *testing.T) {
		checkAPIError(t, env.do(t, "POST", "/v1/embeddings", "", map[string]any{"model": "default", "input": "a"}, nil), 401, "invalid_api_key")
	})
}

// TestEmbeddingsCachePerTenant shows the embedding cache answering a tenant's
// repeated text and never another tenant's: two tenants on one embedder
// model, each with its own key, each get their own upstream call and their
// own vector for the same text.
func TestEmbeddingsCachePerTenant(t *testing.T) {
	env, up := embeddingsEnv(t)
	keys := map[string]string{}
	for _, id := range []string{"acme", "globex"} {
		env.createTenant(t, map[string]any{"id": id})
		env.admin(t, "PUT", "/admin/v1/tenants/"+id+"/secrets/embed_key", map[string]string{"value": id + "-own-embedding-key"}, http.StatusNoContent)
		// The embedder is chosen once the key it needs is there.
		env.admin(t, "PATCH", "/admin/v1/tenants/"+id, map[string]any{"embedder": "byok"}, http.StatusOK)
		_, keys[id] = env.newKey(t, id)
	}
	body := map[string]any{"model": "byok", "input": []string{"the same words", "the same words"}}
	// A new tenant has no secrets yet, so it cannot start on a BYOK
	// embedder (its honey record is embedded at creation); nothing is called.
	r := env.do(t, "POST", "/admin/v1/tenants", testAdminToken, map[string]any{"id": "initech", "embedder": "byok"}, nil)
	checkAPIError(t, r, 400, "invalid_request")
	if !strings.Contains(string(r.body), "embed_key") || up.embedded("") != 0 {
		t.Errorf("creating a tenant on the BYOK embedder: got %v, want a 400 naming embed_key and no upstream call", r)
	}
	env.admin(t, "GET", "/admin/v1/tenants/initech", nil, http.StatusNotFound)

	_, a1 := env.embed(t, keys["acme"], body)
	_, a2 := env.embed(t, keys["acme"], body)
	if got := up.embedded("acme-own-embedding-key"); got != 1 {
		t.Errorf("acme: upstream embedded %d texts with acme's key, want 1 (repeats answered by the cache)", got)
	}
	if !equalVectors(a1[0], a2[0]) || !equalVectors(a1[0], a1[1]) {
		t.Error("acme: a cached vector differs from the computed one")
	}

	_, g := env.embed(t, keys["globex"], body)
	if got := up.embedded("globex-own-embedding-key"); got != 1 {
		t.Errorf("globex: upstream embedded %d texts with globex's key, want 1 (acme's cached vector must not answer globex)", got)
	}
	if equalVectors(g[0], a1[0]) {
		t.Error("globex got acme's vector for the same text")
	}
	if got := up.embedded("acme-own-embedding-key"); got != 1 {
		t.Errorf("globex's request used acme's key: acme's count is %d, want 1", got)
	}
	if got := up.embedded(""); got != 0 {
		t.Errorf("upstream embedded %d texts with no key, want 0", got)
	}

	// The tenant's documents use the same embedder and key.
	env.do(t, "POST", "/v1/documents", keys["globex"], map[string]any{"text": "globex document text"}, nil)
	if got := up.embedded("globex-own-embedding-key"); got < 2 {
		t.Errorf("globex's document was not embedded with globex's key (count %d)", got)
	}

	// Without its secret the tenant's embedder is not called at all.
	env.admin(t, "DELETE", "/admin/v1/tenants/acme/secrets/embed_key", nil, http.StatusNoContent)
	r = env.do(t, "POST", "/v1/embeddings", keys["acme"], body, nil)
	checkAPIError(t, r, 400, "invalid_request")
	if !strings.Contains(string(r.body), "embed_key") {
		t.Errorf("got %s, want the missing secret named", r.body)
	}
}

// TestEmbeddingsTenantEmbedders shows each tenant's request going to its own
// embedder: the same text gives different vectors under the offline model and
// the operator's shared upstream, and the shared one is called with the
// operator's key.
func TestEmbeddingsTenantEmbedders(t *testing.T) {
	env, up := embeddingsEnv(t)
	env.createTenant(t, map[string]any{"id": "acme"})
	env.createTenant(t, map[string]any{"id": "globex", "embedder": "shared"})
	_, acme := env.newKey(t, "acme")
	_, globex := env.newKey(t, "globex")
	body := map[string]any{"input": "the same words"}

	body["model"] = "default"
	_, a := env.embed(t, acme, body)
	body["model"] = "shared"
	rep, g := env.embed(t, globex, body)
	if rep.Model != "shared" || equalVectors(a[0], g[0]) {
		t.Errorf("globex got model %q and a vector equal to acme's: want its own embedder's", rep.Model)
	}
	before := up.embedded("operator-shared-key")
	if before == 0 {
		t.Error("the shared embedder was not called with the operator's key")
	}
	// Each tenant's model name is its own: acme cannot reach globex's.
	checkAPIError(t, env.do(t, "POST", "/v1/embeddings", acme, body, nil), 404, "not_found")
	if got := up.embedded("operator-shared-key"); got != before {
		t.Errorf("acme's refused request reached the shared embedder (%d texts, want %d)", got, before)
	}
}

func TestEmbeddingsQuotaAndAudit(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme", "limits": map[string]int{"requests_per_minute": 1}})
	env.createTenant(t, map[string]any{"id": "globex"})
	_, acme := env.newKey(t, "acme")
	_, globex := env.newKey(t, "globex")
	body := map[string]any{"model": "default", "input": "hello"}

	env.embed(t, acme, body)
	r := env.do(t, "POST", "/v1/embeddings", acme, body, nil)
	checkAPIError(t, r, http.StatusTooManyRequests, "rate_limit_exceeded")
	if r.header.Get("Retry-After") == "" {
		t.Error("a refused request has no Retry-After")
	}
	env.embed(t, globex, body) // acme's limit is acme's alone

	r = env.do(t, "GET", "/v1/audit", acme, nil, nil)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"embeddings.create"`) {
		t.Errorf("acme's audit log: got %v, want an embeddings.create record", r)
	}
	if strings.Contains(string(r.body), "hello") {
		t.Error("the audit record holds the embedded text")
	}
}

func TestModelByID(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme", "profiles": map[string]any{"support": map[string]any{"system_prompt": "Support."}}})
	env.createTenant(t, map[string]any{"id": "globex", "profiles": map[string]any{"globex-secret-profile": map[string]any{}}})
	_, acme := env.newKey(t, "acme")

	for _, id := range []string{"default", "support"} {
		r := env.do(t, "GET", "/v1/models/"+id, acme, nil, nil)
		var m modelView
		if r.status != http.StatusOK || json.Unmarshal(r.body, &m) != nil {
			t.Fatalf("GET /v1/models/%s: got %v, want 200 and a model", id, r)
		}
		if m.ID != id || m.Object != "model" || m.OwnedBy != "acme" || m.Created == 0 {
			t.Errorf("GET /v1/models/%s = %+v, want acme's model object", id, m)
		}
	}
	// globex's profile is as missing for acme as a name nobody has.
	foreign := env.do(t, "GET", "/v1/models/globex-secret-profile", acme, nil, nil)
	unknown := env.do(t, "GET", "/v1/models/zzzzzz-nobody-profile", acme, nil, nil)
	checkAPIError(t, foreign, 404, "not_found")
	checkAPIError(t, unknown, 404, "not_found")
	same := strings.ReplaceAll(string(foreign.body), "globex-secret-profile", "zzzzzz-nobody-profile")
	if same != string(unknown.body) {
		t.Errorf("another tenant's profile answers %s, a missing one %s: want them alike", foreign.body, unknown.body)
	}
	checkAPIError(t, env.do(t, "GET", "/v1/models/default", "", nil, nil), 401, "invalid_api_key")
}

// TestTenantKeyHeaders shows the tenant API taking its key from
// Authorization, api-key or x-api-key, and refusing two different keys.
func TestTenantKeyHeaders(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme"})
	env.createTenant(t, map[string]any{"id": "globex"})
	_, acme := env.newKey(t, "acme")
	_, globex := env.newKey(t, "globex")
	tests := []struct {
		name       string
		bearer     string
		header     map[string]string
		wantStatus int
	}{
		{"bearer", acme, nil, 200},
		{"api-key", "", map[string]string{"api-key": acme}, 200},
		{"x-api-key", "", map[string]string{"x-api-key": acme}, 200},
		{"all agree", acme, map[string]string{"api-key": acme, "x-api-key": acme}, 200},
		{"bearer and api-key of two tenants", acme, map[string]string{"api-key": globex}, 401},
		{"x-api-key of another tenant", acme, map[string]string{"x-api-key": globex}, 401},
		{"api-key and x-api-key differ", "", map[string]string{"api-key": globex, "x-api-key": acme}, 401},
		{"admin token in api-key", "", map[string]string{"api-key": testAdminToken}, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := env.do(t, "GET", "/v1/models/default", tt.bearer, nil, tt.header)
			if tt.wantStatus != 200 {
				checkAPIError(t, r, tt.wantStatus, "invalid_api_key")
				return
			}
			var m modelView
			if r.status != 200 || json.Unmarshal(r.body, &m) != nil || m.OwnedBy != "acme" {
				t.Errorf("got %v, want acme's default model", r)
			}
		})
	}
}
