package redact

import (
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

const bearer = "tok_8Hq2ZxV5nLp0Ws3K/+Rb9Y"

func colonHex(b []byte) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = fmt.Sprintf("%02x", c)
	}
	return strings.Join(parts, ":")
}

func percentAll(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

func jsonEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch {
		case c == '/':
			b.WriteString(`\/`)
		case c == '+' || c == 'Z' || c%3 == 0:
			fmt.Fprintf(&b, `\u%04X`, c)
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// ownForms are the encodings of HARDENING.md's "encoded forms of the
// tenant's own secret" and "credentials echoed back by a tool server".
var ownForms = []struct {
	name string
	enc  func(r *rand.Rand, v string) string
}{
	{"base64 of Bearer + secret", func(_ *rand.Rand, v string) string {
		return base64.StdEncoding.EncodeToString([]byte("Bearer " + v))
	}},
	{"base64url at an offset", func(r *rand.Rand, v string) string {
		return base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("x", r.IntN(5)) + v + "!"))
	}},
	{"base32 at an offset", func(r *rand.Rand, v string) string {
		return base32.StdEncoding.EncodeToString([]byte(strings.Repeat("y", r.IntN(6)) + v))
	}},
	{"fully percent-encoded", func(_ *rand.Rand, v string) string { return percentAll(v) }},
	{"hex with colons", func(_ *rand.Rand, v string) string { return colonHex([]byte(v)) }},
	{"HEX", func(_ *rand.Rand, v string) string { return strings.ToUpper(hex.EncodeToString([]byte(v))) }},
	{"JSON escapes", func(_ *rand.Rand, v string) string { return jsonEscape(v) }},
	{"fullwidth", func(_ *rand.Rand, v string) string {
		var b strings.Builder
		for _, c := range v {
			b.WriteRune(c + 0xFF01 - '!')
		}
		return b.String()
	}},
	{"zero-width joiners", func(_ *rand.Rand, v string) string { return strings.Join(strings.Split(v, ""), "\u200d") }},
	{"spaced out", func(_ *rand.Rand, v string) string { return strings.Join(strings.Split(v, ""), " ") }},
	{"reversed", func(_ *rand.Rand, v string) string {
		b := []byte(v)
		for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
			b[i], b[j] = b[j], b[i]
		}
		return string(b)
	}},
	{"rot13", func(_ *rand.Rand, v string) string {
		return strings.Map(func(c rune) rune {
			switch {
			case 'a' <= c && c <= 'z':
				return 'a' + (c-'a'+13)%26
			case 'A' <= c && c <= 'Z':
				return 'A' + (c-'A'+13)%26
			}
			return c
		}, v)
	}},
}

// TestOwnSecretEncodedForms: the tenant's own secret in each encoded form
// is redacted by String and by a Stream cut at every point.
func TestOwnSecretEncodedForms(t *testing.T) {
	r := New([]Secret{{Name: "crm", Value: bearer}})
	rng := rand.New(rand.NewPCG(11, 12))
	for _, f := range ownForms {
		t.Run(f.name, func(t *testing.T) {
			leak := f.enc(rng, bearer)
			text := `{"result": "ok", "echo": "` + leak + `", "n": 1}`
			got := r.String(text)
			if !strings.Contains(got, "[REDACTED:crm]") || strings.Contains(got, leak) {
				t.Fatalf("String(%q) = %q, want the form redacted", text, got)
			}
			for cut := 0; cut <= len(text); cut++ {
				s := r.Stream()
				if out := s.Write(text[:cut]) + s.Write(text[cut:]) + s.Flush(); out != got {
					t.Fatalf("cut at %d: stream %q, want %q", cut, out, got)
				}
			}
		})
	}
}

