package cache

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// mustCipher returns a Cipher for id whose data key is derived from seed, so
// two calls with the same arguments give the same key.
func mustCipher(t testing.TB, id tenant.ID, seed string) *keyring.Cipher {
	t.Helper()
	key := bytes.Repeat([]byte(seed), keyring.KeySize/len(seed)+1)[:keyring.KeySize]
	c, err := keyring.NewCipher(id, key)
	if err != nil {
		t.Fatalf("NewCipher(%s): %v", id, err)
	}
	return c
}

func ptr[T any](v T) *T { return &v }

// fullRequest returns a request with every field, and every field of its
// messages and tool calls, set.
func fullRequest() Request {
	return Request{
		Profile: "support",
		Model:   "upstream/gpt-test",
		Messages: []llm.Message{
			{Role: "system", Content: "You are the support agent."},
			{Role: "user", Content: "Where is my order 42?", Name: "alice"},
			{Role: "assistant", ToolCalls: []llm.ToolCall{
				{ID: "call_1", Type: "function", Function: llm.FunctionCall{Name: "crm_lookup", Arguments: `{"customer":"alice"}`}},
				{ID: "call_2", Type: "function", Function: llm.FunctionCall{Name: "kb_search", Arguments: `{"query":"orders"}`}},
			}},
			{Role: "tool", Content: `{"status":"shipped"}`, ToolCallID: "call_1"},
		},
		Tools:         []string{"crm_lookup", "kb_search"},
		PolicyVersion: "policy-7",
		Options:       `{"seed":7,"response_format":{"type":"json_object"}}`,
		MaxTokens:     256,
		Temperature:   ptr(0.25),
	}
}

func mustKey(t testing.TB, c *keyring.Cipher, req Request) string {
	t.Helper()
	_, k, err := entryKey(c, req)
	if err != nil {
		t.Fatalf("entryKey(%s): %v", c.Tenant(), err)
	}
	return k
}

func mustPut(t testing.TB, x *Cache, c *keyring.Cipher, req Request, v Value) {
	t.Helper()
	if err := x.Put(context.Background(), c, req, v); err != nil {
		t.Fatalf("Put(%s): %v", c.Tenant(), err)
	}
}

// checkHit fails unless c reads want for req.
func checkHit(t testing.TB, x *Cache, c *keyring.Cipher, req Request, want Value) {
	t.Helper()
	got, ok, err := x.Get(context.Background(), c, req)
	if err != nil || !ok || got != want {
		t.Fatalf("Get(%s) = %+v, %v, %v; want %+v, true, nil", c.Tenant(), got, ok, err, want)
	}
}

// checkMiss fails unless c misses req cleanly (no error).
func checkMiss(t testing.TB, x *Cache, c *keyring.Cipher, req Request) {
	t.Helper()
	got, ok, err := x.Get(context.Background(), c, req)
	if err != nil || ok || got != (Value{}) {
		t.Fatalf("Get(%s) = %+v, %v, %v; want a clean miss", c.Tenant(), got, ok, err)
	}
}

func answer(who string) Value {
	return Value{Content: "the answer for " + who, FinishReason: "stop", Usage: llm.Usage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15}}
}

// backendCase is one Backend implementation under the shared tests.
type backendCase struct {
	name string
	new  func(t *testing.T) Backend
}

func memoryBackend() backendCase {
	return backendCase{"memory", func(*testing.T) Backend { return NewMemory(100, 1<<20) }}
}

// testBackend runs the isolation tests every Backend must pass.
func testBackend(t *testing.T, bc backendCase) {
	t.Run("TwoTenants", func(t *testing.T) { testTwoTenants(t, bc.new(t)) })
	t.Run("Tampered", func(t *testing.T) { testTampered(t, bc.new) })
	t.Run("DeleteTenant", func(t *testing.T) { testDeleteTenant(t, bc.new(t)) })
}

func TestMemoryBackend(t *testing.T) { testBackend(t, memoryBackend()) }

