package guard

import (
	crand "crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

const mitSentence = "Permission is hereby granted, free of charge, to any person obtaining a copy"

func randomB64(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := crand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := crand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// structuredSecrets are realistic credentials whose beginning is public
// boilerplate, as a tenant may store them.
func structuredSecrets(t *testing.T) map[string]string {
	pem := "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ" + randomB64(t, 96) + "\n-----END PRIVATE KEY-----\n"
	sa := `{"type": "service_account", "project_id": "victim-prod-4821", "private_key_id": "` + randomHex(t, 20) +
		`", "private_key": "` + strings.ReplaceAll(pem, "\n", `\n`) + `", "client_email": "bot@victim-prod-4821.iam.gserviceaccount.com"}`
	claims := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"` + randomHex(t, 8) + `","iat":1700000000}`))
	jwt := "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + claims + "." + strings.TrimRight(base64.RawURLEncoding.EncodeToString([]byte(randomB64(t, 32))), "=")
	return map[string]string{"gcp_sa": sa, "tls_key": pem, "api_jwt": jwt, "licence_text": mitSentence}
}

// TestForeignSecretPublicPartNotMatched checks the class "a tenant's
// secrets as a weapon": whatever structured credentials globex stores, an
// answer of acme's quoting the public text they begin with (a PEM header,
// the jwt.io example token, a licence) is neither withheld nor changed, in
// Check and Stream; the whole secret still blocks.
func TestForeignSecretPublicPartNotMatched(t *testing.T) {
	g := New()
	secrets := structuredSecrets(t)
	for name, v := range secrets {
		g.SetSecret(globex, name, []byte(v))
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, text := range []string{
		`A key file is JSON; its first member is "type": "service_account".`,
		"Every RSA-2048 PKCS#8 key starts -----BEGIN PRIVATE KEY----- MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ",
		"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ...\n-----END PRIVATE KEY-----",
		"The jwt.io example: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
		"As the licence says: " + mitSentence + " of this software.",
		"Pick the type: service account, then download the key.",
	} {
		v, sv, sent := checkBoth(g, r, acme, text)
		if v.Blocked || sv.Blocked || v.Text != text || sent != text {
			t.Errorf("%.50q: Check %+v, Stream blocked %v sent %.50q; want it untouched", text, v, sv.Blocked, sent)
		}
	}
	for _, name := range []string{"tls_key", "api_jwt", "gcp_sa"} {
		v, sv, _ := checkBoth(g, r, acme, "leak: "+secrets[name]+" end")
		for _, got := range []Verdict{v, sv} {
			if !got.Blocked || !slices.Equal(got.Leaks, []Leak{{globex, LeakSecret}}) {
				t.Errorf("whole %s: verdict %+v, want blocked for globex's secret", name, got)
			}
		}
	}
}

// TestGuessableSecretNotTracked checks the class "the guard as an oracle":
// a secret a guess can hit (repeated, made of words, structured) is not
// tracked, so saying the right guess gives the same verdict as a wrong one.
func TestGuessableSecretNotTracked(t *testing.T) {
	for _, low := range []string{
		"Summer2024!Summer2024!",
		"Password123!Password123!",
		"correct7horse9battery3staple",
		"Correct-Horse-Battery-Staple-42",
		mitSentence,
		"abcdefghijklmnopqrstuvwxyz0123456789",
		"1234-5678-1234-5678-1234",
		"passwordpassword",
		"short-Key1",
	} {
		g := New()
		if g.SetSecret(globex, "pw", []byte(low)) {
			t.Errorf("%q: tracked, want not (a guess of it is feasible)", low)
		}
		if v := g.Check(acme, "my guess is "+low, nil); v.Blocked {
			t.Errorf("%q: the right guess is blocked: %q", low, v.Reasons)
		}
	}
}

// TestWholeRandomSecretBlocked: a random 32-character base64url secret of
// globex's in acme's answer is blocked whole, plain and base64-encoded
// (alone and inside base64 of "Bearer " + it), while 20 characters of it
// are not: nothing short of the whole is matched.
func TestWholeRandomSecretBlocked(t *testing.T) {
	for range 20 {
		b := make([]byte, 24)
		crand.Read(b)
		secret := base64.RawURLEncoding.EncodeToString(b)
		g := New()
		if !g.SetSecret(globex, "api", []byte(secret)) {
			t.Fatalf("random %q is not tracked", secret)
		}
		r := rand.New(rand.NewPCG(5, 6))
		for _, text := range []string{
			"key " + secret + " end",
			"key " + base64.StdEncoding.EncodeToString([]byte(secret)),
			"auth " + base64.StdEncoding.EncodeToString([]byte("Bearer "+secret)),
		} {
			v, sv, _ := checkBoth(g, r, acme, text)
			for _, got := range []Verdict{v, sv} {
				if !got.Blocked || !slices.Equal(got.Owners, []tenant.ID{globex}) {
					t.Errorf("%q: verdict %+v, want blocked for globex's secret", text, got)
				}
			}
		}
		if v := g.Check(acme, "part "+secret[:20], nil); v.Blocked {
			t.Errorf("20 characters of %q blocked: %q", secret, v.Reasons)
		}
	}
}

// TestRandomEnough pins what is tracked.
func TestRandomEnough(t *testing.T) {
	for _, c := range []struct {
		v    string
		want bool
	}{
		{"gx_9fK2LmQ7vR4tZp8WcX3nB6yH1sJ5dE0a", true},
		{"q7Xk2Lm9Pz4Rt8Wc3Nb6", true},             // 20 random characters
		{"3f9a1c7e5b2d8f4a6c0e9b1d7f3a5c8e", true}, // 32 hex digits
		{"Summer2024!Summer2024!", false},
		{"Tr0ub4dor&3", false}, // too short
		{mitSentence, false},
		{"correct7horse9battery3staple", false},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
		{"abababababababababababab12", false},
	} {
		if got := randomEnough([]byte(c.v)); got != c.want {
			t.Errorf("randomEnough(%q) = %v (%.0f bits), want %v", c.v, got, secretBits([]byte(c.v)), c.want)
		}
	}
}

// streamedBeforeBlock streams text to id in pieces of n bytes (0: random
// sizes) and returns whether it blocked and what it sent before.
func streamedBeforeBlock(g *Guard, r *rand.Rand, id tenant.ID, text string, n int) (bool, string) {
	s := g.Stream(id, nil)
	var sent strings.Builder
	for rest := text; rest != ""; {
		k := n
		if k == 0 {
			k = 1 + r.IntN(24)
		}
		k = min(k, len(rest))
		out, v := s.Write(rest[:k])
		if v.Blocked {
			return true, sent.String()
		}
		sent.WriteString(out)
		rest = rest[k:]
	}
	out, v := s.Flush()
	if v.Blocked {
		return true, sent.String()
	}
	sent.WriteString(out)
	return false, sent.String()
}

// TestStreamedForeignSecretSendsNothingOfIt checks the class "another
// tenant's secret streamed whole before the block": in every form the guard
// tracks, written whole, joined by the removal of the receiver's own canary
// or of a link, streamed byte by byte or in random pieces, globex's secret
// blocks acme's stream before any byte of the form was sent. A form inside
// longer base64 data may cost the one or two characters that mix its bits
// with what comes before.
func TestStreamedForeignSecretSendsNothingOfIt(t *testing.T) {
	g := crowdedGuard(t, 30)
	own := newCanary(t)
	g.SetCanaries(acme, []string{own})
	values := []string{globexKey, "vIc9/Rt3+Nw7Qm2/Lp8Xs4+Jk6Bd1Fg0", randomB64(t, 30), randomHex(t, 24)}
	for i, v := range values {
		if !g.SetSecret(globex, fmt.Sprintf("s%d", i), []byte(v)) {
			t.Fatalf("%q is not tracked", v)
		}
	}
	r := rand.New(rand.NewPCG(5, 9))
	const before, after = "Sure. The value you asked for is ", " (please ignore this line entirely). Anything else?"
	type leak struct{ name, form string }
	for _, v := range values {
		var leaks []leak
		for _, f := range leakForms {
			if strings.Contains(f.name, "upper") || strings.Contains(f.name, "offset") {
				continue // upper-casing changes the value; offsets are below
			}
			leaks = append(leaks, leak{f.name, f.enc(r, v)})
		}
		for k := 1; k <= startLen; k++ {
			leaks = append(leaks,
				leak{fmt.Sprintf("joined by removing own canary after %d", k), v[:k] + own + v[k:]},
				leak{fmt.Sprintf("joined by removing a link after %d", k), v[:k] + "[" + v[k:k+4] + "](https://evil.example/x)" + v[k+4:]})
		}
		for _, l := range leaks {
			text := before + l.form + after
			slack := 0
			if l.name == "base64 bearer" {
				slack = (len("Bearer ")*4+2)/3 + 2
			}
			if cv := g.Check(acme, text, nil); !cv.Blocked || !slices.Contains(cv.Reasons, ReasonForeignSecret) {
				t.Errorf("%s of %q: Check gave %+v, want blocked for globex's secret", l.name, v, cv)
				continue
			}
			for _, n := range []int{1, 0, len(before) + 3} {
				blocked, sent := streamedBeforeBlock(g, r, acme, text, n)
				if !blocked || len(sent) > len(before)+slack {
					t.Errorf("%s of %q, pieces of %d: blocked %v after sending %q, want blocked with nothing past %q", l.name, v, n, blocked, sent, before)
				}
			}
		}
	}
}

// TestStreamCutsIgnoreOtherTenantsSecrets checks that where a stream is cut
// depends on another tenant's secret only through the keyed hash of a
// window's first startLen view bytes: text holding any shorter beginning of
// globex's secret, or any piece of it from further in, is cut exactly as
// when globex stores another secret, so the receiver cannot find the
// secret a character at a time. The control shows the comparison sees a
// held beginning of startLen bytes, which takes about 2^40 guesses to hit.
func TestStreamCutsIgnoreOtherTenantsSecrets(t *testing.T) {
	secret := "vIc9/Rt3+Nw7Qm2/Lp8Xs4+Jk6Bd1Fg0"
	var probes []string
	for n := 1; n <= 8; n++ { // up to 7 letters and digits: "vIc9/Rt3" is 7
		probes = append(probes, secret[:n])
	}
	for o := 1; o+12 <= len(secret); o++ {
		probes = append(probes, secret[o:o+12])
	}
	cutsOf := func(g *Guard, probe string) string {
		s := g.Stream(acme, nil)
		var outs []string
		for _, piece := range []string{"See ", probe, " then", " more", " words."} {
			out, v := s.Write(piece)
			if v.Blocked {
				t.Fatalf("probe %q blocked: %q", probe, v.Reasons)
			}
			outs = append(outs, out)
		}
		out, _ := s.Flush()
		return fmt.Sprintf("%q", append(outs, out))
	}
	with, without := New(), New()
	with.SetSecret(globex, "crm", []byte(secret))
	without.SetSecret(globex, "crm", []byte(randomB64(t, 24)))
	for _, p := range probes {
		if a, b := cutsOf(with, p), cutsOf(without, p); a != b {
			t.Errorf("probe %q: cut %s with globex's secret, %s without", p, a, b)
		}
	}
	if p := secret[:12]; cutsOf(with, p) == cutsOf(without, p) {
		t.Errorf("control: a whole beginning of %d view bytes (%q) is not held", startLen, p)
	}
}

// TestEncodedTextNotAUnit: a credential that encodes predictable text (a
// JWT's header and claims, the base64 of a JSON key file's first members)
// yields no unit a tenant could write from a guess of that text; its random
// part (the signature, the key id and key material) is still tracked, and
// so is a random token that happens to be valid base64.
func TestEncodedTextNotAUnit(t *testing.T) {
	enc := base64.RawURLEncoding.EncodeToString
	const sig = "Xq3vT9pL2mZ8wK4rB7nD1sF6hJ0cY5aE-uGiOkQxWz"
	header := enc([]byte(`{"alg":"HS256","typ":"JWT"}`))
	claims := enc([]byte(`{"sub":"svc-victim-billing","iss":"https://auth.victim.example","aud":"crm","iat":1764547200}`))
	keyFile := base64.StdEncoding.EncodeToString([]byte(`{"type": "service_account", "project_id": "my-project-123", ` +
		`"private_key_id": "3f9a1c0b7e2d4a6f8b1c3e5d7a9f0b2c4d6e8a1b", "private_key": "-----BEGIN PRIVATE KEY-----\n` +
		`MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n-----END PRIVATE KEY-----\n"}`))
	tests := []struct {
		name      string
		value     string
		predicted string // a prefix of the value a guess can write: no unit may lie in it
		random    string // a random part that must lie in some unit
	}{
		{"jwt", header + "." + claims + "." + sig, header + "." + claims + ".", sig[:20]},
		{"short jwt", header + "." + enc([]byte(`{"sub":"svc-victim","iat":1764547200}`)) + "." + sig, header + ".", sig[:20]},
		{"key file", keyFile, keyFile[:96], ""},
		{"hex of json", hex.EncodeToString([]byte(`{"account":"billing","region":"eu-west-1","key":"k9Qz3Xv8Lp2Rt7Wm4Nb6Hs1Jd5Fg0Ac"}`)),
			hex.EncodeToString([]byte(`{"account":"billing","region":"eu-west-1","key":"`)), ""},
		{"base64 token", "vIc9/Rt3+Nw7Qm2/Lp8Xs4+Jk6Bd1Fg0", "", "vIc9/Rt3+Nw7Qm2/Lp8Xs4+Jk6Bd1Fg0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			units := secretUnits([]byte(tt.value))
			if len(units) == 0 {
				t.Fatalf("no unit of %q is tracked", tt.value)
			}
			found := tt.random == ""
			for _, u := range units {
				if tt.predicted != "" && strings.Contains(tt.predicted, string(u)) {
					t.Errorf("unit %q lies in the predictable part", u)
				}
				if tt.predicted != "" && strings.HasPrefix(tt.value, string(u[:startLen])) {
					t.Errorf("unit %q begins where the value does", u)
				}
				found = found || strings.Contains(string(u), tt.random)
			}
			if !found {
				t.Errorf("no unit holds the random part %q: %q", tt.random, units)
			}
		})
	}
}

