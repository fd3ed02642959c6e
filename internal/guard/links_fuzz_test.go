package guard

import (
	"bytes"
	"fmt"
	"html"
	"math/rand/v2"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/yuin/goldmark"
	gmhtml "github.com/yuin/goldmark/renderer/html"
)

// The oracle: goldmark renders the guard's output as CommonMark, with raw
// HTML passed through as a careless site would, and every attribute value of
// every tag in the page is read the way a browser reads a URL. None may name
// a host off the allow-list or a scheme other than http(s).

// oracleAllow is the allow-list of the differential tests. The oracle's own
// check (allowedByOracle) does not use hostList, so a bug there shows.
var oracleAllow = []string{"ok.example", "*.cdn.example"}

func allowedByOracle(host string) bool {
	return host == "ok.example" || len(host) > len(".cdn.example") && strings.HasSuffix(host, ".cdn.example")
}

var commonMark = goldmark.New(goldmark.WithRendererOptions(gmhtml.WithUnsafe()))

// render returns the HTML goldmark makes of md.
func render(t testing.TB, md string) string {
	t.Helper()
	var b bytes.Buffer
	if err := commonMark.Convert([]byte(md), &b); err != nil {
		t.Fatalf("goldmark: rendering %q: %v", md, err)
	}
	return b.String()
}

// renderedLeaks returns, for the HTML page, every attribute whose value a browser
// would use to reach a host the oracle does not allow.
func renderedLeaks(page string) []string {
	var bad []string
	// Every '<' followed by a letter starts a tag for some tokenizer state
	// (goldmark escapes '<' in text, so in its output these are all real
	// tags or raw HTML); reading each one, even inside another's attribute,
	// is stricter than a browser.
	for i := 0; i+1 < len(page); i++ {
		if page[i] != '<' || !isAlpha(page[i+1]) {
			continue
		}
		name := page[i+1:]
		if n := strings.IndexAny(name, " \t\n\f\r/>"); n >= 0 {
			name = name[:n]
		}
		if name = strings.ToLower(name); name == "script" || name == "style" {
			// Script fetches what it likes; CSS through url() and @import.
			bad = append(bad, "<"+name+"> element")
		}
		for _, a := range tagAttributes(page[i+1:]) {
			name := strings.ToLower(a[0])
			if name == "alt" || name == "title" || name == "class" {
				continue // never fetched (goldmark writes text in them)
			}
			if strings.HasPrefix(name, "on") || name == "srcdoc" {
				bad = append(bad, name+" attribute")
				continue
			}
			if why := oracleURL(html.UnescapeString(a[1])); why != "" {
				bad = append(bad, fmt.Sprintf("%s=%q: %s", a[0], a[1], why))
			}
		}
	}
	return bad
}

// tagAttributes tokenizes the attributes of the tag whose name starts s, as
// the HTML tokenizer does (tag name, before/after attribute name, quoted and
// unquoted values).
func tagAttributes(s string) [][2]string {
	space := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r' }
	j := 0
	for j < len(s) && !space(s[j]) && s[j] != '/' && s[j] != '>' {
		j++
	}
	var attrs [][2]string
	for {
		for j < len(s) && (space(s[j]) || s[j] == '/') {
			j++
		}
		if j >= len(s) || s[j] == '>' {
			return attrs
		}
		start := j
		j++ // the first byte of a name may be '='
		for j < len(s) && !space(s[j]) && s[j] != '/' && s[j] != '>' && s[j] != '=' {
			j++
		}
		name := s[start:j]
		for j < len(s) && space(s[j]) {
			j++
		}
		if j >= len(s) || s[j] != '=' {
			attrs = append(attrs, [2]string{name, ""})
			continue
		}
		j++
		for j < len(s) && space(s[j]) {
			j++
		}
		if j >= len(s) {
			return append(attrs, [2]string{name, ""})
		}
		switch q := s[j]; q {
		case '"', '\'':
			end := strings.IndexByte(s[j+1:], q)
			if end < 0 {
				return append(attrs, [2]string{name, s[j+1:]})
			}
			attrs = append(attrs, [2]string{name, s[j+1 : j+1+end]})
			j += end + 2
		case '>':
			return append(attrs, [2]string{name, ""})
		default:
			v := j
			for j < len(s) && !space(s[j]) && s[j] != '>' {
				j++
			}
			attrs = append(attrs, [2]string{name, s[v:j]})
		}
	}
}