func testTwoTenants(t *testing.T, b Backend) {
	x := New(b, time.Hour)
	acme, globex := mustCipher(t, "acme", "acme-key"), mustCipher(t, "globex", "globex-key")
	req := fullRequest()

	ka, kg := mustKey(t, acme, req), mustKey(t, globex, req)
	if ka == kg {
		t.Fatalf("same request, two tenants: both keys are %q", ka)
	}
	if !strings.HasPrefix(ka, "acme:") || !strings.HasPrefix(kg, "globex:") {
		t.Errorf("keys %q, %q: want prefixes acme: and globex:", ka, kg)
	}
	if ka[len("acme:"):] == kg[len("globex:"):] {
		t.Error("the hashed part of the key does not depend on the tenant's key")
	}

	mustPut(t, x, acme, req, answer("acme"))
	checkHit(t, x, acme, req, answer("acme"))
	checkMiss(t, x, globex, req)

	mustPut(t, x, globex, req, answer("globex"))
	checkHit(t, x, globex, req, answer("globex"))
	checkHit(t, x, acme, req, answer("acme"))
}

// withTenant rebuilds a stored envelope with its tenant replaced.
func withTenant(t *testing.T, env []byte, id tenant.Incarnation) []byte {
	t.Helper()
	if len(env) < 2 || len(env) < 2+int(env[1]) {
		t.Fatalf("stored entry is not an envelope: %x", env)
	}
	out := []byte{env[0], byte(len(id))}
	out = append(out, id...)
	return append(out, env[2+int(env[1]):]...)
}

