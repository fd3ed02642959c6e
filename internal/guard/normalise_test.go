package guard

import (
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/textnorm"
)

// The ways an attacker's model writes another tenant's canary or secret.
var leakForms = []struct {
	name string
	enc  func(r *rand.Rand, v string) string
}{
	{"fullwidth", func(_ *rand.Rand, v string) string { return mapRunes(v, fullwidthRune) }},
	{"fullwidth upper", func(_ *rand.Rand, v string) string { return mapRunes(strings.ToUpper(v), fullwidthRune) }},
	{"zero-width joiners", func(_ *rand.Rand, v string) string { return between(v, "\u200d") }},
	{"zero-width spaces", func(_ *rand.Rand, v string) string { return between(v, "\u200b") }},
	{"soft hyphens", func(_ *rand.Rand, v string) string { return between(v, "\u00ad") }},
	{"cyrillic look-alikes", func(_ *rand.Rand, v string) string { return mapRunes(v, cyrillicRune) }},
	{"cyrillic upper", func(_ *rand.Rand, v string) string { return mapRunes(strings.ToUpper(v), cyrillicRune) }},
	{"spaced", func(_ *rand.Rand, v string) string { return between(v, " ") }},
	{"dashes", func(_ *rand.Rand, v string) string { return between(v, "-") }},
	{"reversed", func(_ *rand.Rand, v string) string { r := []rune(v); slices.Reverse(r); return string(r) }},
	{"rot13", func(_ *rand.Rand, v string) string { return mapRunes(v, rot13Rune) }},
	{"hex", func(_ *rand.Rand, v string) string { return hex.EncodeToString([]byte(v)) }},
	{"HEX", func(_ *rand.Rand, v string) string { return strings.ToUpper(hex.EncodeToString([]byte(v))) }},
	{"hex colons", func(_ *rand.Rand, v string) string { return hexWith([]byte(v), ":") }},
	{"hex spaces", func(_ *rand.Rand, v string) string { return hexWith([]byte(v), " ") }},
	{`hex \x`, func(_ *rand.Rand, v string) string { return `\x` + hexWith([]byte(v), `\x`) }},
	{"percent", func(_ *rand.Rand, v string) string { return percent(v, nil) }},
	{"percent partial", func(r *rand.Rand, v string) string { return percent(v, r) }},
	{"json escapes", func(_ *rand.Rand, v string) string { return jsonEscaped(v) }},
	{"html character references", func(_ *rand.Rand, v string) string {
		var b strings.Builder
		for i, c := range v {
			if i%2 == 0 {
				fmt.Fprintf(&b, "&#%d;", c)
			} else {
				fmt.Fprintf(&b, "&#x%x;", c)
			}
		}
		return b.String()
	}},
	{"empty html tags", func(_ *rand.Rand, v string) string { return between(v, "<b></b>") }},
	{"html comments", func(_ *rand.Rand, v string) string { return between(v, "<!---->") }},
	{"base64", func(_ *rand.Rand, v string) string { return base64.StdEncoding.EncodeToString([]byte(v)) }},
	{"base64url raw", func(_ *rand.Rand, v string) string { return base64.RawURLEncoding.EncodeToString([]byte(v)) }},
	{"base64 bearer", func(_ *rand.Rand, v string) string { return base64.StdEncoding.EncodeToString([]byte("Bearer " + v)) }},
	{"base64 offset", func(r *rand.Rand, v string) string {
		return base64.StdEncoding.EncodeToString([]byte(filler(r, r.IntN(9)) + v + filler(r, r.IntN(9))))
	}},
	{"base64url offset", func(r *rand.Rand, v string) string {
		return base64.URLEncoding.EncodeToString([]byte(filler(r, r.IntN(9)) + v + filler(r, r.IntN(9))))
	}},
	{"base32", func(_ *rand.Rand, v string) string { return base32.StdEncoding.EncodeToString([]byte(v)) }},
	{"base32 offset", func(r *rand.Rand, v string) string {
		return base32.StdEncoding.EncodeToString([]byte(filler(r, r.IntN(11)) + v + filler(r, r.IntN(11))))
	}},
}