var cssURL = regexp.MustCompile(`(?i)url\(\s*['"]?([^'")\s]*)`)

// oracleURL reports why v, an attribute value, reaches a host or scheme the
// oracle does not allow, or "" if it does not. Besides the whole value it
// reads each word and comma-separated part (srcset), CSS url(…) and a
// meta refresh "url=…".
func oracleURL(v string) string {
	parts := []string{v}
	parts = append(parts, strings.FieldsFunc(v, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\f' || r == '\r' || r == ';'
	})...)
	for _, m := range cssURL.FindAllStringSubmatch(v, -1) {
		parts = append(parts, m[1])
	}
	for _, p := range parts {
		if len(p) > 4 && strings.EqualFold(p[:4], "url=") {
			p = p[4:]
		}
		if why := browserURL(p); why != "" {
			return why
		}
	}
	return ""
}

var schemeRE = regexp.MustCompile(`^([a-zA-Z][a-zA-Z0-9+.-]*):`)

// browserURL resolves u as a browser on an https page would, roughly and
// on the strict side: tabs and newlines removed, C0 and spaces trimmed,
// backslashes read as slashes, any run of slashes after http(s): starting
// the host.
func browserURL(u string) string {
	u = strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, u)
	u = strings.TrimFunc(u, func(r rune) bool { return r <= ' ' })
	u = strings.ReplaceAll(u, `\`, "/")
	var rest string
	switch m := schemeRE.FindStringSubmatch(u); {
	case strings.HasPrefix(u, "//"):
		rest = u
	case m == nil:
		return "" // relative: the page's own origin
	case strings.EqualFold(m[1], "http") || strings.EqualFold(m[1], "https"):
		rest = u[len(m[0]):]
	default:
		return "scheme " + m[1]
	}
	p, err := url.Parse("https://" + strings.TrimLeft(rest, "/"))
	if err != nil {
		return "unparsable: " + err.Error()
	}
	host := strings.TrimSuffix(strings.ToLower(p.Hostname()), ".")
	if !allowedByOracle(host) {
		return "host " + host
	}
	return ""
}

// checkRendered runs text through Check and, unless it is blocked, asserts
// that the output rendered by goldmark reaches no disallowed host, and that
// a stream cut at random gives the same output.
func checkRendered(t *testing.T, r *rand.Rand, text string) (blocked bool) {
	t.Helper()
	g := New()
	v := g.Check(acme, text, oracleAllow)
	if r != nil {
		for range 2 {
			pieces := cuts(r, text)
			sent, sv, _ := stream(g, pieces, oracleAllow)
			if sv.Blocked != v.Blocked || !sv.Blocked && sent != v.Text {
				t.Fatalf("stream of %q cut as %q:\ngot %v %q\nCheck %v %q", text, pieces, sv.Blocked, sent, v.Blocked, v.Text)
			}
		}
	}
	if v.Blocked {
		return true
	}
	page := render(t, v.Text)
	if bad := renderedLeaks(page); len(bad) > 0 {
		t.Fatalf("input %q\nguard output %q\nrenders as %q\nreaching %q", text, v.Text, page, bad)
	}
	return false
}

// TestOracle makes sure the oracle sees what it must: each of these, sent
// unguarded, renders as a link, image or fetch to a disallowed host.
func TestOracle(t *testing.T) {
	for _, md := range []string{
		"![a](https://evil.example/x.png)",
		"- [r]: https://evil.example/x.png\n\n![a][r]",
		"<a/b@evil.example>",
		"<https://ok.example@evil.example/>",
		`<img src="/	/evil.example/x">`,
		`<img srcset="a.png 1x, https://evil.example/b.png 2x">`,
		`<div style="background:url(https://evil.example/x)">`,
		`<meta http-equiv=refresh content="0;url=https://evil.example/">`,
		"[x](javascript:alert(1))",
		"[x](//evil.example)",
		`[x](https:\\evil.example)`,
		"[x](https://ok.example.evil.example/)",
		"[x](https://cdn.example/)",
		"[x](https://evil%2Eexample/)",
	} {
		if bad := renderedLeaks(render(t, md)); len(bad) == 0 {
			t.Errorf("oracle finds nothing in %q, rendered %q", md, render(t, md))
		}
	}
	for _, md := range []string{
		"[x](https://ok.example/a?u=https://evil.example)", "![c](https://img.cdn.example/c.png)",
		"[x](rel/path)", `<img src="logo.png" alt="see: here">`, "https://evil.example/ in prose",
		"`<img src=https://evil.example/x>`", "<b title='a: b'>x</b>",
	} {
		if bad := renderedLeaks(render(t, md)); len(bad) > 0 {
			t.Errorf("oracle finds %q in %q, rendered %q", bad, md, render(t, md))
		}
	}
}