func testTampered(t *testing.T, newBackend func(*testing.T) Backend) {
	acme, globex := mustCipher(t, "acme", "acme-key"), mustCipher(t, "globex", "globex-key")
	req, other := fullRequest(), fullRequest()
	other.Messages = append(other.Messages, llm.Message{Role: "user", Content: "and order 43?"})
	secret := Value{Content: "acme-only: card ends 4242", FinishReason: "stop"}

	// stored returns the bytes b holds under key.
	stored := func(t *testing.T, b Backend, key string) []byte {
		t.Helper()
		v, ok, err := b.Get(t.Context(), key)
		if err != nil || !ok {
			t.Fatalf("backend Get(%q) = %v, %v; want the entry", key, ok, err)
		}
		return v
	}
	set := func(t *testing.T, b Backend, key string, v []byte) {
		t.Helper()
		if err := b.Set(t.Context(), key, v, time.Hour); err != nil {
			t.Fatalf("backend Set(%q): %v", key, err)
		}
	}
	sealedFor := func(c *keyring.Cipher, envTenant tenant.Incarnation, key string) []byte {
		return sealEntry(c, envTenant, key, appendValue(nil, Value{Content: "forged", FinishReason: "stop"}))
	}

	tests := []struct {
		name string
		// tamper writes to b, given that acme has already Put secret for req;
		// it returns who then reads which request.
		tamper func(t *testing.T, b Backend) (*keyring.Cipher, Request)
	}{
		{"acme's bytes under globex's key", func(t *testing.T, b Backend) (*keyring.Cipher, Request) {
			set(t, b, mustKey(t, globex, req), stored(t, b, mustKey(t, acme, req)))
			return globex, req
		}},
		{"acme's bytes under globex's key, envelope tenant rewritten", func(t *testing.T, b Backend) (*keyring.Cipher, Request) {
			set(t, b, mustKey(t, globex, req), withTenant(t, stored(t, b, mustKey(t, acme, req)), "globex"))
			return globex, req
		}},
		{"envelope tenant rewritten in place", func(t *testing.T, b Backend) (*keyring.Cipher, Request) {
			k := mustKey(t, acme, req)
			set(t, b, k, withTenant(t, stored(t, b, k), "globex"))
			return acme, req
		}},
		{"acme's bytes under another acme key", func(t *testing.T, b Backend) (*keyring.Cipher, Request) {
			set(t, b, mustKey(t, acme, other), stored(t, b, mustKey(t, acme, req)))
			return acme, other
		}},
		{"globex forges acme's entry, envelope says globex", func(t *testing.T, b Backend) (*keyring.Cipher, Request) {
			k := mustKey(t, acme, req)
			set(t, b, k, sealedFor(globex, "globex", k))
			return acme, req
		}},
		{"globex forges acme's entry, envelope says acme", func(t *testing.T, b Backend) (*keyring.Cipher, Request) {
			k := mustKey(t, acme, req)
			set(t, b, k, sealedFor(globex, "acme", k))
			return acme, req
		}},
		{"same tenant id, another data key", func(t *testing.T, b Backend) (*keyring.Cipher, Request) {
			// A re-created "acme" with a new key must not read the old
			// acme's entries even if it could address them.
			newAcme := mustCipher(t, "acme", "new-acme-key")
			set(t, b, mustKey(t, newAcme, req), stored(t, b, mustKey(t, acme, req)))
			return newAcme, req
		}},
		{"ciphertext bit flipped", func(t *testing.T, b Backend) (*keyring.Cipher, Request) {
			k := mustKey(t, acme, req)
			v := stored(t, b, k)
			v[len(v)-1] ^= 1
			set(t, b, k, v)
			return acme, req
		}},
		{"truncated", func(t *testing.T, b Backend) (*keyring.Cipher, Request) {
			k := mustKey(t, acme, req)
			set(t, b, k, stored(t, b, k)[:10])
			return acme, req
		}},
		{"empty", func(t *testing.T, b Backend) (*keyring.Cipher, Request) {
			set(t, b, mustKey(t, acme, req), nil)
			return acme, req
		}},
		{"unknown envelope version", func(t *testing.T, b Backend) (*keyring.Cipher, Request) {
			k := mustKey(t, acme, req)
			v := stored(t, b, k)
			v[0] = 2
			set(t, b, k, v)
			return acme, req
		}},
		{"tenant length past the end", func(t *testing.T, b Backend) (*keyring.Cipher, Request) {
			set(t, b, mustKey(t, acme, req), []byte{envelopeVersion, 200, 'a'})
			return acme, req
		}},
		{"sealed for acme's key but not a value", func(t *testing.T, b Backend) (*keyring.Cipher, Request) {
			k := mustKey(t, acme, req)
			set(t, b, k, sealEntry(acme, "acme", k, append(appendValue(nil, Value{Content: "forged"}), 0)))
			return acme, req
		}},
		{"plain JSON value", func(t *testing.T, b Backend) (*keyring.Cipher, Request) {
			set(t, b, mustKey(t, acme, req), []byte(`{"content":"forged"}`))
			return acme, req
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t)
			x := New(b, time.Hour)
			mustPut(t, x, acme, req, secret)
			reader, readReq := tt.tamper(t, b)
			got, ok, err := x.Get(t.Context(), reader, readReq)
			if ok || got != (Value{}) {
				t.Fatalf("Get(%s) served a tampered entry: %+v, %v", reader.Tenant(), got, ok)
			}
			if !errors.Is(err, ErrForeignEntry) {
				t.Fatalf("Get(%s) error = %v, want ErrForeignEntry", reader.Tenant(), err)
			}
			if strings.Contains(err.Error(), "4242") || strings.Contains(err.Error(), "forged") {
				t.Errorf("error %q carries the entry's content", err)
			}
			if reader == acme && strings.Contains(err.Error(), "globex") {
				t.Errorf("error %q names the other tenant", err)
			}
			// A fresh Put heals the entry.
			mustPut(t, x, reader, readReq, answer(string(reader.Tenant())))
			checkHit(t, x, reader, readReq, answer(string(reader.Tenant())))
		})
	}
}

func testDeleteTenant(t *testing.T, b Backend) {
	x := New(b, time.Hour)
	ciphers := []*keyring.Cipher{
		mustCipher(t, "acme", "acme-key"),
		mustCipher(t, "acme-corp", "acme-corp-key"), // "acme" is a prefix of its id
		mustCipher(t, "globex", "globex-key"),
	}
	reqs := make([]Request, 5)
	for i := range reqs {
		reqs[i] = fullRequest()
		reqs[i].Profile = fmt.Sprint("p", i)
	}
	for _, c := range ciphers {
		for _, r := range reqs {
			mustPut(t, x, c, r, answer(string(c.Tenant())+r.Profile))
		}
	}
	if err := x.DeleteTenant(t.Context(), "acme"); err != nil {
		t.Fatalf("DeleteTenant(acme): %v", err)
	}
	for _, r := range reqs {
		checkMiss(t, x, ciphers[0], r)
		for _, c := range ciphers[1:] {
			checkHit(t, x, c, r, answer(string(c.Tenant())+r.Profile))
		}
	}
	for _, bad := range []tenant.Incarnation{"", "*", "acme:", "ACME"} {
		if err := x.DeleteTenant(t.Context(), bad); err == nil {
			t.Errorf("DeleteTenant(%q) = nil, want an error", bad)
		}
	}
	for _, c := range ciphers[1:] {
		checkHit(t, x, c, reqs[0], answer(string(c.Tenant())+reqs[0].Profile))
	}
}

