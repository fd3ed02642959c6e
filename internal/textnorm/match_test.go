package textnorm

import (
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// encoders are the ways an attacker writes a value, each a function of the
// value and a random source.
var encoders = []struct {
	name string
	enc  func(r *rand.Rand, v string) string
}{
	{"plain", func(_ *rand.Rand, v string) string { return v }},
	{"upper", func(_ *rand.Rand, v string) string { return strings.ToUpper(v) }},
	{"fullwidth", func(_ *rand.Rand, v string) string { return fullwidth(v) }},
	{"zwj", func(_ *rand.Rand, v string) string { return interleave(v, "\u200d") }},
	{"soft hyphen", func(_ *rand.Rand, v string) string { return interleave(v, "\u00ad") }},
	{"cyrillic", func(_ *rand.Rand, v string) string { return cyrillic(v) }},
	{"spaced", func(_ *rand.Rand, v string) string { return interleave(v, " ") }},
	{"dotted", func(_ *rand.Rand, v string) string { return interleave(v, ". ") }},
	{"reversed", func(_ *rand.Rand, v string) string { return reverse(v) }},
	{"rot13", func(_ *rand.Rand, v string) string { return rot13(v) }},
	{"hex", func(_ *rand.Rand, v string) string { return hex.EncodeToString([]byte(v)) }},
	{"HEX colons", func(_ *rand.Rand, v string) string { return hexSep([]byte(v), ":", true) }},
	{"hex spaces", func(_ *rand.Rand, v string) string { return hexSep([]byte(v), " ", false) }},
	{"hex dashes", func(_ *rand.Rand, v string) string { return hexSep([]byte(v), "-", false) }},
	{`hex \x`, func(_ *rand.Rand, v string) string { return `\x` + hexSep([]byte(v), `\x`, false) }},
	{"percent all", func(_ *rand.Rand, v string) string { return percentAll(v, 1) }},
	{"percent some", func(r *rand.Rand, v string) string { return percentSome(r, v) }},
	{"query", func(_ *rand.Rand, v string) string { return url.QueryEscape(v) }},
	{"json escapes", func(_ *rand.Rand, v string) string { return jsonEscapes(v) }},
	{"base64", func(_ *rand.Rand, v string) string { return base64.StdEncoding.EncodeToString([]byte(v)) }},
	{"base64url", func(_ *rand.Rand, v string) string { return base64.RawURLEncoding.EncodeToString([]byte(v)) }},
	{"base64 bearer", func(_ *rand.Rand, v string) string {
		return base64.StdEncoding.EncodeToString([]byte("Bearer " + v))
	}},
	{"base64 offset", func(r *rand.Rand, v string) string {
		return base64.StdEncoding.EncodeToString([]byte(randomWord(r, r.IntN(7)) + v + randomWord(r, r.IntN(7))))
	}},
	{"base64url offset", func(r *rand.Rand, v string) string {
		return base64.URLEncoding.EncodeToString([]byte(randomWord(r, r.IntN(7)) + v + randomWord(r, r.IntN(7))))
	}},
	{"html decimal refs", func(r *rand.Rand, v string) string { return htmlRefs(r, v, "&#%d;") }},
	{"html hex refs", func(r *rand.Rand, v string) string { return htmlRefs(r, v, "&#x%X;") }},
	{"empty tags", func(r *rand.Rand, v string) string {
		return interleave(v, []string{"<b></b>", "<!---->", "<br/>", "</i>"}[r.IntN(4)])
	}},
	{"base32", func(_ *rand.Rand, v string) string { return base32.StdEncoding.EncodeToString([]byte(v)) }},
	{"base32 offset", func(r *rand.Rand, v string) string {
		return base32.StdEncoding.EncodeToString([]byte(randomWord(r, r.IntN(11)) + v + randomWord(r, r.IntN(11))))
	}},
}

// htmlRefs writes some of v's characters as HTML character references.
func htmlRefs(r *rand.Rand, v, format string) string {
	var b strings.Builder
	for _, c := range v {
		if r.IntN(2) == 0 {
			fmt.Fprintf(&b, format, c)
		} else {
			b.WriteRune(c)
		}
	}
	return b.String()
}

func interleave(v, sep string) string {
	var b strings.Builder
	for i, r := range []rune(v) {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func fullwidth(v string) string {
	var b strings.Builder
	for _, r := range v {
		if '!' <= r && r <= '~' {
			r += 0xFF01 - '!'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func cyrillic(v string) string {
	m := map[rune]rune{'a': 'а', 'c': 'с', 'e': 'е', 'o': 'о', 'p': 'р', 'x': 'х', 'y': 'у', 'A': 'А', 'B': 'В', 'C': 'С', 'E': 'Е', 'K': 'К', 'M': 'М', 'O': 'О', 'P': 'Р', 'T': 'Т', 'X': 'Х'}
	var b strings.Builder
	for _, r := range v {
		if c, ok := m[r]; ok {
			r = c
		}
		b.WriteRune(r)
	}
	return b.String()
}

func hexSep(b []byte, sep string, upper bool) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = fmt.Sprintf("%02x", c)
		if upper {
			parts[i] = strings.ToUpper(parts[i])
		}
	}
	return strings.Join(parts, sep)
}

func percentAll(v string, _ int) string {
	var b strings.Builder
	for _, c := range []byte(v) {
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

func percentSome(r *rand.Rand, v string) string {
	var b strings.Builder
	for _, c := range []byte(v) {
		if r.IntN(2) == 0 {
			fmt.Fprintf(&b, "%%%02x", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func jsonEscapes(v string) string {
	var b strings.Builder
	for _, r := range v {
		switch {
		case r == '/':
			b.WriteString(`\/`)
		case r < 0x10000:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			r1, r2 := rune(0xD800+((r-0x10000)>>10)), rune(0xDC00+((r-0x10000)&0x3FF))
			fmt.Fprintf(&b, `\u%04x\u%04x`, r1, r2)
		}
	}
	return b.String()
}

const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func randomWord(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alnum[r.IntN(len(alnum))]
	}
	return string(b)
}

// randomValue is a secret or canary: random characters with some
// punctuation, 16 to 40 bytes.
func randomValue(r *rand.Rand) string {
	n := 16 + r.IntN(25)
	b := []byte(randomWord(r, n))
	for range r.IntN(3) {
		b[r.IntN(n)] = "-_/+=."[r.IntN(6)]
	}
	return string(b)
}

var fillers = []string{
	"The quick brown fox jumps over the lazy dog. ",
	`{"id": 42, "name": "Widget", "tags": ["a", "b"]} `,
	"func main() {\n\tfmt.Println(\"hello, world\")\n}\n",
	"Ünïcödé tëxt — with “quotes” and emoji 😀. ",
	"| col | col |\n|-----|-----|\n",
	"https://example.com/path?q=1&r=%20x ",
	"\\n\\t escaped \\u00e9 text ",
}

func randomFiller(r *rand.Rand, n int) string {
	var b strings.Builder
	for b.Len() < n {
		f := fillers[r.IntN(len(fillers))]
		b.WriteString(f[:1+r.IntN(len(f)-1)])
		b.WriteByte(' ')
	}
	return b.String()
}

// pieces cuts s at random points, sometimes inside UTF-8 sequences.
func pieces(r *rand.Rand, s string) []string {
	var out []string
	for s != "" {
		n := min(len(s), 1+r.IntN(20))
		out = append(out, s[:n])
		s = s[n:]
	}
	return out
}

func stream(m *Matcher, ps []string) (string, []Match) {
	sc := m.Scanner()
	var text strings.Builder
	var all []Match
	for i := 0; i <= len(ps); i++ {
		p, final := "", i == len(ps)
		if !final {
			p = ps[i]
		}
		seg, ms := sc.Advance(p, final)
		for _, x := range ms {
			x.Start += text.Len()
			x.End += text.Len()
			all = append(all, x)
		}
		text.WriteString(seg)
	}
	return text.String(), all
}

// TestEncodedValuesAreFound is the property test: random values, each
// written in a random encoding at a random offset of random text, are
// always found, by Find and by a Scanner fed random pieces, with the same
// matches, and every match's span lies within the text.
func TestEncodedValuesAreFound(t *testing.T) {
	r := rand.New(rand.NewPCG(2026, 9))
	for n := range 3000 {
		values := []string{randomValue(r), randomValue(r)}
		m := NewMatcher(values, Options{})
		e := encoders[n%len(encoders)]
		vi := r.IntN(2)
		leak := e.enc(r, values[vi])
		before, after := randomFiller(r, r.IntN(200)), randomFiller(r, r.IntN(200))
		text := before + leak + after
		found := m.Find(text)
		if !slices.ContainsFunc(found, func(x Match) bool { return x.Value == vi }) {
			t.Fatalf("case %d, %s: value %q not found in %q", n, e.name, values[vi], leak)
		}
		got, streamed := stream(m, pieces(r, text))
		if got != text {
			t.Fatalf("case %d: stream settled %q, want %q", n, got, text)
		}
		if !slices.Equal(found, streamed) {
			t.Fatalf("case %d, %s: Find %v, stream %v in %q", n, e.name, found, streamed, text)
		}
		// An early scanner (the guard's) searches text again as it grows:
		// it must end with the same matches.
		early := NewMatcher(values, Options{Early: true})
		if _, streamed := stream(early, pieces(r, text)); !slices.Equal(found, streamed) {
			t.Fatalf("case %d, %s: Find %v, early stream %v in %q", n, e.name, found, streamed, text)
		}
	}
}

// TestNoFalsePositives runs values through ordinary text of every kind.
func TestNoFalsePositives(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	var values []string
	for range 200 {
		values = append(values, randomValue(r))
	}
	m := NewMatcher(values, Options{})
	text := strings.Repeat(strings.Join(fillers, ""), 40) + englishSample
	if got := m.Find(text); len(got) != 0 {
		t.Fatalf("found %v in ordinary text", got)
	}
}

const englishSample = `It was the best of times, it was the worst of times, it was the age of
wisdom, it was the age of foolishness, it was the epoch of belief, it was the epoch of
incredulity. for i := 0; i < len(s); i++ { if s[i] == '\\' { return errors.New("bad escape") } }
{"object":"list","data":[{"id":"doc_123","score":0.87,"text":"Quarterly revenue grew 12%"}]}
SELECT id, name FROM tenants WHERE status = 'active' ORDER BY created_at DESC LIMIT 100;
0x1f 0x2e 0x3d de:ad:be:ef 2026-12-02T06:00:00Z base64: SGVsbG8sIHdvcmxkIQ==`

func TestViewsDecodeEscapes(t *testing.T) {
	tests := []struct{ in, exact, squeezed string }{
		{"abc%41%2Fdef", "abca/def", "abcadef"},
		{`x\u0041\/y\uD83D\uDE00z`, "xa/y😀z", "xayz"},
		{"62:6b:63", "62:6b:63", "626b63"},
		{`\x62\x6b`, "bk", "bk"},
		{"%D0%B0%D0%B1", "a6", "a6"}, // Cyrillic а and б look like a and 6
		{"ｆｕｌｌ", "full", "full"},
		{"a\u200db\u00adc", "abc", "abc"},
		{"%4", "%4", "4"},
		{`\u12`, `\ul2`, "ul2"},
		{"a" + strings.Repeat(" ", maxGap) + "b", "a" + strings.Repeat(" ", maxGap) + "b", "ab"},
		{"a" + strings.Repeat(" ", maxGap+1) + "b", "a" + strings.Repeat(" ", maxGap+1) + "b", "a\x00b"},
		{"&#98;&#x6B;&#X63;-&amp;&lt;", "bkc-&<", "bkc"},
		{"&#98 &#; &#12345678; &nosuch; &", "&#98 &#; &#l2345678; &nosuch; &", "98l2345678nosuch"},
		{"&#0;", "\ufffd", ""},
		{"s<b></b>k<!---->-<br/>x</span >y", "sk-xy", "skxy"},
		{"a<b c>d <3 <!-- unterminated", "a<b c>d <3 <!-- unterrninated", "abcd3unterrninated"},
	}
	for _, tt := range tests {
		exact, squeezed := Views(tt.in)
		if exact != tt.exact || squeezed != tt.squeezed {
			t.Errorf("Views(%q) = %q, %q, want %q, %q", tt.in, exact, squeezed, tt.exact, tt.squeezed)
		}
	}
}

// TestScannerHoldsBackBounded checks that a stream of text without values
// settles all but a bounded tail, even through long runs of separators.
func TestScannerHoldsBackBounded(t *testing.T) {
	m := NewMatcher([]string{"sk-0123456789abcdefXYZ"}, Options{})
	sc := m.Scanner()
	var settled int
	text := strings.Repeat("word ", 200) + strings.Repeat(" ", 5000) + strings.Repeat("\u200d", 3000)
	for _, p := range pieces(rand.New(rand.NewPCG(1, 1)), text) {
		seg, _ := sc.Advance(p, false)
		settled += len(seg)
		if !utf8.ValidString(seg) {
			t.Fatalf("segment %q cut inside a rune", seg)
		}
	}
	if held, limit := len(text)-settled, (m.Holdback()+1)*(maxUnit+maxGap); held > limit {
		t.Fatalf("held %d bytes, want at most %d", held, limit)
	}
}

func FuzzMatcher(f *testing.F) {
	f.Add("sk-live/4f9+Zq=xY_token", "Bearer ", uint8(0), uint16(3))
	f.Add("bkc-abcdefghij234567abcd", "x", uint8(5), uint16(1))
	f.Add("0123456789abcdefABCDEF", "", uint8(14), uint16(7))
	f.Fuzz(func(t *testing.T, value, prefix string, enc uint8, seed uint16) {
		if len(value) < 16 || len(value) > 64 || !utf8.ValidString(value) || strings.ContainsAny(value, "\x00%\\") {
			return
		}
		run := 0
		for _, c := range []byte(value) {
			if c < '!' || c > '~' {
				return
			}
			// A run of separators spread out by the encoder can exceed the
			// views' gap limit (maxGap): the documented limit of the forms.
			if run = run + 1; asciiSqueezed[c] != "" {
				run = 0
			}
			if run > 2 {
				return
			}
		}
		if _, q := Views(value); len(q) < MinSqueezed+maxEaten {
			return
		}
		r := rand.New(rand.NewPCG(uint64(seed), 1))
		e := encoders[int(enc)%len(encoders)]
		if strings.HasPrefix(e.name, "base") || e.name == "reversed" {
			// The interiors need letters and digits to be long enough.
			if len(value) < 20 {
				return
			}
		}
		m := NewMatcher([]string{value}, Options{})
		text := prefix + e.enc(r, value) + " tail"
		if len(m.Find(text)) == 0 {
			t.Fatalf("%s form of %q not found in %q", e.name, value, text)
		}
		if _, ms := stream(m, pieces(r, text)); len(ms) == 0 {
			t.Fatalf("%s form of %q not found by a stream in %q", e.name, value, text)
		}
	})
}

// BenchmarkFind searches 64 KiB of prose for 20 values in all their forms.
func BenchmarkFind(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	var values []string
	for range 20 {
		values = append(values, randomValue(r))
	}
	m := NewMatcher(values, Options{})
	text := strings.Repeat("the quick brown fox jumps over the lazy dog and keeps running through fields of data ", 800)[:64<<10]
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		m.Find(text)
	}
}