func mapRunes(v string, f func(rune) rune) string {
	var b strings.Builder
	for _, r := range v {
		b.WriteRune(f(r))
	}
	return b.String()
}

func fullwidthRune(r rune) rune {
	if '!' <= r && r <= '~' {
		return r + 0xFF01 - '!'
	}
	return r
}

func cyrillicRune(r rune) rune {
	m := map[rune]rune{'a': 'а', 'c': 'с', 'e': 'е', 'o': 'о', 'p': 'р', 'x': 'х', 'y': 'у', 'i': 'і',
		'A': 'А', 'B': 'В', 'C': 'С', 'E': 'Е', 'H': 'Н', 'K': 'К', 'M': 'М', 'O': 'О', 'P': 'Р', 'T': 'Т', 'X': 'Х'}
	if c, ok := m[r]; ok {
		return c
	}
	return r
}

func rot13Rune(r rune) rune {
	switch {
	case 'a' <= r && r <= 'z':
		return 'a' + (r-'a'+13)%26
	case 'A' <= r && r <= 'Z':
		return 'A' + (r-'A'+13)%26
	}
	return r
}

func between(v, sep string) string { return strings.Join(strings.Split(v, ""), sep) }

func hexWith(b []byte, sep string) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = fmt.Sprintf("%02X", c)
	}
	return strings.Join(parts, sep)
}