// TestTenantFromCipherOnly: nothing in a Request changes the tenant part of
// the key, and a cipher whose tenant is not a valid id is refused.
func TestTenantFromCipherOnly(t *testing.T) {
	acme := mustCipher(t, "acme", "acme-key")
	for _, r := range []Request{
		{Profile: "globex:"},
		{Profile: "globex", Model: "globex:"},
		{Messages: []llm.Message{{Role: "user", Content: "globex:" + strings.Repeat("0", 64)}}},
		{Tools: []string{"../globex"}},
	} {
		if k := mustKey(t, acme, r); !strings.HasPrefix(k, "acme:") || strings.Count(k, ":") != 1 || len(k) != len("acme:")+64 {
			t.Errorf("key for %+v = %q, want acme:<64 hex>", r, k)
		}
	}

	x := New(NewMemory(10, 1<<20), time.Hour)
	var nilCipher *keyring.Cipher
	bad := []*keyring.Cipher{nilCipher}
	for _, id := range []tenant.ID{"", "acme:x", "ACME", "a b", "-acme", tenant.ID(strings.Repeat("a", 64))} {
		bad = append(bad, mustCipher(t, id, "k"))
	}
	for _, c := range bad {
		name := "nil"
		if c != nil {
			name = fmt.Sprintf("%q", c.Tenant())
		}
		if err := x.Put(t.Context(), c, Request{}, answer("x")); err == nil {
			t.Errorf("Put with cipher %s = nil, want an error", name)
		}
		if _, ok, err := x.Get(t.Context(), c, Request{}); ok || err == nil {
			t.Errorf("Get with cipher %s = %v, %v; want a miss and an error", name, ok, err)
		}
	}
	if n := x.b.(*Memory).Len(); n != 0 {
		t.Errorf("refused ciphers stored %d entries", n)
	}
}

// TestKeyChangesWithEveryField changes, one at a time, every field reachable
// in a Request (found by reflection, so a field added to llm.Message later is
// covered too) and checks that each change gives a new key.
func TestKeyChangesWithEveryField(t *testing.T) {
	c := mustCipher(t, "acme", "acme-key")
	base := mustKey(t, c, fullRequest())
	if again := mustKey(t, c, fullRequest()); again != base {
		t.Fatalf("same request, two keys: %q, %q", base, again)
	}

	var muts []string
	r := fullRequest()
	walk(t, reflect.ValueOf(&r).Elem(), "Request", func(path, op string, _ func()) { muts = append(muts, path+" "+op) })
	if len(muts) < 30 {
		t.Fatalf("found only %d mutations: %q", len(muts), muts)
	}

	seen := map[string]string{base: "base"}
	for i, m := range muts {
		r := fullRequest()
		j := 0
		walk(t, reflect.ValueOf(&r).Elem(), "Request", func(_, _ string, apply func()) {
			if j == i {
				apply()
			}
			j++
		})
		k := mustKey(t, c, r)
		if prev, dup := seen[k]; dup {
			t.Errorf("%s: same key as %s", m, prev)
		}
		seen[k] = m
	}
}