// TestRedactProperty: random secrets in random forms at random places of
// random text, streamed in random pieces, never survive, and the stream
// gives what String gives.
func TestRedactProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(2026, 5))
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_/+"
	words := strings.Fields("the answer is here and the token was echoed back by the server with some JSON {\"a\": [1, 2]} code() ü é 😀")
	for n := range 2000 {
		var secrets []Secret
		for i := range 1 + rng.IntN(4) {
			b := make([]byte, 16+rng.IntN(24))
			for j := range b {
				b[j] = chars[rng.IntN(len(chars))]
			}
			secrets = append(secrets, Secret{Name: fmt.Sprint("s", i), Value: string(b)})
		}
		red := New(secrets)
		var text strings.Builder
		for range rng.IntN(60) {
			text.WriteString(words[rng.IntN(len(words))] + " ")
		}
		v := secrets[rng.IntN(len(secrets))].Value
		f := ownForms[n%len(ownForms)]
		leak := f.enc(rng, v)
		text.WriteString(leak)
		for range rng.IntN(60) {
			text.WriteString(" " + words[rng.IntN(len(words))])
		}
		in := text.String()
		want := red.String(in)
		if strings.Contains(want, leak) || !strings.Contains(want, "[REDACTED:") {
			t.Fatalf("case %d, %s: %q not redacted in %q", n, f.name, leak, want)
		}
		s := red.Stream()
		var out strings.Builder
		for rest := in; rest != ""; {
			k := min(len(rest), 1+rng.IntN(30))
			out.WriteString(s.Write(rest[:k]))
			rest = rest[k:]
		}
		out.WriteString(s.Flush())
		if out.String() != want {
			t.Fatalf("case %d, %s: stream %q, want %q", n, f.name, out.String(), want)
		}
	}
}

// TestNoFalsePositives: ordinary prose, code and JSON pass untouched with
// twenty secrets loaded.
func TestNoFalsePositives(t *testing.T) {
	var secrets []Secret
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range 20 {
		b := make([]byte, 24)
		for j := range b {
			b[j] = "abcdefghijklmnopqrstuvwxyz0123456789"[rng.IntN(36)]
		}
		secrets = append(secrets, Secret{Name: fmt.Sprint("s", i), Value: string(b)})
	}
	secrets = append(secrets, Secret{Name: "short", Value: "hunter22"})
	r := New(secrets)
	text := strings.Repeat(`The deploy finished at 06:12 UTC; 3 of 4 checks passed.
if err := db.QueryRow(ctx, "SELECT count(*) FROM t WHERE id = $1", id).Scan(&n); err != nil { return err }
{"items":[{"id":"a1b2c3","qty":2,"price":"9.99"}],"next":"https:\/\/api.example\/p?page=2&q=%20"}
de:ad:be:ef:00:11 0xDEADBEEF SGVsbG8gd29ybGQ= hunter2 is not hunter22's cousin.
`, 30)
	want := strings.ReplaceAll(text, "hunter22", "[REDACTED:short]")
	if got := r.String(text); got != want {
		t.Fatalf("ordinary text changed:\n%q", got)
	}
}

func FuzzRedact(f *testing.F) {
	f.Add(uint8(0), "prefix ", " suffix", 3)
	f.Add(uint8(6), "", "", 1)
	f.Fuzz(func(t *testing.T, form uint8, before, after string, cut int) {
		r := New([]Secret{{Name: "crm", Value: bearer}})
		fm := ownForms[int(form)%len(ownForms)]
		leak := fm.enc(rand.New(rand.NewPCG(uint64(cut), 1)), bearer)
		text := before + " " + leak + " " + after
		got := r.String(text)
		if strings.Contains(got, leak) {
			t.Fatalf("%s form survived in %q", fm.name, got)
		}
		if cut < 0 {
			cut = -cut
		}
		cut %= len(text) + 1
		s := r.Stream()
		if out := s.Write(text[:cut]) + s.Write(text[cut:]) + s.Flush(); out != got {
			t.Fatalf("stream %q, want %q", out, got)
		}
	})
}