// percent escapes every byte of v, or, with r, a random half of them.
func percent(v string, r *rand.Rand) string {
	var b strings.Builder
	for _, c := range []byte(v) {
		if r == nil || r.IntN(2) == 0 {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func jsonEscaped(v string) string {
	var b strings.Builder
	for _, c := range v {
		if c == '/' {
			b.WriteString(`\/`)
		} else {
			fmt.Fprintf(&b, `\u%04x`, c)
		}
	}
	return b.String()
}

func filler(r *rand.Rand, n int) string {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:"
	b := make([]byte, n)
	for i := range b {
		b[i] = chars[r.IntN(len(chars))]
	}
	return string(b)
}

// ordinaryText is prose, code and JSON, nothing anyone stored.
var ordinaryText = strings.Repeat(`The quarterly report is ready. Revenue grew 12% and costs fell; see
the appendix for details. func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil { http.Error(w, "bad request", 400); return }
}
{"id":"doc_0042","score":0.8731,"tags":["finance","q3"],"url":"https:\/\/docs.example\/a?b=c%20d"}
| name | value |
|------|-------|
| key  | 0x1F  |
SELECT name, created_at FROM tenants WHERE status = 'active' ORDER BY 2 DESC LIMIT 50;
de:ad:be:ef 2026-12-02T06:00:00Z SGVsbG8sIHdvcmxkIQ== MZXW6YTBOI====== \u00e9t\u00e9
`, 6)

// checkBoth runs text through Check and through a Stream cut at random
// points, and returns the verdicts and what the stream sent.
func checkBoth(g *Guard, r *rand.Rand, id tenant.ID, text string) (Verdict, Verdict, string) {
	v := g.Check(id, text, nil)
	s := g.Stream(id, nil)
	var sent strings.Builder
	var sv Verdict
	for rest := text; ; {
		if rest == "" {
			var out string
			out, sv = s.Flush()
			sent.WriteString(out)
			break
		}
		n := min(len(rest), 1+r.IntN(24))
		var out string
		out, sv = s.Write(rest[:n])
		sent.WriteString(out)
		rest = rest[n:]
		if sv.Blocked {
			break
		}
	}
	return v, sv, sent.String()
}

// TestLookalikeAndEncodedCanaries is the property test for canaries: a
// random tenant's canary, written in each form at a random offset of
// ordinary text, blocks the answer to another tenant, in Check and in a
// stream cut at random points, and the verdict names the owner.
func TestLookalikeAndEncodedCanaries(t *testing.T) {
	g := New()
	var canaries []string
	for i := range 50 {
		c := newCanary(t)
		canaries = append(canaries, c)
		g.SetCanaries(tenant.ID(fmt.Sprintf("t%02d", i)), []string{c})
	}
	r := rand.New(rand.NewPCG(2026, 12))
	for n := range 3000 {
		f := leakForms[n%len(leakForms)]
		owner := r.IntN(len(canaries))
		leak := f.enc(r, canaries[owner])
		at := r.IntN(len(ordinaryText))
		for at > 0 && ordinaryText[at-1] >= 0x80 {
			at--
		}
		text := ordinaryText[:at] + " " + leak + " " + ordinaryText[at:]
		if n%2 == 0 {
			text = text[max(0, at-300):min(len(text), at+len(leak)+300)]
		}
		v, sv, sent := checkBoth(g, r, acme, text)
		ownerID := tenant.ID(fmt.Sprintf("t%02d", owner))
		for _, got := range []Verdict{v, sv} {
			if !got.Blocked || !slices.Contains(got.Reasons, ReasonForeignCanary) || !slices.Contains(got.Owners, ownerID) {
				t.Fatalf("case %d, %s: verdict %+v, want blocked for a canary of %s; leak %q", n, f.name, got, ownerID, leak)
			}
		}
		if strings.Contains(sent, leak) {
			t.Fatalf("case %d, %s: the stream sent the whole leak", n, f.name)
		}
	}
}

// TestLookalikeCanaryForms names the classes of HARDENING.md one by one.
func TestLookalikeCanaryForms(t *testing.T) {
	g := New()
	other := newCanary(t)
	g.SetCanaries(globex, []string{other})
	g.SetCanaries(acme, []string{newCanary(t)})
	r := rand.New(rand.NewPCG(1, 2))
	for _, f := range leakForms {
		t.Run(f.name, func(t *testing.T) {
			text := "Here you go: " + f.enc(r, other) + " -- anything else?"
			v, sv, _ := checkBoth(g, r, acme, text)
			if !v.Blocked || !sv.Blocked {
				t.Fatalf("Check blocked %v, Stream blocked %v, want both for %q", v.Blocked, sv.Blocked, text)
			}
			if got, want := v.Owners, []tenant.ID{globex}; !slices.Equal(got, want) {
				t.Errorf("Owners = %v, want %v", got, want)
			}
		})
	}
}

// TestOwnCanaryFormsRemoved: the receiver's own canary, in any form, is
// removed, not blocked, and the verdict names no owner.
func TestOwnCanaryFormsRemoved(t *testing.T) {
	g := New()
	own := newCanary(t)
	g.SetCanaries(acme, []string{own})
	r := rand.New(rand.NewPCG(3, 4))
	for _, f := range leakForms {
		leak := f.enc(r, own)
		v := g.Check(acme, "a "+leak+" b", nil)
		if v.Blocked || len(v.Owners) != 0 || strings.Contains(v.Text, leak) {
			t.Errorf("%s: verdict %+v, want the canary removed", f.name, v)
		}
	}
}

// TestNoFalsePositivesOnOrdinaryText loads 1,000 tenants' canaries and
// secrets and checks ordinary prose, code and JSON passes untouched.
func TestNoFalsePositivesOnOrdinaryText(t *testing.T) {
	g := New()
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 1000 {
		id := tenant.ID(fmt.Sprintf("t%04d", i))
		g.SetCanaries(id, []string{newCanary(t)})
		if i%10 == 0 {
			g.SetSecret(id, "api", []byte("sk_live_"+filler(r, 32)))
		}
	}
	v := g.Check(acme, ordinaryText, nil)
	if v.Blocked || v.Text != ordinaryText {
		t.Fatalf("ordinary text: blocked %v, reasons %q", v.Blocked, v.Reasons)
	}
}

const globexKey = "gx_9fK2LmQ7vR4tZp8WcX3nB6yH1sJ5dE0a"

// TestForeignSecretBlocked: another tenant's high-entropy secret in an
// answer blocks it, in its encoded forms too; the owner is named; the
// receiver's own secret is the redactor's business, not the guard's; a
// low-entropy secret is not tracked, so its guess is never confirmed.
func TestForeignSecretBlocked(t *testing.T) {
	g := New()
	if !g.SetSecret(globex, "crm", []byte(globexKey)) {
		t.Fatal("a 36-character random key is not tracked")
	}
	for _, low := range []string{"passwordpassword", "aaaaaaaaaaaaaaaaaaaaaaaa", "correcthorsebatterystaple", "12345678901234567890", "short-Key1"} {
		if g.SetSecret(initech, "weak", []byte(low)) {
			t.Errorf("low-entropy secret %q is tracked", low)
		}
	}
	g.SetSecret(acme, "own", []byte("ac_Q8wE4rT6yU2iO9pA7sD5fG3hJ1kL0z"))
	r := rand.New(rand.NewPCG(7, 8))
	for _, f := range leakForms {
		if f.name == "fullwidth upper" || f.name == "cyrillic upper" {
			continue // upper-casing changes the value itself
		}
		text := "the key is " + f.enc(r, globexKey) + ", use it well"
		v, sv, _ := checkBoth(g, r, acme, text)
		for _, got := range []Verdict{v, sv} {
			if !got.Blocked || !slices.Contains(got.Reasons, ReasonForeignSecret) || !slices.Equal(got.Owners, []tenant.ID{globex}) ||
				!slices.Equal(got.Leaks, []Leak{{globex, LeakSecret}}) {
				t.Errorf("%s: verdict %+v, want blocked for globex's secret", f.name, got)
			}
		}
	}
	for _, text := range []string{
		"my own key ac_Q8wE4rT6yU2iO9pA7sD5fG3hJ1kL0z is mine",
		"the weak one: passwordpassword and correcthorsebatterystaple",
		"half of it: " + globexKey[:12],
	} {
		if v := g.Check(acme, text, nil); v.Blocked {
			t.Errorf("%q blocked: %q", text, v.Reasons)
		}
	}
	g.DeleteSecret(globex, "crm")
	if v := g.Check(acme, globexKey, nil); v.Blocked {
		t.Errorf("deleted secret still blocks: %q", v.Reasons)
	}
}

// TestCanaryHoldBackBounded: a stream of ordinary text is held back only a
// few dozen bytes by the canary passes, whatever the canaries.
func TestCanaryHoldBackBounded(t *testing.T) {
	g := New()
	for i := range 100 {
		g.SetCanaries(tenant.ID(fmt.Sprintf("t%d", i)), []string{newCanary(t)})
	}
	cs := g.canarySet()
	st := &canaryStage{set: cs, self: acme, remove: true, r: &reasons{}, leaks: &leaks{}}
	text := ordinaryText
	var sent int
	for i := 0; i < len(text); i += 7 {
		out, blocked := st.write(text[i:min(len(text), i+7)], false)
		if blocked != "" {
			t.Fatalf("blocked: %s", blocked)
		}
		sent += len(out)
		// 31 letters and digits of the view, what separates them (this
		// text is dense with code punctuation) and the rest of the piece.
		if held := min(len(text), i+7) - sent; held > 120 {
			t.Fatalf("after %d bytes, %d held back", i+7, held)
		}
	}
}

func FuzzCanaryForms(f *testing.F) {
	for i := range leakForms {
		f.Add(uint8(i), uint64(i), "some text before", "and after")
	}
	g := New()
	other := "bkc-h3kq7zr2mwx5vtn4pa6d"
	g.SetCanaries(globex, []string{other})
	f.Fuzz(func(t *testing.T, form uint8, seed uint64, before, after string) {
		r := rand.New(rand.NewPCG(seed, 1))
		text := before + " " + leakForms[int(form)%len(leakForms)].enc(r, other) + " " + after
		v, sv, _ := checkBoth(g, r, acme, text)
		if !v.Blocked || !sv.Blocked {
			t.Fatalf("%q: Check blocked %v, Stream blocked %v", text, v.Blocked, sv.Blocked)
		}
	})
}

// guardPads are what a reader does not see, or sees as a separator,
// between two characters.
var guardPads = []string{".", " ", "-", "*", "\u2060", "\u200b", "&NoBreak;", "&#x2060;", "&#8288;", "<b>", "</i>", "<!---->"}

// padEveryChar puts up to textnorm.MaxPad bytes of padding between every
// two runes of s.
func padEveryChar(r *rand.Rand, s string) string {
	var b strings.Builder
	for i, c := range []rune(s) {
		if i > 0 {
			n := textnorm.MaxPad - r.IntN(4)
			for start := b.Len(); ; {
				p := guardPads[r.IntN(len(guardPads))]
				if b.Len()-start+len(p) > n {
					break
				}
				b.WriteString(p)
			}
		}
		b.WriteRune(c)
	}
	return b.String()
}

// TestPaddedLeaksBlocked is the property test for padding (the Limits'
// MaxPad): another tenant's canary or secret, in a form whose punctuation
// comes one character at a time, with up to MaxPad bytes of separators,
// ignorable code points, references to them, tags or comments between
// every two characters, blocks the answer in Check and in a stream cut at
// random points; a stream sends no letter or digit of a secret's form, nor
// of a canary's form that begins with its public "bkc-".
func TestPaddedLeaksBlocked(t *testing.T) {
	g := New()
	g.SetCanaries(acme, []string{newCanary(t)})
	forms := []struct {
		name    string
		enc     func(v string) string
		leading bool // begins with the value's first characters
	}{
		{"plain", func(v string) string { return v }, true},
		{"upper", strings.ToUpper, true},
		{"reversed", func(v string) string { r := []rune(v); slices.Reverse(r); return string(r) }, false},
		{"rot13", func(v string) string { return mapRunes(v, rot13Rune) }, true},
		{"hex", func(v string) string { return hex.EncodeToString([]byte(v)) }, true},
		{"hex colons", func(v string) string { return hexWith([]byte(v), ":") }, true},
		{"base64", func(v string) string { return base64.StdEncoding.EncodeToString([]byte(v)) }, true},
	}
	r := rand.New(rand.NewPCG(16, 33))
	const before, after = "Here it is: ", " and that is all."
	tried := 0
	defer func() {
		if tried < 60 {
			t.Errorf("only %d padded leaks tried", tried)
		}
	}()
	for n := range 60 {
		canary, secret := newCanary(t), randomB64(t, 18+n%12)
		owner := tenant.ID(fmt.Sprintf("t%02d", n))
		g.SetCanaries(owner, []string{canary})
		// A random value is now and then too word-like to be tracked
		// (about 1 in 500): draw another, the test is about tracked ones.
		for !g.SetSecret(owner, "key", []byte(secret)) {
			secret = randomB64(t, 18+n%12)
		}
		for _, v := range []struct {
			what, value string
		}{{"canary", canary}, {"secret", secret}} {
			f := forms[r.IntN(len(forms))]
			if v.what == "secret" && f.name == "upper" {
				continue // upper-casing changes the value itself
			}
			form := f.enc(v.value)
			if innerPunctuationRun(form) > 1 {
				continue // two punctuation characters in a row: the limit allows less padding
			}
			tried++
			text := before + padEveryChar(r, form) + after
			cv, sv, sent := checkBoth(g, r, acme, text)
			if !cv.Blocked || !sv.Blocked || !slices.Equal(cv.Owners, []tenant.ID{owner}) || !slices.Equal(sv.Owners, []tenant.ID{owner}) {
				t.Fatalf("%s of %s %q padded: Check %+v, Stream %+v, want both blocked for %s in %q", f.name, v.what, v.value, cv, sv, owner, text)
			}
			// Of the form's letters and digits: punctuation that pads it
			// past the limit of a gap is a break, and passes.
			_, sq := textnorm.Views(sent)
			sq = strings.ReplaceAll(sq, "\x00", "")
			if _, bq := textnorm.Views(before); (v.what == "secret" || f.leading) && !strings.HasPrefix(bq, sq) {
				t.Fatalf("%s of %s %q padded: the stream sent %q before blocking", f.name, v.what, v.value, sent)
			}
		}
	}
}

// innerPunctuationRun returns the longest run of characters other than
// ASCII letters and digits between two of them in s.
func innerPunctuationRun(s string) int {
	longest, run, seen := 0, 0, false
	for i := 0; i < len(s); i++ {
		if isAlnum(s[i]) {
			if seen {
				longest = max(longest, run)
			}
			run, seen = 0, true
		} else {
			run++
		}
	}
	return longest
}