// walk calls visit for every mutation of every node under v: strings and
// ints change, pointers are cleared or changed, slices grow, shrink and
// reverse. An unknown kind fails the test, so the canonical encoding must be
// revisited when a new kind of field appears.
func walk(t *testing.T, v reflect.Value, path string, visit func(path, op string, apply func())) {
	t.Helper()
	switch v.Kind() {
	case reflect.String:
		visit(path, "append", func() { v.SetString(v.String() + "x") })
		if v.String() != "" {
			visit(path, "clear", func() { v.SetString("") })
		}
	case reflect.Int:
		visit(path, "increment", func() { v.SetInt(v.Int() + 1) })
	case reflect.Pointer:
		if v.Type().Elem().Kind() != reflect.Float64 {
			t.Fatalf("%s: unexpected pointer type %s", path, v.Type())
		}
		visit(path, "nil", func() { v.Set(reflect.Zero(v.Type())) })
		visit(path, "zero", func() { v.Set(reflect.ValueOf(ptr(0.0))) })
		visit(path, "negative zero", func() { v.Set(reflect.ValueOf(ptr(math.Copysign(0, -1)))) })
		visit(path, "change", func() { v.Set(reflect.ValueOf(ptr(v.Elem().Float() + 0.5))) })
	case reflect.Struct:
		for i := range v.NumField() {
			walk(t, v.Field(i), path+"."+v.Type().Field(i).Name, visit)
		}
	case reflect.Slice:
		visit(path, "append zero", func() { v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem()))) })
		if v.Len() > 0 {
			visit(path, "drop last", func() { v.Set(v.Slice(0, v.Len()-1)) })
		}
		if v.Len() > 1 {
			visit(path, "reverse", func() {
				s := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
				for i := range v.Len() {
					s.Index(i).Set(v.Index(v.Len() - 1 - i))
				}
				v.Set(s)
			})
		}
		for i := range v.Len() {
			walk(t, v.Index(i), fmt.Sprintf("%s[%d]", path, i), visit)
		}
	default:
		t.Fatalf("%s: kind %s is not covered by the canonical encoding test", path, v.Kind())
	}
}

// TestCanonicalUnambiguous checks pairs that a naive concatenation would
// confuse, and pairs that are the same request.
func TestCanonicalUnambiguous(t *testing.T) {
	msg := func(role, content string) llm.Message { return llm.Message{Role: role, Content: content} }
	tests := []struct {
		name string
		a, b Request
		same bool
	}{
		{"content vs name boundary", Request{Messages: []llm.Message{{Role: "user", Content: "ab"}}}, Request{Messages: []llm.Message{{Role: "user", Content: "a", Name: "b"}}}, false},
		{"role vs content boundary", Request{Messages: []llm.Message{msg("user", "x")}}, Request{Messages: []llm.Message{msg("userx", "")}}, false},
		{"one message vs two", Request{Messages: []llm.Message{msg("user", "a"), msg("user", "b")}}, Request{Messages: []llm.Message{msg("user", "a\x00\x04user\x01b")}}, false},
		{"message order", Request{Messages: []llm.Message{msg("user", "a"), msg("assistant", "b")}}, Request{Messages: []llm.Message{msg("assistant", "b"), msg("user", "a")}}, false},
		{"tool list split", Request{Tools: []string{"a,b"}}, Request{Tools: []string{"a", "b"}}, false},
		{"tool list joined", Request{Tools: []string{"ab"}}, Request{Tools: []string{"a", "b"}}, false},
		{"empty tool name", Request{Tools: []string{""}}, Request{}, false},
		{"profile vs model boundary", Request{Profile: "a:b", Model: "c"}, Request{Profile: "a", Model: "b:c"}, false},
		{"profile vs policy", Request{Profile: "p"}, Request{PolicyVersion: "p"}, false},
		{"tool offered vs tool called", Request{Tools: []string{"crm"}}, Request{Messages: []llm.Message{{ToolCalls: []llm.ToolCall{{Function: llm.FunctionCall{Name: "crm"}}}}}}, false},
		{"temperature unset vs 0", Request{}, Request{Temperature: ptr(0.0)}, false},
		{"max tokens 0 vs -1", Request{}, Request{MaxTokens: -1}, false},
		{"arguments vs call id", Request{Messages: []llm.Message{{ToolCalls: []llm.ToolCall{{ID: "1", Function: llm.FunctionCall{Arguments: "2"}}}}}}, Request{Messages: []llm.Message{{ToolCalls: []llm.ToolCall{{ID: "12"}}}}}, false},
		{"nil vs empty lists", Request{}, Request{Tools: []string{}, Messages: []llm.Message{}}, true},
		{"nil vs empty tool calls", Request{Messages: []llm.Message{msg("user", "a")}}, Request{Messages: []llm.Message{{Role: "user", Content: "a", ToolCalls: []llm.ToolCall{}}}}, true},
		{"equal temperatures, distinct pointers", Request{Temperature: ptr(0.7)}, Request{Temperature: ptr(0.7)}, true},
	}
	c := mustCipher(t, "acme", "acme-key")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ea, eb := appendCanonical(nil, tt.a), appendCanonical(nil, tt.b)
			if got := bytes.Equal(ea, eb); got != tt.same {
				t.Errorf("encodings equal = %v, want %v\na: %q\nb: %q", got, tt.same, ea, eb)
			}
			if got := mustKey(t, c, tt.a) == mustKey(t, c, tt.b); got != tt.same {
				t.Errorf("keys equal = %v, want %v", got, tt.same)
			}
			for _, r := range []Request{tt.a, tt.b} {
				checkRoundTrip(t, r)
			}
		})
	}
}