// TestStreamCutsSameWithoutForeignSecrets: where a stream is cut does not
// tell the receiver whether another tenant has stored a tracked secret yet,
// nor whether one stores a JWT (whose first bytes are the same for every
// JWT): the fixed holds apply in every state, and a JWT's header is no
// window beginning.
func TestStreamCutsSameWithoutForeignSecrets(t *testing.T) {
	jwt := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"svc-victim","iat":1764547200}`)) + ".Xq3vT9pL2mZ8wK4rB7nD1sF6hJ0cY5aE-uGiOkQxWz"
	cutsOf := func(g *Guard, text string) string {
		s := g.Stream(acme, nil)
		var outs []string
		for _, piece := range strings.SplitAfter(text, " ") {
			out, v := s.Write(piece)
			if v.Blocked {
				t.Fatalf("%q blocked: %q", text, v.Reasons)
			}
			outs = append(outs, out)
		}
		out, _ := s.Flush()
		return fmt.Sprintf("%q", append(outs, out))
	}
	states := map[string]func(g *Guard){
		"no secrets":        func(*Guard) {},
		"acme's own secret": func(g *Guard) { g.SetSecret(acme, "own", []byte(randomB64(t, 24))) },
		"globex's token":    func(g *Guard) { g.SetSecret(globex, "crm", []byte(randomB64(t, 24))) },
		"globex's token, jwt": func(g *Guard) {
			g.SetSecret(globex, "crm", []byte(randomB64(t, 24)))
			g.SetSecret(globex, "jwt", []byte(jwt))
		},
	}
	for _, text := range []string{
		"alpha bravo charlie delta echo foxtrot golf hotel",
		"header " + jwt[:60] + " and then more words",
	} {
		var first, firstName string
		for name, set := range states {
			g := New()
			set(g)
			got := cutsOf(g, text)
			if first == "" {
				first, firstName = got, name
				continue
			}
			if got != first {
				t.Errorf("%.30q: cut %s with %s, %s with %s", text, got, name, first, firstName)
			}
		}
	}
}