// mdGen builds random markdown from the pieces that make links: container
// prefixes, reference definitions and their three kinds of use, inline links
// and images, autolinks, raw HTML, code, escapes and line breaks.
type mdGen struct {
	r *rand.Rand
	b strings.Builder
}

func (g *mdGen) pick(s ...string) string { return s[g.r.IntN(len(s))] }

var (
	genAllowed    = []string{"https://ok.example/x", "https://img.cdn.example/a.png", "HTTP://OK.Example:8080/p?q=1", "https://ok.example/a_(b)", "https://ok.example/?/src=//evil.example/x"}
	genDisallowed = []string{
		"https://evil.example/x.png?d=1", "//evil.example/x", "https://cdn.example/", "https://ok.example.evil.example/",
		"javascript:alert(1)", "data:image/png;base64,AAAA", "mailto:a@evil.example", "x/y", "https://ok.example@evil.example/",
		`https:\\evil.example/`, "https:evil.example", "https://evil.example/a(b)c", "HTTPS://EVIL.EXAMPLE/",
		"https://ok.example\x01@evil.example/", "https://ok.example\x7f@evil.example/", "https://ok.example<@evil.example/",
	}
	genLabels = []string{"r", "Foo Bar", "foo  bar", "FOO\nBAR", "ẞ", "ss", "SS", "Ω", "ω", "a\\]b", "1", "x y"}
)

func (g *mdGen) url() string {
	if g.r.IntN(2) == 0 {
		return g.pick(genAllowed...)
	}
	return g.pick(genDisallowed...)
}

func (g *mdGen) dest() string {
	u := g.url()
	if g.r.IntN(4) == 0 {
		u = "<" + u + ">"
	}
	switch g.r.IntN(6) {
	case 0:
		u += ` "title"`
	case 1:
		u += "\n'title'"
	case 2:
		u += " (t)"
	case 3:
		u += " junk"
	}
	return u
}

func (g *mdGen) label() string {
	l := g.pick(genLabels...)
	switch g.r.IntN(4) {
	case 0:
		l = strings.ToUpper(l)
	case 1:
		l = strings.ToLower(l)
	case 2:
		l = " " + l + "  "
	}
	return l
}

func (g *mdGen) prefix() string {
	return g.pick("", "", "- ", "* ", "+ ", "1. ", "2) ", "> ", ">", "  ", "   ", "    ", "\t", "> - ", "- > ", "1. > ", " > ", "-\t", ">> ", "> > ", "10. ")
}