// checkRoundTrip decodes the canonical encoding of r and compares: an
// encoding that decodes back to its request is unambiguous.
func checkRoundTrip(t *testing.T, r Request) {
	t.Helper()
	got, err := decodeCanonical(appendCanonical(nil, r))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if want := normalize(r); !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %#v\nwant %#v", got, want)
	}
}

func FuzzCanonicalRoundTrip(f *testing.F) {
	f.Add("support", "m", "user", "hello", "", "crm", "call_1", `{"a":1}`, 256, 0.5, true)
	f.Add("", "", "", "", "", "", "", "", 0, 0.0, false)
	f.Add("a\x00b", "\xff", "tool", "x\x01y", "n", "a,b", "", "", -1, math.Inf(1), true)
	f.Fuzz(func(t *testing.T, profile, model, role, content, name, tool, callID, args string, maxTokens int, temp float64, hasTemp bool) {
		r := Request{
			Profile: profile, Model: model, PolicyVersion: name + tool, MaxTokens: maxTokens,
			Tools: []string{tool, name},
			Messages: []llm.Message{
				{Role: role, Content: content, Name: name},
				{Role: "assistant", ToolCalls: []llm.ToolCall{{ID: callID, Type: "function", Function: llm.FunctionCall{Name: tool, Arguments: args}}}},
				{Role: "tool", Content: args, ToolCallID: callID},
			},
		}
		if hasTemp {
			r.Temperature = &temp
		}
		checkRoundTrip(t, r)
	})
}

// normalize makes empty lists nil, as the encoding does not tell them apart.
func normalize(r Request) Request {
	if len(r.Tools) == 0 {
		r.Tools = nil
	}
	if len(r.Messages) == 0 {
		r.Messages = nil
	}
	ms := make([]llm.Message, len(r.Messages))
	for i, m := range r.Messages {
		if len(m.ToolCalls) == 0 {
			m.ToolCalls = nil
		}
		ms[i] = m
	}
	if r.Messages != nil {
		r.Messages = ms
	}
	return r
}

