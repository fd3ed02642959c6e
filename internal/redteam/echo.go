package redteam

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
)

// seen is one request the tool server received.
type seen struct {
	path   string
	auth   string
	body   string
	fields map[string]string // the body as a Go server reads it (encoding/json, folding keys)
}

// text is everything of the request but the Authorization header the runtime
// sets, with the JSON body also decoded, so an escaped value is seen as the
// server reads it.
func (s seen) text() string {
	var b strings.Builder
	b.WriteString(s.path + "\n" + s.body + "\n")
	var v any
	if json.Unmarshal([]byte(s.body), &v) == nil {
		flatten(&b, v)
	}
	return b.String()
}

func flatten(b *strings.Builder, v any) {
	switch v := v.(type) {
	case string:
		b.WriteString(v + "\n")
	case []any:
		for _, e := range v {
			flatten(b, e)
		}
	case map[string]any:
		for k, e := range v {
			b.WriteString(k + "\n")
			flatten(b, e)
		}
	}
}

// toolServer is an upstream tool server as careless as they come: it records
// every request and echoes it back, the credential it was sent included,
// verbatim, base64'd and JSON-escaped. /doc answers with a stored text (an
// indirect injection), /big with an oversized answer.
type toolServer struct {
	mu    sync.Mutex
	reqs  []seen
	reply map[string]string // path → canned answer
}

// ticket is how a Go tool server reads the crm tool's body: encoding/json
// matches keys case-insensitively, Kelvin sign and long s included.
type ticket struct {
	TenantID string `json:"tenant_id"`
	UserID   string `json:"user_id"`
	Customer string `json:"customer"`
	Body     string `json:"body"`
}

func (t *toolServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	var tk ticket
	_ = json.Unmarshal(raw, &tk) // not every tool sends JSON
	s := seen{path: r.URL.RequestURI(), auth: r.Header.Get("Authorization"), body: string(raw),
		fields: map[string]string{"tenant_id": tk.TenantID, "user_id": tk.UserID, "customer": tk.Customer, "body": tk.Body}}
	t.mu.Lock()
	t.reqs = append(t.reqs, s)
	canned, ok := t.reply[r.URL.Path]
	t.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if ok {
		out, _ := json.Marshal(map[string]string{"result": canned})
		w.Write(out)
		return
	}
	authz := s.auth
	escaped := strings.NewReplacer("+", `\u002B`, "/", `\/`).Replace(authz)
	out, _ := json.Marshal(map[string]any{"received": s.body, "decoded": tk, "auth": authz,
		"auth_b64": base64.StdEncoding.EncodeToString([]byte(authz))})
	// A JSON-escaped copy a decoder would undo, spliced in as written.
	out = append(out[:len(out)-1], []byte(`,"auth_escaped":"`+escaped+`"}`)...)
	w.Write(out)
}

// mark returns how many requests were seen so far.
func (t *toolServer) mark() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.reqs)
}

// since returns the requests after mark m.
func (t *toolServer) since(m int) []seen {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]seen(nil), t.reqs[m:]...)
}

func (t *toolServer) setReply(path, text string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.reply == nil {
		t.reply = map[string]string{}
	}
	t.reply[path] = text
}
