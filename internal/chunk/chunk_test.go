package chunk

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"unicode"
	"unicode/utf8"
)

// pieces runs the splitter over text, keeping the overlap bookkeeping.
func pieces(t testing.TB, r io.Reader, opts Options) []piece {
	t.Helper()
	var out []piece
	if err := newSplitter(r, opts, readSize).run(func(p piece) error {
		out = append(out, p)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i, p := range out {
		if p.Ordinal != i {
			t.Fatalf("chunk %d has Ordinal %d", i, p.Ordinal)
		}
	}
	return out
}

func body(p piece) string { return p.Text[p.prefix:] }

func TestSplitShort(t *testing.T) {
	got := Split("  Hello, world. This is short.\n\nTwo paragraphs.  \n", Options{})
	want := []Chunk{{0, "Hello, world. This is short.\n\nTwo paragraphs."}}
	if !slices.Equal(got, want) {
		t.Errorf("Split = %+v, want %+v", got, want)
	}
}

func TestSplitEmpty(t *testing.T) {
	for _, text := range []string{"", " ", "\n\n\t \r\n", strings.Repeat(" \n", 50_000)} {
		if got := Split(text, Options{}); len(got) != 0 {
			t.Errorf("Split(%d bytes of whitespace) = %+v, want no chunks", len(text), got)
		}
		n := 0
		if err := SplitReader(strings.NewReader(text), Options{}, func(Chunk) error { n++; return nil }); err != nil || n != 0 {
			t.Errorf("SplitReader(whitespace) = %d chunks, %v; want 0, nil", n, err)
		}
	}
}

func TestOptionsDefaults(t *testing.T) {
	tests := []struct{ in, want Options }{
		{Options{}, Options{1000, 150}},
		{Options{Size: 2000}, Options{2000, 150}},
		{Options{Size: 100}, Options{100, 50}},
		{Options{Size: -5, Overlap: -1}, Options{1000, 0}},
		{Options{Size: 100, Overlap: 300}, Options{100, 300}},
	}
	for _, tt := range tests {
		if got := tt.in.norm(); got != tt.want {
			t.Errorf("%+v.norm() = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestSplitParagraphsRespected(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var paras []string
	for range 60 {
		paras = append(paras, sentences(rng, 40+rng.IntN(300)))
	}
	text := strings.Join(paras, "\n\n")
	opts := Options{Size: 1000, Overlap: 150}
	ps := pieces(t, strings.NewReader(text), opts)
	if len(ps) < 5 {
		t.Fatalf("%d chunks, want many", len(ps))
	}
	next := 0
	for _, p := range ps {
		// Every chunk's own text is whole paragraphs, in order.
		got := strings.Split(body(p), "\n\n")
		if !slices.Equal(got, paras[next:next+len(got)]) {
			t.Fatalf("chunk %d is not whole paragraphs %d…: %q", p.Ordinal, next, body(p))
		}
		next += len(got)
		if len(body(p)) > opts.Size {
			t.Errorf("chunk %d: %d bytes of own text, want <= %d", p.Ordinal, len(body(p)), opts.Size)
		}
	}
	if next != len(paras) {
		t.Errorf("chunks cover %d of %d paragraphs", next, len(paras))
	}
}

func TestSplitOverlapOnBoundaries(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	// Sentences of at most about 60 bytes, so a sentence start is always
	// within the 150-byte overlap.
	var b strings.Builder
	for i := range 400 {
		b.WriteString(sentence(rng, 2+rng.IntN(6)))
		if i%15 == 14 {
			b.WriteString("\n\n")
		} else {
			b.WriteByte(' ')
		}
	}
	opts := Options{Size: 500, Overlap: 150}
	ps := pieces(t, strings.NewReader(b.String()), opts)
	for i, p := range ps[1:] {
		prev := ps[i]
		if p.tail == "" {
			t.Errorf("chunk %d has no overlap", p.Ordinal)
			continue
		}
		if !strings.HasSuffix(prev.Text, p.tail) {
			t.Fatalf("chunk %d overlap %q is not the end of chunk %d", p.Ordinal, p.tail, prev.Ordinal)
		}
		if p.prefix > opts.Overlap {
			t.Errorf("chunk %d overlap is %d bytes, want <= %d", p.Ordinal, p.prefix, opts.Overlap)
		}
		at := len(prev.Text) - len(p.tail)
		if before := prev.Text[:at]; !strings.HasSuffix(before, ". ") && !strings.HasSuffix(before, "? ") &&
			!strings.HasSuffix(before, "! ") && !strings.HasSuffix(before, "\n\n") && at != prev.prefix {
			t.Errorf("chunk %d overlap %q does not start a sentence (after %q)", p.Ordinal, p.tail, before[max(0, len(before)-10):])
		}
		if sep := p.Text[len(p.tail):p.prefix]; sep != " " && sep != "\n\n" {
			t.Errorf("chunk %d: separator after the overlap = %q", p.Ordinal, sep)
		}
	}
}

func TestSplitOverlapWordBoundary(t *testing.T) {
	// One endless sentence: the overlap can only start at a word.
	words := make([]string, 2000)
	for i := range words {
		words[i] = fmt.Sprintf("w%d", i)
	}
	ps := pieces(t, strings.NewReader(strings.Join(words, " ")), Options{Size: 300, Overlap: 50})
	for i, p := range ps[1:] {
		if p.tail == "" || len(p.tail) > 49 {
			t.Fatalf("chunk %d overlap %q: want 1-49 bytes", p.Ordinal, p.tail)
		}
		if at := len(ps[i].Text) - len(p.tail); ps[i].Text[at-1] != ' ' || !strings.HasPrefix(p.tail, "w") {
			t.Errorf("chunk %d overlap %q does not start at a word", p.Ordinal, p.tail)
		}
	}
}

func TestSplitNoOverlap(t *testing.T) {
	text := strings.Repeat("Some words here. ", 500)
	for _, c := range pieces(t, strings.NewReader(text), Options{Size: 200, Overlap: -1}) {
		if c.prefix != 0 {
			t.Fatalf("chunk %d has a %d-byte overlap, want none", c.Ordinal, c.prefix)
		}
	}
}

func TestSplitHeadingsStayWithText(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var b strings.Builder
	for i := range 80 {
		fmt.Fprintf(&b, "%s Section %d\n\n", strings.Repeat("#", 1+i%3), i)
		b.WriteString(sentences(rng, 100+rng.IntN(600)))
		b.WriteString("\n\n")
	}
	for _, size := range []int{300, 700, 1000} {
		for _, p := range pieces(t, strings.NewReader(b.String()), Options{Size: size}) {
			lines := strings.Split(body(p), "\n")
			if last := lines[len(lines)-1]; strings.HasPrefix(last, "#") {
				t.Errorf("size %d: chunk %d ends with heading %q", size, p.Ordinal, last)
			}
		}
	}
	// A heading that does not fit with its text is still not cut from it
	// when there is another place to cut.
	text := "Intro text.\n\n## Title\n\n" + strings.Repeat("x", 90)
	ps := pieces(t, strings.NewReader(text), Options{Size: 100, Overlap: -1})
	if ps[0].Text != "Intro text." {
		t.Errorf("first chunk = %q, want the intro alone", ps[0].Text)
	}
}

func TestSplitLongWord(t *testing.T) {
	word := strings.Repeat("abcdefghij", 500)
	text := "Start here. " + word + " end."
	ps := pieces(t, strings.NewReader(text), Options{Size: 1000, Overlap: 100})
	var own []string
	for _, p := range ps {
		if len(body(p)) > 1000 {
			t.Errorf("chunk %d: %d bytes", p.Ordinal, len(body(p)))
		}
		own = append(own, body(p))
	}
	if got := strings.Join(own, ""); strings.ReplaceAll(got, " ", "") != strings.ReplaceAll(text, " ", "") {
		t.Error("chunks do not cover the text")
	}
	// Single runes longer than a tiny Size are kept whole.
	for _, c := range Split("😀😀😀 ab", Options{Size: 2, Overlap: -1}) {
		if !utf8.ValidString(c.Text) {
			t.Errorf("chunk %q is not valid UTF-8", c.Text)
		}
	}
}

func TestSplitLongWhitespaceRun(t *testing.T) {
	text := "alpha" + strings.Repeat(" ", 300) + "beta" + strings.Repeat(" ", 100) + "gamma"
	got := Split(text, Options{})
	want := "alpha\n\nbeta" + strings.Repeat(" ", 100) + "gamma"
	if len(got) != 1 || got[0].Text != want {
		t.Errorf("Split = %+v, want [%q]", got, want)
	}
}

func TestSplitUTF8(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	alphabet := []rune("aé日本語😀ß字。！？ \n")
	for range 200 {
		n := rng.IntN(3000)
		rs := make([]rune, n)
		for i := range rs {
			rs[i] = alphabet[rng.IntN(len(alphabet))]
		}
		text := string(rs)
		opts := Options{Size: 5 + rng.IntN(200), Overlap: rng.IntN(60)}
		for _, c := range Split(text, opts) {
			if !utf8.ValidString(c.Text) {
				t.Fatalf("Split(%q, %+v): chunk %q is not valid UTF-8", text, opts, c.Text)
			}
		}
	}
}

// TestSplitProperties checks, on random texts, that chunks cover the text in
// order, respect the size bounds and never start or end with whitespace.
func TestSplitProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for iter := range 300 {
		text := randomText(rng, rng.IntN(20_000))
		opts := Options{Size: 20 + rng.IntN(1500), Overlap: rng.IntN(300) - 20}
		nopts := opts.norm()
		ps := pieces(t, strings.NewReader(text), opts)
		var own strings.Builder
		for _, p := range ps {
			b := body(p)
			own.WriteString(b)
			if p.Text == "" || strings.TrimSpace(p.Text) != p.Text {
				t.Fatalf("iter %d: chunk %d %q is empty or has outer whitespace", iter, p.Ordinal, p.Text)
			}
			if p.prefix > nopts.Overlap {
				t.Fatalf("iter %d: chunk %d overlap %d > %d", iter, p.Ordinal, p.prefix, nopts.Overlap)
			}
			if len(b) > nopts.Size && !(strings.IndexFunc(b, unicode.IsSpace) < 0 && utf8.RuneCountInString(b) == 1) {
				t.Fatalf("iter %d: chunk %d has %d bytes of own text, want <= %d: %q", iter, p.Ordinal, len(b), nopts.Size, b)
			}
			if len(p.Text) > nopts.Size+nopts.Overlap && utf8.RuneCountInString(b) != 1 {
				t.Fatalf("iter %d: chunk %d has %d bytes, want <= %d", iter, p.Ordinal, len(p.Text), nopts.Size+nopts.Overlap)
			}
		}
		if got, want := stripSpace(own.String()), stripSpace(text); got != want {
			t.Fatalf("iter %d: chunks' own texts do not add up to the text", iter)
		}
	}
}

func TestSplitReaderMatchesSplit(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	readers := map[string]func(string) io.Reader{
		"strings":  func(s string) io.Reader { return strings.NewReader(s) },
		"one byte": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
		"half":     func(s string) io.Reader { return iotest.HalfReader(strings.NewReader(s)) },
		"data+EOF": func(s string) io.Reader { return iotest.DataErrReader(strings.NewReader(s)) },
		"random": func(s string) io.Reader {
			return &jitterReader{s: s, rng: rand.New(rand.NewPCG(uint64(len(s)), 1))}
		},
	}
	for iter := range 150 {
		text := randomText(rng, rng.IntN(12_000))
		opts := Options{Size: 10 + rng.IntN(1200), Overlap: rng.IntN(200) - 10}
		want := Split(text, opts)
		for name, mk := range readers {
			var got []Chunk
			err := SplitReader(mk(text), opts, func(c Chunk) error {
				got = append(got, c)
				return nil
			})
			if err != nil {
				t.Fatalf("iter %d, %s: %v", iter, name, err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("iter %d, %s reader, %+v: SplitReader differs from Split\ntext %q\ngot  %+v\nwant %+v", iter, name, opts, text, got, want)
			}
		}
	}
}

// jitterReader returns random-length reads, sometimes empty ones.
type jitterReader struct {
	s   string
	rng *rand.Rand
}

func (r *jitterReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	n := min(len(p), len(r.s), r.rng.IntN(300))
	n = copy(p, r.s[:n])
	r.s = r.s[n:]
	return n, nil
}

func TestSplitReaderErrors(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader(strings.Repeat("word ", 1000)), iotest.ErrReader(boom))
	if err := SplitReader(r, Options{Size: 100}, func(Chunk) error { return nil }); !errors.Is(err, boom) {
		t.Errorf("read error: got %v, want %v", err, boom)
	}
	n := 0
	stop := errors.New("stop")
	err := SplitReader(strings.NewReader(strings.Repeat("word ", 1000)), Options{Size: 100}, func(Chunk) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if err != stop || n != 3 {
		t.Errorf("emit error: got %v after %d chunks, want %v after 3", err, n, stop)
	}
	if err := SplitReader(stuckReader{}, Options{}, func(Chunk) error { return nil }); !errors.Is(err, io.ErrNoProgress) {
		t.Errorf("stuck reader: got %v, want io.ErrNoProgress", err)
	}
}

type stuckReader struct{}

func (stuckReader) Read([]byte) (int, error) { return 0, nil }

// genReader produces n bytes of text without holding them.
type genReader struct {
	n     int
	piece string
	off   int
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.n <= 0 {
		return 0, io.EOF
	}
	w := 0
	for w < len(p) && g.n > 0 {
		c := copy(p[w:min(len(p), w+g.n)], g.piece[g.off:])
		g.off = (g.off + c) % len(g.piece)
		w += c
		g.n -= c
	}
	return w, nil
}

func TestSplitReaderBoundedMemory(t *testing.T) {
	tests := []struct {
		name  string
		piece string
	}{
		{"prose", "A sentence of prose. Another one follows here!\n\n"},
		{"one long paragraph", "words and more words, never ending "},
		{"no spaces", "abcdefghijklmnopqrstuvwxyz"},
		{"whitespace", "      \n     \t   "},
		{"cjk", "日本語の文です。"},
	}
	const total = 8 << 20
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSplitter(&genReader{n: total, piece: tt.piece}, Options{}, readSize)
			maxBuf, maxBreaks, n := 0, 0, 0
			err := s.run(func(p piece) error {
				maxBuf = max(maxBuf, cap(s.buf))
				maxBreaks = max(maxBreaks, cap(s.breaks))
				n++
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			maxBuf = max(maxBuf, cap(s.buf))
			if maxBuf > 256<<10 || maxBreaks > 64<<10 {
				t.Errorf("buffer grew to %d bytes, breaks to %d, for a %d-byte input", maxBuf, maxBreaks, total)
			}
			t.Logf("%d chunks, buffer %d bytes, breaks %d", n, maxBuf, maxBreaks)
		})
	}
}

func stripSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if r < utf8.RuneSelf && isSpace(byte(r)) {
			return -1
		}
		return r
	}, s)
}

var vocabulary = strings.Fields("the a tenant data key model search index vector chunk " +
	"runtime isolation policy audit naïve café Straße 日本語 данные 😀 e.g. U.S. 3.14 (note) \"quoted\" it's")

func word(rng *rand.Rand) string { return vocabulary[rng.IntN(len(vocabulary))] }

func sentence(rng *rand.Rand, words int) string {
	var b strings.Builder
	w := word(rng)
	b.WriteString(strings.ToUpper(w[:1]) + w[1:])
	for range words - 1 {
		b.WriteByte(' ')
		b.WriteString(word(rng))
	}
	b.WriteString([]string{".", ".", ".", "?", "!"}[rng.IntN(5)])
	return b.String()
}

// sentences returns sentences adding up to about n bytes.
func sentences(rng *rand.Rand, n int) string {
	var parts []string
	for size := 0; size < n; {
		s := sentence(rng, 3+rng.IntN(12))
		parts = append(parts, s)
		size += len(s) + 1
	}
	return strings.Join(parts, " ")
}

// randomText mixes prose, headings, lists, code, long words, odd whitespace
// and CJK into about n bytes.
func randomText(rng *rand.Rand, n int) string {
	var b strings.Builder
	for b.Len() < n {
		switch rng.IntN(12) {
		case 0:
			fmt.Fprintf(&b, "%s %s\n\n", strings.Repeat("#", 1+rng.IntN(6)), sentence(rng, 1+rng.IntN(5)))
		case 1:
			for range 1 + rng.IntN(5) {
				fmt.Fprintf(&b, "- %s\n", sentence(rng, 2+rng.IntN(8)))
			}
			b.WriteByte('\n')
		case 2:
			b.WriteString(strings.Repeat(string(rune('a'+rng.IntN(26))), 1+rng.IntN(2000)))
			b.WriteByte(' ')
		case 3:
			b.WriteString(strings.Repeat(" \t\n"[rng.IntN(3):][:1], rng.IntN(400)))
		case 4:
			b.WriteString(strings.Repeat("漢字の文。", 1+rng.IntN(80)))
		case 5:
			b.WriteString("    code(x) // indented\n\tmore()\n")
		case 6:
			b.WriteString(sentence(rng, 1+rng.IntN(20)) + "\r\n")
		default:
			b.WriteString(sentences(rng, rng.IntN(600)))
			b.WriteString([]string{" ", "\n", "\n\n", "\n\n\n"}[rng.IntN(4)])
		}
	}
	return b.String()
}

var benchText = func() string {
	rng := rand.New(rand.NewPCG(42, 42))
	var b strings.Builder
	for b.Len() < 1<<20 {
		if rng.IntN(8) == 0 {
			fmt.Fprintf(&b, "## %s\n\n", sentence(rng, 3))
		}
		b.WriteString(sentences(rng, 100+rng.IntN(900)))
		b.WriteString("\n\n")
	}
	return b.String()[:1<<20]
}()

func BenchmarkSplit1MB(b *testing.B) {
	b.SetBytes(int64(len(benchText)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n = len(Split(benchText, Options{}))
	}
	b.ReportMetric(float64(n), "chunks/op")
}

func BenchmarkSplitReader1MB(b *testing.B) {
	b.SetBytes(int64(len(benchText)))
	b.ReportAllocs()
	for b.Loop() {
		err := SplitReader(strings.NewReader(benchText), Options{}, func(Chunk) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
	}
}

func TestSplitEdgeCases(t *testing.T) {
	long := strings.Repeat("x", 1500)
	tests := []struct {
		name string
		text string
		opts Options
		want []string
	}{
		{
			name: "heading at the very end stays with the text before it when all fits",
			text: "Para one.\n\n## Title\n\n",
			opts: Options{Size: 19, Overlap: -1},
			want: []string{"Para one.\n\n## Title"},
		},
		{
			name: "a short chunk before a giant word is overlapped whole",
			text: "First sentence here.\n\nSecond one.\n\n" + long,
			opts: Options{Size: 1000, Overlap: 150},
			want: []string{
				"First sentence here.\n\nSecond one.",
				"First sentence here.\n\nSecond one.\n\n" + long[:1000],
				long[1000:],
			},
		},
		{
			name: "sentence ends inside CJK text",
			text: "一二三。四五六。七八九。",
			opts: Options{Size: 24, Overlap: 12},
			want: []string{"一二三。四五六。", "四五六。七八九。"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, c := range Split(tt.text, tt.opts) {
				got = append(got, c.Text)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Split = %q\nwant    %q", got, tt.want)
			}
		})
	}
}

func TestSplitAvoidsTinyChunks(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	text := "Short intro.\n\n" + sentences(rng, 3000)
	ps := Split(text, Options{Size: 1000})
	if len(ps[0].Text) < 250 {
		t.Errorf("first chunk has %d bytes, want the intro joined with following sentences", len(ps[0].Text))
	}
}

func TestBreakLevels(t *testing.T) {
	tests := []struct {
		text string
		want []int8 // one per break; glue breaks as 0
	}{
		{"See e.g. this. Next one", []int8{levelWord, levelWord, levelSentence, levelWord, levelEnd}},
		{"Line one\nline two\n\nPara. \"Quoted!\" Then", []int8{levelWord, levelLine, levelWord, levelParagraph, levelSentence, levelSentence, levelEnd}},
		{"# Title words\n\nText.\n    # not a heading\n#hashtag here", []int8{0, 0, 0, levelSentence, levelWord, levelWord, levelWord, levelLine, levelWord, levelEnd}},
		{"一二三。四五六。」七", []int8{levelSentence, levelSentence, levelEnd}},
		{"tail   \n\n  ", []int8{levelEnd}},
	}
	for _, tt := range tests {
		s := newSplitter(strings.NewReader(tt.text), Options{Size: 1 << 20}, readSize)
		for !s.done {
			if err := s.scan(); err != nil {
				t.Fatal(err)
			}
		}
		var got []int8
		for _, b := range s.breaks {
			got = append(got, b.prio())
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("breaks of %q = %v, want %v", tt.text, got, tt.want)
		}
	}
}
