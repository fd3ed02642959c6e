package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// globexPlan is a document only globex stores: 48 words.
const globexPlan = "Globex quarterly plan for the northern region. The magnet division will quietly " +
	"acquire the northern ore company before the autumn board meeting, then close the old smelter " +
	"at Harrow Point and move its furnace crews to the new plant by the river, with bonuses paid " +
	"in shares rather than cash this year."

// notStored is 20 words no tenant stored, in the same style.
const notStored = "The magnet division will openly sell the southern copper company after the spring " +
	"board meeting and keep every smelter running."

// answerShape is everything tenant A can observe about one answer except
// its text: status, header names, finish reason, and the audit records it
// added to A's log (type and data keys).
type answerShape struct {
	status  int
	headers string
	finish  string
	audit   string
}

// observe asks acme's obedient model to say text and returns what acme sees:
// the content, and the shape of the answer.
func observe(t *testing.T, env *testEnv, key, text string, stream bool) (string, answerShape) {
	t.Helper()
	before := len(auditLog(t, env, "/v1/audit", key))
	r := env.chat(t, chatCall{key: key, content: "/say " + text, stream: stream})
	s := answerShape{status: r.status}
	var names []string
	for name := range r.header {
		if name != "Date" && name != "Content-Length" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	s.headers = strings.Join(names, ",")
	var content string
	if stream {
		sse, err := parseSSE(r)
		if err != nil {
			t.Fatal(err)
		}
		content, s.finish = sse.content, sse.finish
	} else {
		var c wireCompletion
		if err := json.Unmarshal(r.body, &c); err != nil || len(c.Choices) != 1 || c.Choices[0].Message == nil || c.Choices[0].FinishReason == nil {
			t.Fatalf("answer %s: %v", r.body, err)
		}
		content, s.finish = c.Choices[0].Message.Content, *c.Choices[0].FinishReason
	}
	var records []string
	for _, rec := range auditLog(t, env, "/v1/audit", key)[before:] {
		var data map[string]any
		json.Unmarshal(rec.Data, &data)
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		records = append(records, rec.Type+"("+strings.Join(keys, ",")+")")
	}
	s.audit = strings.Join(records, " ")
	return content, s
}

// TestGuardIsNoOracle plays tenant A (acme) trying to confirm a guess about
// tenant B's (globex's) document: its obedient model says a guessed 20-word
// run of the document and a 20-word sentence no one stored. Both come back
// verbatim with the same finish reason, headers and audit records: acme
// learns nothing about what globex stored.
func TestGuardIsNoOracle(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, globexKey := twoTenants(t, env)
	if r := env.do(t, "POST", "/v1/documents", globexKey, map[string]any{"text": globexPlan}, nil); r.status != http.StatusCreated {
		t.Fatalf("globex document: %v", r)
	}
	guess := strings.Join(strings.Fields(globexPlan)[8:28], " ")
	for _, stream := range []bool{false, true} {
		// A prefix of its own per mode keeps the response cache out of it.
		prefix := fmt.Sprintf("Stream %v: ", stream)
		guess, miss := prefix+guess, prefix+notStored
		gotGuess, guessShape := observe(t, env, acmeKey, guess, stream)
		gotMiss, missShape := observe(t, env, acmeKey, miss, stream)
		if gotGuess != guess || gotMiss != miss {
			t.Errorf("stream=%v: got %q and %q, want both said verbatim", stream, gotGuess, gotMiss)
		}
		if guessShape != missShape {
			t.Errorf("stream=%v: a stored guess looks different from a miss:\n guess %+v\n miss  %+v", stream, guessShape, missShape)
		}
		if guessShape.finish != "stop" {
			t.Errorf("stream=%v: finish reason %q, want stop", stream, guessShape.finish)
		}
	}
}

// mitLicence is a public text that any tenant may store and any answer may
// quote.
const mitLicence = "Permission is hereby granted, free of charge, to any person obtaining a copy of this " +
	"software and associated documentation files (the \"Software\"), to deal in the Software without " +
	"restriction, including without limitation the rights to use, copy, modify, merge, publish, " +
	"distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the " +
	"Software is furnished to do so, subject to the following conditions: The above copyright notice " +
	"and this permission notice shall be included in all copies or substantial portions of the Software."

// TestGuardIsNoWeapon has globex store a public licence; acme's answers that
// quote it are not withheld, streamed or not, and acme's log records no
// block.
func TestGuardIsNoWeapon(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, globexKey := twoTenants(t, env)
	if r := env.do(t, "POST", "/v1/documents", globexKey, map[string]any{"text": mitLicence}, nil); r.status != http.StatusCreated {
		t.Fatalf("globex document: %v", r)
	}
	for _, stream := range []bool{false, true} {
		quote := fmt.Sprintf("Under the MIT licence (stream %v): %s", stream, mitLicence)
		got, shape := observe(t, env, acmeKey, quote, stream)
		if got != quote || shape.finish != "stop" {
			t.Errorf("stream=%v: got %q finish %q, want the quote verbatim and stop", stream, got, shape.finish)
		}
		if strings.Contains(shape.audit, "guard.") {
			t.Errorf("stream=%v: acme's log records %s, want no guard record", stream, shape.audit)
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for a logger and a test at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestGuardTellsOperator checks that a real leak of globex's text into an
// answer to acme is still heard of: the operator's log names both tenants
// and counts it, while neither tenant's audit log records it.
func TestGuardTellsOperator(t *testing.T) {
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	env := newTestEnv(t, envOptions{logger: logger})
	acmeKey, globexKey := twoTenants(t, env)
	if r := env.do(t, "POST", "/v1/documents", globexKey, map[string]any{"text": globexPlan}, nil); r.status != http.StatusCreated {
		t.Fatalf("globex document: %v", r)
	}
	globexBefore := len(auditLog(t, env, "/v1/audit", globexKey))
	leak := strings.Join(strings.Fields(globexPlan)[8:28], " ")
	env.say(t, chatCall{key: acmeKey, content: "/say " + leak, stream: true})
	want := regexp.MustCompile(`level=WARN msg=".*another tenant's stored text.*" tenant=acme owners=\[globex\] windows=\d+ total=1`)
	deadline := time.Now().Add(10 * time.Second)
	for !want.MatchString(logs.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("operator's log has no warning naming acme and globex:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// An innocent answer adds no warning; a second leak is counted.
	env.say(t, chatCall{key: acmeKey, content: "/say " + notStored})
	env.say(t, chatCall{key: acmeKey, content: "/say " + strings.Join(strings.Fields(globexPlan)[20:40], " ")})
	second := regexp.MustCompile(`tenant=acme owners=\[globex\] windows=\d+ total=2`)
	for !second.MatchString(logs.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("second leak not counted:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := strings.Count(logs.String(), "another tenant's stored text"); n != 2 {
		t.Errorf("operator's log has %d warnings, want 2", n)
	}
	for _, rec := range auditLog(t, env, "/v1/audit", acmeKey) {
		if strings.HasPrefix(rec.Type, "guard.") {
			t.Errorf("acme's log records %s %s", rec.Type, rec.Data)
		}
	}
	for _, rec := range auditLog(t, env, "/v1/audit", globexKey)[globexBefore:] {
		t.Errorf("globex's log records %s %s", rec.Type, rec.Data)
	}
}

// TestRetrievedPassagesCarryCanary checks that every passage kb_search and
// memory_search hand the model carries its tenant's canary, so a bug that
// hands them to another tenant's model hands it the canary too, and that
// the canary never leaves in the tenant's own answer.
func TestRetrievedPassagesCarryCanary(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, _, _, _ := kbTenants(t, env)
	acme, err := env.plane.Tenant("acme")
	if err != nil || len(acme.Canaries) == 0 {
		t.Fatalf("acme has no canary: %v", err)
	}
	for call, want := range map[string]string{
		`/call kb_search {"query":"return rockets"}`:       "within 30 days",
		`/call memory_search {"query":"acme blue rocket"}`: "blue rocket",
	} {
		got := env.say(t, chatCall{key: acmeKey, user: "alice", content: call})
		// The scripted model repeats the tool result: the guard removed
		// acme's own canary from each passage's ref.
		if !strings.Contains(got, want) || !strings.Contains(got, `ref=""`) || strings.Contains(got, acme.Canaries[0]) {
			t.Fatalf("%s: answer %q, want the passage with its ref and without acme's canary", call, got)
		}
	}
	var rewrites int
	for _, rec := range auditLog(t, env, "/v1/audit", acmeKey) {
		if rec.Type == "guard.rewrite" && strings.Contains(string(rec.Data), "canary of this tenant removed") {
			rewrites++
		}
	}
	if rewrites != 2 {
		t.Fatalf("acme's log records %d removals of its canary, want 2", rewrites)
	}
}
