package server

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/memory"
)

// TestPlantedDataIsNoWeapon is the "guard as a weapon" class by provenance
// (issue 9, class 4): tenant B plants its own canary and its own API token
// in a public page; tenant A's model reads the page through A's own tool
// and quotes it. A's answer is delivered whole, streamed or not, and
// neither A's log nor B's records anything B could learn from. The same
// canary reaching A's answer by any other way (here: a model that knows it,
// as a shared cache or provider would) is still withheld and B is told.
// A cannot store the page in its knowledge base or memories, where it
// would block answers later: the refusal says why.
func TestPlantedDataIsNoWeapon(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	const planter, reader = "planter", "reader"
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	token := "pl_" + base64.RawURLEncoding.EncodeToString(raw)

	env.createTenant(t, map[string]any{"id": planter, "system_prompt": "You are the planter's assistant.", "tools": []string{}})
	env.admin(t, "PUT", "/admin/v1/tenants/"+planter+"/secrets/api_token", map[string]string{"value": token}, http.StatusNoContent)
	canary := hostileCanary(t, env, planter)
	page := "Welcome to our public FAQ. Reference " + canary + ". Demo token: " + token + ". Thanks for reading."
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(page))
	}))
	t.Cleanup(site.Close)

	env.admin(t, "POST", "/admin/v1/tools", map[string]any{"name": "fetch_faq", "description": "Fetch the public FAQ", "scope": "tenant",
		"parameters": map[string]any{"type": "object", "properties": map[string]any{}},
		"http":       map[string]any{"method": "GET", "url": site.URL + "/faq"}}, http.StatusCreated)
	env.createTenant(t, map[string]any{"id": reader, "system_prompt": "You are the reader's assistant.",
		"tools": []string{"fetch_faq", memory.ToolMemorySave}})
	_, readerKey := env.newKey(t, reader)
	_, planterKey := env.newKey(t, planter)
	readerSeq, planterSeq := auditEnd(t, env, readerKey), auditEnd(t, env, planterKey)

	for _, stream := range []bool{false, true} {
		got := env.say(t, chatCall{key: readerKey, content: "/call fetch_faq {}", stream: stream})
		if !strings.Contains(got, canary) || !strings.Contains(got, token) {
			t.Errorf("stream=%v: the reader's answer quoting the page it fetched = %q, want it whole", stream, got)
		}
	}
	for _, r := range auditLog(t, env, "/v1/audit?after="+strconv.FormatInt(planterSeq, 10), planterKey) {
		t.Errorf("the planter's log records %s %s: it learns that its planted text was quoted", r.Type, r.Data)
	}
	for _, r := range auditLog(t, env, "/v1/audit?after="+strconv.FormatInt(readerSeq, 10), readerKey) {
		if strings.HasPrefix(r.Type, "guard.") {
			t.Errorf("the reader's log records %s %s for text its own tool returned", r.Type, r.Data)
		}
	}

	// Storing the page is refused, saying why, through the API and the
	// memory tool; the planter hears of neither.
	for _, c := range []struct{ path, field string }{{"/v1/documents", "text"}, {"/v1/memories", "text"}} {
		body := map[string]any{c.field: page}
		if c.path == "/v1/memories" {
			body["user"] = "u1"
		}
		r := env.do(t, "POST", c.path, readerKey, body, nil)
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "another tenant's reference token or secret") {
			t.Errorf("POST %s with the planted page: %v, want 400 saying why", c.path, r)
		}
	}
	saved := env.say(t, chatCall{key: readerKey, content: "/call fetch_faq {}\n/call memory_save {\"text\":" + hostileJSONString(page) + "}"})
	if !strings.Contains(saved, "another tenant's reference token or secret") {
		t.Errorf("memory_save of the planted page answered %q, want it refused", saved)
	}
	for _, r := range auditLog(t, env, "/v1/audit?after="+strconv.FormatInt(planterSeq, 10), planterKey) {
		t.Errorf("the planter's log records %s %s", r.Type, r.Data)
	}

	// Control: the canary the reader's inputs do not carry is withheld,
	// and its owner is told.
	for _, stream := range []bool{false, true} {
		got := env.say(t, chatCall{key: readerKey, content: unseen("/say the reference is " + canary), stream: stream})
		if strings.Contains(got, canary) || !strings.Contains(got, "withheld") {
			t.Errorf("stream=%v: a canary the reader's inputs do not carry gave %q, want it withheld", stream, got)
		}
	}
	told := 0
	for _, r := range auditLog(t, env, "/v1/audit?after="+strconv.FormatInt(planterSeq, 10), planterKey) {
		if r.Type == "guard.foreign_leak" {
			told++
		}
	}
	if told != 2 {
		t.Errorf("the planter's log has %d guard.foreign_leak records for two real leaks, want 2", told)
	}
}

// auditEnd returns the last sequence number of key's tenant's log.
func auditEnd(t *testing.T, env *testEnv, key string) int64 {
	t.Helper()
	recs := auditLog(t, env, "/v1/audit", key)
	if len(recs) == 0 {
		return 0
	}
	return recs[len(recs)-1].Seq
}
