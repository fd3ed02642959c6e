package server

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/llm"
)

// TestStreamStartsAtOnce checks a stream's headers and role chunk reach the
// client as soon as the provider accepts the request, before the model has
// said a word, and that a stream with nothing to say sends SSE keep-alive
// comments. The fake provider says nothing until the test has seen both.
func TestStreamStartsAtOnce(t *testing.T) {
	keepAliveEvery.Store(int64(20 * time.Millisecond))
	t.Cleanup(func() { keepAliveEvery.Store(0) })

	up := newFakeUpstream(t)
	release := make(chan struct{})
	up.reply = func(w http.ResponseWriter, r *http.Request, body map[string]any) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		fakeAnswerReply(w, body)
	}
	env := newTestEnv(t, envOptions{providers: map[string]llm.Provider{"fake": up.provider(t, 0)}})
	env.createTenant(t, map[string]any{"id": "acme", "model": "fake/gpt-test"})
	_, key := env.newKey(t, "acme")

	req, err := env.chatRequest(t.Context(), chatCall{key: key, content: "hi", stream: true})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := env.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("got %d %s, want a 200 event stream", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	rd := bufio.NewReader(resp.Body)
	next := func() string {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("read stream: %v", err)
		}
		return strings.TrimSuffix(line, "\n")
	}
	if first := next(); !strings.HasPrefix(first, "data: ") || !strings.Contains(first, `"role":"assistant"`) {
		t.Fatalf("first line %q, want the role chunk", first)
	}
	for {
		if line := next(); line == ": keep-alive" {
			break
		} else if line != "" {
			t.Fatalf("before the model spoke: got %q, want only keep-alives", line)
		}
	}
	close(release)
	var rest strings.Builder
	for {
		line, err := rd.ReadString('\n')
		rest.WriteString(line)
		if err != nil || line == "data: [DONE]\n" {
			break
		}
	}
	if !strings.Contains(rest.String(), `"finish_reason":"stop"`) || !strings.HasSuffix(rest.String(), "data: [DONE]\n") {
		t.Errorf("rest of the stream %q, want the answer and [DONE]", rest.String())
	}
}