// decodeCanonical is the inverse of appendCanonical, to prove it injective.
func decodeCanonical(b []byte) (Request, error) {
	d := decoder{b: b}
	if !bytes.HasPrefix(b, []byte(canonicalVersion)) {
		return Request{}, errors.New("no version tag")
	}
	d.b = d.b[len(canonicalVersion):]
	var r Request
	r.Profile, r.Model, r.PolicyVersion, r.Options = d.str(), d.str(), d.str(), d.str()
	r.MaxTokens = int(d.varint())
	switch d.byte() {
	case 0:
	case 1:
		if len(d.b) < 8 {
			return Request{}, errors.New("short temperature")
		}
		r.Temperature = ptr(math.Float64frombits(binary.BigEndian.Uint64(d.b)))
		d.b = d.b[8:]
	default:
		return Request{}, errors.New("bad temperature tag")
	}
	for range d.count() {
		r.Tools = append(r.Tools, d.str())
	}
	for range d.count() {
		m := llm.Message{Role: d.str(), Content: d.str(), Name: d.str(), ToolCallID: d.str()}
		for range d.count() {
			m.ToolCalls = append(m.ToolCalls, llm.ToolCall{ID: d.str(), Type: d.str(), Function: llm.FunctionCall{Name: d.str(), Arguments: d.str()}})
		}
		r.Messages = append(r.Messages, m)
	}
	if d.err != nil {
		return Request{}, d.err
	}
	if len(d.b) != 0 {
		return Request{}, fmt.Errorf("%d trailing bytes", len(d.b))
	}
	return r, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(msg string) {
	if d.err == nil {
		d.err = errors.New(msg)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail("short")
		return 0xff
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) { // every element takes at least one byte
		d.fail("count too large")
		return 0
	}
	return int(n)
}

func (d *decoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("string too long")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// TestValueRoundTrip fills every field of Value by reflection, so a field
// added to Value or llm.Usage and not encoded fails here.
func TestValueRoundTrip(t *testing.T) {
	var v Value
	n := 0
	var fill func(v reflect.Value, path string)
	fill = func(v reflect.Value, path string) {
		n++
		switch v.Kind() {
		case reflect.String:
			v.SetString(fmt.Sprintf("%s=%d\x00é", path, n))
		case reflect.Int:
			v.SetInt(int64(n) * 1_000_003)
		case reflect.Struct:
			for i := range v.NumField() {
				fill(v.Field(i), path+"."+v.Type().Field(i).Name)
			}
		default:
			t.Fatalf("%s: kind %s is not covered by appendValue", path, v.Kind())
		}
	}
	fill(reflect.ValueOf(&v).Elem(), "Value")
	for _, want := range []Value{{}, v, {Usage: llm.Usage{PromptTokens: -1, TotalTokens: math.MaxInt}}} {
		enc := appendValue(nil, want)
		if got, ok := parseValue(enc); !ok || got != want {
			t.Errorf("parseValue(appendValue(%+v)) = %+v, %v", want, got, ok)
		}
		for i := range len(enc) {
			if _, ok := parseValue(enc[:i]); ok {
				t.Errorf("parseValue accepts %d of %d bytes", i, len(enc))
			}
		}
		if _, ok := parseValue(append(enc, 0)); ok {
			t.Error("parseValue accepts a trailing byte")
		}
	}
}

func TestCacheTTL(t *testing.T) {
	mem := NewMemory(10, 1<<20)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	mem.now = func() time.Time { return now }
	x := New(mem, time.Minute)
	acme, req := mustCipher(t, "acme", "acme-key"), fullRequest()

	mustPut(t, x, acme, req, answer("acme"))
	now = now.Add(59 * time.Second)
	checkHit(t, x, acme, req, answer("acme"))
	now = now.Add(time.Second)
	checkMiss(t, x, acme, req)
	if mem.Len() != 0 {
		t.Errorf("expired entry still held: Len() = %d", mem.Len())
	}
}

func TestNewDefaults(t *testing.T) {
	x := New(nil, 0)
	if x.ttl != DefaultTTL {
		t.Errorf("ttl = %v, want %v", x.ttl, DefaultTTL)
	}
	acme := mustCipher(t, "acme", "acme-key")
	mustPut(t, x, acme, fullRequest(), answer("acme"))
	checkHit(t, x, acme, fullRequest(), answer("acme"))
}

type failingBackend struct{ Backend }

var errDown = errors.New("backend down")

func (failingBackend) Get(context.Context, string) ([]byte, bool, error) { return nil, false, errDown }
func (failingBackend) Set(context.Context, string, []byte, time.Duration) error {
	return errDown
}
func (failingBackend) DeleteTenant(context.Context, tenant.Incarnation) error { return errDown }

func TestBackendErrors(t *testing.T) {
	x := New(failingBackend{}, time.Hour)
	acme := mustCipher(t, "acme", "acme-key")
	v, ok, err := x.Get(t.Context(), acme, fullRequest())
	if ok || v != (Value{}) || !errors.Is(err, errDown) || errors.Is(err, ErrForeignEntry) {
		t.Errorf("Get = %+v, %v, %v; want a miss with the backend's error", v, ok, err)
	}
	if err := x.Put(t.Context(), acme, fullRequest(), answer("acme")); !errors.Is(err, errDown) {
		t.Errorf("Put = %v, want the backend's error", err)
	}
	if err := x.DeleteTenant(t.Context(), "acme"); !errors.Is(err, errDown) {
		t.Errorf("DeleteTenant = %v, want the backend's error", err)
	}
}

func TestPromptCacheKey(t *testing.T) {
	acme, globex := mustCipher(t, "acme", "acme-key"), mustCipher(t, "globex", "globex-key")
	k := PromptCacheKey(acme, "default")
	tests := []struct {
		name string
		c    *keyring.Cipher
		prof string
		same bool
	}{
		{"same tenant and profile", mustCipher(t, "acme", "acme-key"), "default", true},
		{"other tenant, same profile", globex, "default", false},
		{"same tenant, other profile", acme, "billing", false},
		{"same tenant id, other data key", mustCipher(t, "acme", "new-acme-key"), "default", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PromptCacheKey(tt.c, tt.prof) == k; got != tt.same {
				t.Errorf("PromptCacheKey equal = %v, want %v", got, tt.same)
			}
		})
	}
	if len(k) != 35 || !strings.HasPrefix(k, "bh-") || strings.Contains(k, "acme") || strings.Contains(k, "default") {
		t.Errorf("PromptCacheKey = %q, want bh- and 32 hex digits revealing nothing", k)
	}
	if PromptCacheKey(acme, "default") == mustKey(t, acme, Request{Profile: "default"})[len("acme:"):][:32] {
		t.Error("prompt cache key reuses the response cache key")
	}
}

// TestConcurrentTenants hammers a small shared Memory from several tenants:
// every hit must be the reader's own answer.
func TestConcurrentTenants(t *testing.T) {
	x := New(NewMemory(50, 1<<20), time.Hour)
	ids := []tenant.ID{"acme", "globex", "initech", "umbrella"}
	var wg sync.WaitGroup
	errs := make(chan error, len(ids))
	for _, id := range ids {
		c := mustCipher(t, id, string(id)+"-key")
		wg.Go(func() {
			for i := range 500 {
				req := Request{Profile: "default", Messages: []llm.Message{{Role: "user", Content: fmt.Sprint(i % 40)}}}
				want := Value{Content: fmt.Sprintf("%s/%d", id, i%40)}
				if i%3 == 0 {
					if err := x.Put(t.Context(), c, req, want); err != nil {
						errs <- err
						return
					}
					continue
				}
				got, ok, err := x.Get(t.Context(), c, req)
				if err != nil || (ok && got != want) {
					errs <- fmt.Errorf("%s: Get = %+v, %v, %v; want %+v", id, got, ok, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func benchRequest() Request {
	r := fullRequest()
	for i := range 6 {
		r.Messages = append(r.Messages, llm.Message{Role: "user", Content: strings.Repeat(fmt.Sprint("turn ", i, " "), 30)})
	}
	return r
}

func BenchmarkGetHit(b *testing.B) {
	x := New(NewMemory(0, 0), time.Hour)
	c := mustCipher(b, "acme", "acme-key")
	req := benchRequest()
	v := Value{Content: strings.Repeat("answer ", 150), FinishReason: "stop", Usage: llm.Usage{PromptTokens: 900, CompletionTokens: 300, TotalTokens: 1200}}
	mustPut(b, x, c, req, v)
	b.SetBytes(int64(len(appendCanonical(nil, req))))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, err := x.Get(context.Background(), c, req); !ok || err != nil {
			b.Fatalf("Get = %v, %v", ok, err)
		}
	}
}

func BenchmarkPut(b *testing.B) {
	x := New(NewMemory(0, 0), time.Hour)
	c := mustCipher(b, "acme", "acme-key")
	req := benchRequest()
	v := Value{Content: strings.Repeat("answer ", 150), FinishReason: "stop"}
	b.ReportAllocs()
	for b.Loop() {
		if err := x.Put(context.Background(), c, req, v); err != nil {
			b.Fatal(err)
		}
	}
}