func (g *mdGen) piece() string {
	switch g.r.IntN(23) {
	case 0, 1:
		return "[" + g.label() + "]:" + g.pick(" ", "\n", "\n  ", "\t", "  ") + g.dest()
	case 2:
		return "[" + g.label() + "]"
	case 3:
		return g.pick("[t][", "![a][", "[", "![") + g.label() + g.pick("]", "][]", "] []")
	case 4, 5:
		return g.pick("[t](", "![i](", "[a ![b](https://ok.example/b.png) c](", "](") + g.pick("", " ", "\n") + g.dest() + ")"
	case 6:
		return "<" + g.pick(genAllowed...) + ">"
	case 7:
		return g.pick("<https://evil.example/>", "<a/b@evil.example>", "<x@ok.example>", "<HTTPS://evil.example>", "<ftp://ok.example/>")
	case 8:
		return g.pick("<img src=\"", "<a href='", "<iframe src=", "<img srcset=\"a.png 1x, ", "<div style=\"background:url(") + g.url() + g.pick("\">", "'>", ">", "", " alt=x>")
	case 9:
		return g.pick(`<img src="/	/evil.example/x">`, "<b>", "</a>", "<!-- ", " -->", "<div>", "</div>", "<img", " src=", "<p title=\"", `<a href="rel">`,
			"<style>", "</style>", "<script>", "<img src=x onerror=", "<iframe srcdoc=\"", "<svg><image href=", "<base href=", "<!-- src=", "</x src=", "<? src=", "<pre>", "</pre>", "```x/src=//evil.example/x\n", "<img src\f=\f", "<meta http-equiv=refresh content=\"0;url=")
	case 10:
		return g.pick("`", "``", "\n```\n", "\n~~~\n", "`code`")
	case 11:
		return g.pick(`\[`, `\]`, `\<`, `\\`, "\\`", `\!`, `\(`)
	case 12, 13:
		return g.pick("\n", "\n\n", "\r\n", "\r", "\n\n\n")
	case 14:
		return g.pick("[", "]", "(", ")", "![", "<", ">", `"`, "'", ":", "](", "]:", "!")
	case 15:
		return g.pick("&lt;", "&#91;", "&amp;", "&#x3A;", "&colon;")
	case 16:
		return "\n" + g.prefix()
	case 17:
		return g.url()
	case 18:
		// A code span, raw HTML or autolink opening before a link and
		// closing inside it.
		return g.pick("`[x](", "`<", "<b title=\"", "[a <img alt=\"") + g.pick(genAllowed...) + g.pick("`", "\"", " \"`", "/`") + g.piece()
	}
	return g.pick("word ", "some text ", "é ", "日本 ", " ", "  ", "a", "\x7f", "\x00", "\v", "\f", "\x01")
}

func (g *mdGen) doc() string {
	g.b.Reset()
	for range 1 + g.r.IntN(12) {
		g.b.WriteString(g.prefix())
		for range 1 + g.r.IntN(6) {
			g.b.WriteString(g.piece())
		}
		g.b.WriteString(g.pick("\n", "\n", "\n\n", "\r\n"))
	}
	return g.b.String()
}

// TestLinksDifferential is the property test: random markdown through the
// guard, rendered by goldmark, reaches no host the tenant does not allow.
func TestLinksDifferential(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 3))
	g := &mdGen{r: r}
	n := 3000
	if testing.Short() {
		n = 300
	}
	blocked := 0
	for range n {
		if checkRendered(t, r, g.doc()) {
			blocked++
		}
	}
	t.Logf("%d documents, %d blocked", n, blocked)
	if blocked > n/2 {
		t.Fatalf("%d of %d documents blocked: the property is checked on too few", blocked, n)
	}
}

// FuzzLinks is the native fuzz target of the same property. Its seed corpus
// runs in go test; run it with
//
//	go test -run '^$' -fuzz FuzzLinks -fuzztime 60s ./internal/guard/
func FuzzLinks(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s, uint64(0))
	}
	g := &mdGen{r: rand.New(rand.NewPCG(5, 5))}
	for range 30 {
		f.Add(g.doc(), g.r.Uint64())
	}
	f.Fuzz(func(t *testing.T, text string, seed uint64) {
		if len(text) > 8<<10 {
			return
		}
		r := rand.New(rand.NewPCG(seed, 1))
		checkRendered(t, r, text)
		// And spliced into a generated document, so that the mutator's
		// bytes meet containers, definitions and references.
		doc := (&mdGen{r: r}).doc()
		at := r.IntN(len(doc) + 1)
		checkRendered(t, r, doc[:at]+text+doc[at:])
	})
}
