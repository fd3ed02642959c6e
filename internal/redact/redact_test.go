package redact

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/bulkhead-ai/bulkhead/internal/textnorm"
)

const token = "sk-live/4f9+Zq=xY_token"

func TestString(t *testing.T) {
	r := New([]Secret{{Name: "crm", Value: token}, {Name: "short", Value: "abc"}})
	raw := []byte(token)
	tests := []struct {
		name, in, want string
	}{
		{"plain", "key is " + token + ".", "key is [REDACTED:crm]."},
		{"twice", token + token, "[REDACTED:crm][REDACTED:crm]"},
		{"base64", "b64=" + base64.StdEncoding.EncodeToString(raw), "b64=[REDACTED:crm]"},
		{"base64 raw", base64.RawStdEncoding.EncodeToString(raw) + "!", "[REDACTED:crm]!"},
		{"base64url", base64.URLEncoding.EncodeToString(raw), "[REDACTED:crm]"},
		{"url query", "?k=" + url.QueryEscape(token), "?k=[REDACTED:crm]"},
		{"url path", "/p/" + url.PathEscape(token), "/p/[REDACTED:crm]"},
		{"hex", hex.EncodeToString(raw), "[REDACTED:crm]"},
		{"HEX", strings.ToUpper(hex.EncodeToString(raw)), "[REDACTED:crm]"},
		{"short secrets are not redacted", "abc abc", "abc abc"},
		{"innocent", "nothing to see, sk-live/ but not the rest", "nothing to see, sk-live/ but not the rest"},
		{"empty", "", ""},
		{"unicode around", "ü" + token + "é", "ü[REDACTED:crm]é"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.String(tt.in); got != tt.want {
				t.Fatalf("String(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestLongestFormWins(t *testing.T) {
	r := New([]Secret{{Name: "inner", Value: "password1"}, {Name: "outer", Value: "mypassword123"}})
	if got, want := r.String("x mypassword123 y password1"), "x [REDACTED:outer] y [REDACTED:inner]"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestNilRedactor(t *testing.T) {
	var r *Redactor
	if got := r.String("x"); got != "x" {
		t.Fatalf("nil String = %q", got)
	}
	if got := r.Stream().Write("y") + r.Stream().Flush(); got != "y" {
		t.Fatalf("nil stream = %q", got)
	}
}

// TestStreamSplitEverywhere feeds a text holding secrets in every form, cut
// into two pieces at every position and into random pieces, and checks the
// output equals the one-shot redaction.
func TestStreamSplitEverywhere(t *testing.T) {
	r := New([]Secret{{Name: "crm", Value: token}, {Name: "byok", Value: "ключ-секрет-42"}})
	var in strings.Builder
	for _, f := range textnorm.Encodings(token) {
		in.WriteString("ü text " + f.Text + " more ")
	}
	in.WriteString("and ключ-секрет-42 at the end")
	text := in.String()
	want := r.String(text)
	if strings.Contains(want, "ключ-секрет") || strings.Contains(want, token) {
		t.Fatalf("one-shot redaction missed a secret: %s", want)
	}
	run := func(pieces []string) string {
		s := r.Stream()
		var out strings.Builder
		for _, p := range pieces {
			w := s.Write(p)
			if !utfValid(w) {
				t.Fatalf("piece %q is not valid UTF-8", w)
			}
			out.WriteString(w)
		}
		out.WriteString(s.Flush())
		return out.String()
	}
	for cut := 0; cut <= len(text); cut++ {
		if got := run([]string{text[:cut], text[cut:]}); got != want {
			t.Fatalf("cut at %d: got %q, want %q", cut, got, want)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		var pieces []string
		for rest := text; rest != ""; {
			n := min(len(rest), 1+rng.IntN(12))
			pieces = append(pieces, rest[:n])
			rest = rest[n:]
		}
		if got := run(pieces); got != want {
			t.Fatalf("random pieces %q: got %q, want %q", pieces, got, want)
		}
	}
}

func utfValid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// BenchmarkString redacts a 64 KiB answer holding a few leaks in their
// encoded forms, with 20 secrets loaded (each searched in all its forms).
func BenchmarkString(b *testing.B) {
	var secrets []Secret
	for i := range 20 {
		secrets = append(secrets, Secret{Name: fmt.Sprint("s", i), Value: fmt.Sprintf("secret-value-%02d-%x", i, i*7919)})
	}
	r := New(secrets)
	words := strings.Fields("the quick brown fox jumps over the lazy dog and keeps running through fields of data")
	var sb strings.Builder
	rng := rand.New(rand.NewPCG(3, 4))
	for sb.Len() < 64<<10 {
		sb.WriteString(words[rng.IntN(len(words))] + " ")
		if rng.IntN(2000) == 0 {
			// A leak in one of its forms.
			f := ownForms[rng.IntN(len(ownForms))]
			sb.WriteString(f.enc(rng, secrets[rng.IntN(20)].Value) + " ")
		}
	}
	text := sb.String()[:64<<10]
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		r.String(text)
	}
}

// BenchmarkNew gets a Redactor for 3 secrets, as every turn does (cached
// after the first), and BenchmarkBuild builds one.
func BenchmarkNew(b *testing.B) {
	secrets := []Secret{{"a", "sk-live/4f9+Zq=xY_token"}, {"b", "gx_live_7Hq2ZxV5nLp0Ws3KaRb9YtU4"}, {"c", "hunter22"}}
	b.ReportAllocs()
	for b.Loop() {
		New(secrets)
	}
}

func BenchmarkBuild(b *testing.B) {
	secrets := []Secret{{"a", "sk-live/4f9+Zq=xY_token"}, {"b", "gx_live_7Hq2ZxV5nLp0Ws3KaRb9YtU4"}, {"c", "hunter22"}}
	b.ReportAllocs()
	for b.Loop() {
		build(secrets)
	}
}

// FuzzRedactValue fuzzes the secret itself, the text around it and where a
// stream is cut. Invariants: the value (of at least MinLen bytes) never
// survives in the output, whole or streamed in any pieces; a value with at
// least textnorm.MinSqueezed letters and digits survives in none of its
// encoded forms (reversed, rot13, hex, query escaping, base64, base64url,
// base32) either; a second secret in the same text is redacted as well; and
// the stream gives exactly what the one-shot redaction gives.
func FuzzRedactValue(f *testing.F) {
	f.Add("hunter2-hunter2-xyz", "see ", " now", uint8(0), uint16(5), uint16(9))
	f.Add("ключ-секрет-42-abcdef", "", "", uint8(3), uint16(0), uint16(1))
	f.Add("aaaaaaaaaaaaaaaa", "aaaa", "aaaa", uint8(6), uint16(7), uint16(3))
	f.Add("sk+/==sk+/==sk+/==", "Bearer ", "==", uint8(5), uint16(2), uint16(40))
	f.Add("12345678", "0", "9", uint8(1), uint16(1), uint16(2))
	f.Add("00000000", "%", "", uint8(0), uint16(1), uint16(3))         // an escape swallows a short value's start
	f.Add("00\x000000000000", "%", "", uint8(0), uint16(0), uint16(0)) // and one holding a control character
	f.Add("000000000000%", "", "", uint8(1), uint16(2), uint16(9))     // the reversed form begins an escape
	f.Add(`abc\u0041def\`, `\`, "", uint8(2), uint16(4), uint16(4))    // backslashes in the value
	f.Fuzz(func(t *testing.T, value, before, after string, form uint8, cut1, cut2 uint16) {
		// A value holding the replacement's own text would reappear in it.
		// Secrets arrive as I-JSON strings, so they are valid UTF-8.
		if !utf8.ValidString(value) || Check(value) != nil || len(value) > 256 || len(before)+len(after) > 1024 || strings.ContainsAny(value, "[]") {
			return // refused where secrets are set
		}
		r := New([]Secret{{Name: "f", Value: value}, {Name: "crm", Value: token}})
		forms := []string{value}
		if squeezed(value) >= textnorm.MinSqueezed {
			for _, e := range textnorm.Encodings(value) {
				if !e.Interior {
					forms = append(forms, e.Text)
				}
			}
		}
		leak := forms[int(form)%len(forms)]
		text := before + leak + " " + token + after
		got := r.String(text)
		for _, s := range []string{leak, value, token} {
			if strings.Contains(got, s) {
				t.Fatalf("value %q, text %q: %q survived in %q", value, text, s, got)
			}
		}
		c1, c2 := int(cut1)%(len(text)+1), int(cut2)%(len(text)+1)
		c1, c2 = min(c1, c2), max(c1, c2)
		s := r.Stream()
		if out := s.Write(text[:c1]) + s.Write(text[c1:c2]) + s.Write(text[c2:]) + s.Flush(); out != got {
			t.Fatalf("value %q, text %q cut at %d, %d: stream %q, want %q", value, text, c1, c2, out, got)
		}
	})
}

// squeezed counts the letters and digits of s, as the matcher's squeezed
// view keeps them.
func squeezed(s string) int {
	n := 0
	for _, c := range s {
		if unicode.IsLetter(c) || unicode.IsDigit(c) {
			n++
		}
	}
	return n
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		value string
		ok    bool
	}{
		{"hunter2-hunter2", true}, {"12345678", true}, {"ключ-секрет", true}, {"1234567", false},
		// Accepted by length alone before: the matcher reads the NUL, the
		// zero-width spaces as nothing, so no
		// form of these was left to find.
		{"0000\x00000", false}, {"abc\u200b\u200b\u200bdef", false},
	} {
		if err := Check(tc.value); (err == nil) != tc.ok {
			t.Errorf("Check(%q) = %v, want ok %v", tc.value, err, tc.ok)
		}
	}
}
