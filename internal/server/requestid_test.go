package server

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/requestid"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRequestIDEverywhere checks every response carries an X-Request-Id:
// the client's when it is sane, a fresh one otherwise, on successes and on
// every kind of error, and that the same id is in the request's log lines
// and audit records.
func TestRequestIDEverywhere(t *testing.T) {
	var logs syncBuffer
	up := newFakeUpstream(t)
	up.reply = func(w http.ResponseWriter, _ *http.Request, _ map[string]any) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	env := newTestEnv(t, envOptions{logger: slog.New(slog.NewJSONHandler(&logs, nil)),
		providers: map[string]llm.Provider{"down": up.provider(t, -1)}})
	env.createTenant(t, map[string]any{"id": "acme"})
	env.createTenant(t, map[string]any{"id": "broken", "model": "down/x"})
	_, acmeKey := env.newKey(t, "acme")
	_, brokenKey := env.newKey(t, "broken")

	long := strings.Repeat("a", requestid.MaxLen+1)
	tests := []struct {
		name       string
		method     string
		path, key  string
		body       any
		clientID   string
		wantStatus int
		wantEcho   bool // the client's id comes back
	}{
		{name: "chat ok", method: "POST", path: "/v1/chat/completions", key: acmeKey, body: chatCall{content: "hi"}.body(), wantStatus: 200},
		{name: "chat ok, client id", method: "POST", path: "/v1/chat/completions", key: acmeKey, body: chatCall{content: "hi"}.body(), clientID: "trace-1.A_b", wantStatus: 200, wantEcho: true},
		{name: "client id too long", method: "POST", path: "/v1/chat/completions", key: acmeKey, body: chatCall{content: "hi"}.body(), clientID: long, wantStatus: 200},
		{name: "client id with bad characters", method: "POST", path: "/v1/chat/completions", key: acmeKey, body: chatCall{content: "hi"}.body(), clientID: "x\" level=ERROR", wantStatus: 200},
		{name: "bad request", method: "POST", path: "/v1/chat/completions", key: acmeKey, body: map[string]any{"frobnicate": 1}, clientID: "bad-req-1", wantStatus: 400, wantEcho: true},
		{name: "upstream down", method: "POST", path: "/v1/chat/completions", key: brokenKey, body: chatCall{content: "hi"}.body(), clientID: "down-1", wantStatus: 502, wantEcho: true},
		{name: "no key", method: "GET", path: "/v1/models", wantStatus: 401},
		{name: "admin", method: "GET", path: "/admin/v1/tenants", key: testAdminToken, wantStatus: 200},
		{name: "no route", method: "GET", path: "/v1/nothing-here", key: acmeKey, clientID: "no-route-1", wantStatus: 404, wantEcho: true},
		{name: "healthz", method: "GET", path: "/healthz", wantStatus: 200},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h map[string]string
			if tt.clientID != "" {
				h = map[string]string{requestid.Header: tt.clientID}
			}
			r := env.do(t, tt.method, tt.path, tt.key, tt.body, h)
			if r.status != tt.wantStatus {
				t.Fatalf("got %v, want %d", r, tt.wantStatus)
			}
			id := r.header.Get(requestid.Header)
			switch {
			case !requestid.Valid(id):
				t.Fatalf("X-Request-Id %q, want a valid id", id)
			case tt.wantEcho && id != tt.clientID:
				t.Errorf("X-Request-Id %q, want the client's %q", id, tt.clientID)
			case !tt.wantEcho && id == tt.clientID:
				t.Errorf("X-Request-Id %q: the client's id was used, want a fresh one", id)
			case seen[id]:
				t.Errorf("X-Request-Id %q was given twice", id)
			}
			seen[id] = true
		})
	}
	// Failed requests' log lines carry their id.
	for _, id := range []string{"bad-req-1", "down-1", "no-route-1"} {
		if !strings.Contains(logs.String(), `"request_id":"`+id+`"`) {
			t.Errorf("no log line with request_id %s in:\n%s", id, logs.String())
		}
	}

	// A cache hit writes an audit record; it carries the request's id.
	ask := chatCall{key: acmeKey, content: "cache me", extra: map[string]any{"temperature": 0}}
	env.say(t, ask)
	ask.header = map[string]string{requestid.Header: "cache-hit-1"}
	if r := env.chat(t, ask); r.header.Get("X-Bulkhead-Cache") != "hit" {
		t.Fatalf("second ask: %v %v, want a cache hit", r, r.header)
	}
	found := false
	for _, rec := range auditLog(t, env, "/v1/audit", acmeKey) {
		var data map[string]any
		_ = json.Unmarshal(rec.Data, &data)
		if rec.Type == "cache.hit" && data["request_id"] == "cache-hit-1" {
			found = true
		}
	}
	if !found {
		t.Error("no cache.hit audit record with request_id cache-hit-1")
	}
}
