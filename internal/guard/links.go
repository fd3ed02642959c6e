package guard

import (
	"strconv"
	"strings"
)

// hostList is a tenant's allow-list of link and image hosts.
type hostList struct {
	exact  []string
	suffix []string // ".example.com" for "*.example.com"
}

// newHostList normalizes allow. Entries that are not a host name or
// "*." followed by one (a URL, a port, another wildcard) allow nothing.
func newHostList(allow []string) hostList {
	var h hostList
	for _, a := range allow {
		a = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(a)), ".")
		if rest, ok := strings.CutPrefix(a, "*."); ok {
			if validHost(rest) {
				h.suffix = append(h.suffix, "."+rest)
			}
			continue
		}
		if validHost(a) {
			h.exact = append(h.exact, a)
		}
	}
	return h
}

func (h hostList) allows(host string) bool {
	for _, e := range h.exact {
		if host == e {
			return true
		}
	}
	for _, s := range h.suffix {
		if len(host) > len(s) && strings.HasSuffix(host, s) {
			return true
		}
	}
	return false
}

// validHost reports whether s is a lowercase ASCII host name or IP address.
// Anything else (percent escapes, Unicode, '&') is refused rather than
// interpreted, since browsers decode or map it into some other host.
func validHost(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	if s[0] == '[' { // IPv6 literal
		if s[len(s)-1] != ']' || len(s) < 3 {
			return false
		}
		for i := 1; i < len(s)-1; i++ {
			if c := s[i]; !(isDigit(c) || 'a' <= c && c <= 'f' || c == ':' || c == '.') {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(isDigit(c) || 'a' <= c && c <= 'z' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// checkURL reports whether u, a link or image URL, may be sent; if not, why
// ("host not allowed: evil.example", "URL not allowed: data", …).
//
// Only an absolute http or https URL with an allowed host passes. The host is
// found the way a browser finds it (any run of slashes after the scheme,
// userinfo before the last '@', a port after ':'), and anything a browser
// would rewrite first (backslashes, whitespace, control characters) fails.
func checkURL(u string, allow hostList) (bool, string) {
	for i := 0; i < len(u); i++ {
		if c := u[i]; c <= ' ' || c == 0x7f || c == '\\' {
			return false, "URL not allowed: malformed"
		}
	}
	colon := strings.IndexByte(u, ':')
	if colon < 0 || !validScheme(u[:colon]) {
		return false, "URL not allowed: relative"
	}
	scheme := strings.ToLower(u[:colon])
	if scheme != "http" && scheme != "https" {
		if len(scheme) > 16 {
			scheme = scheme[:16]
		}
		return false, "URL not allowed: " + scheme
	}
	rest := strings.TrimLeft(u[colon+1:], "/")
	if end := strings.IndexAny(rest, "/?#"); end >= 0 {
		rest = rest[:end]
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		rest = rest[at+1:]
	}
	host := rest
	if c := strings.LastIndexByte(host, ':'); c >= 0 && !strings.HasSuffix(host, "]") {
		for _, d := range host[c+1:] {
			if d < '0' || d > '9' {
				return false, "URL not allowed: malformed"
			}
		}
		host = host[:c]
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if !validHost(host) {
		return false, "URL not allowed: malformed"
	}
	if allow.allows(host) {
		return true, ""
	}
	if len(host) > 100 {
		host = host[:100]
	}
	return false, "host not allowed: " + host
}

func validScheme(s string) bool {
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !(isAlnum(c) || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// linkStage is a pass for markdown and HTML links and images. It removes the
// ones whose URL checkURL refuses; with detect set (the second pass) finding
// one blocks instead, since it was formed by an earlier removal.
//
// At each position that can start a construct it matches at most
// maxConstruct bytes. A construct not yet closed is held back; one still open
// at maxConstruct bytes is plain text if it has not reached its URL and
// blocks if it has.
//
// It does not parse markdown the way a renderer does, and need not: at every
// position it asks whether some reading of the text makes a link or image
// start there, and removes the construct if its URL is refused. An allowed
// construct is never skipped as a whole: its text, destination, title or
// attributes are scanned like any other text, because a renderer may read
// them otherwise (a code span, raw HTML or an autolink binds tighter than a
// link's brackets, and an invalid title makes the brackets plain text).
// Reference definitions are matched after any container prefix (see
// startsLine) and removed when their URL is refused, so every reference to
// them, full, collapsed or shortcut and however its label is spelt, renders
// as text.
type linkStage struct {
	hosts     hostList
	detect    bool
	r         *reasons
	pending   string
	lineStart bool // pending starts a line (a reference definition may follow)
	changed   bool // some construct was rewritten
}

func (l *linkStage) write(in string, final bool) (string, string) {
	buf := l.pending + in
	end := len(buf)
	if !final {
		end = completeEscapes(buf)
	}
	view, at := jsonView(buf[:end])
	out, used, blocked := l.runView(view, at, buf, final, &l.lineStart)
	if blocked != "" {
		return "", blocked
	}
	if at != nil {
		used = at[used]
	}
	l.pending = buf[used:]
	return out, ""
}

// run filters s and returns the result for s[:used]. Unless final it stops
// at a construct more input could still change. *lineStart says whether s
// starts a line, and is updated to whether s[used:] does.
func (l *linkStage) run(s string, final bool, lineStart *bool) (out string, used int, blocked string) {
	return l.runView(s, nil, "", final, lineStart)
}

// runView is run over s, the JSON-unescaped view of orig (see jsonView):
// constructs are matched in s, and the result is orig but for the
// constructs rewritten, whose replacement has the control characters that
// orig had escaped escaped again, so that a JSON string stays one. used
// is an index of s. at nil means s is orig.
func (l *linkStage) runView(s string, at []int, orig string, final bool, lineStart *bool) (out string, used int, blocked string) {
	src := func(a, b int) string {
		if at == nil {
			return s[a:b]
		}
		return orig[at[a]:at[b]]
	}
	var b strings.Builder
	plain := 0 // start of text not yet written to b
	i := 0
	for {
		j := strings.IndexAny(s[i:], "[!]<")
		if j < 0 {
			i = len(s)
			break
		}
		i += j
		win := s[i:min(len(s), i+maxConstruct)]
		m, blocked := l.match(win, startsLine(s, i, *lineStart))
		if blocked != "" {
			return "", 0, blocked
		}
		if m.short && len(win) == maxConstruct && m.inURL {
			return "", 0, ReasonTooLong
		}
		if m.short && len(win) < maxConstruct && !final {
			break // hold back from i
		}
		if m.n == 0 || m.short && len(win) == maxConstruct {
			i++ // plain text
			continue
		}
		if m.reason != "" {
			if l.detect {
				return "", 0, ReasonFormedLink
			}
			l.r.add(m.reason)
		}
		if m.out != s[i:i+m.n] {
			l.changed = true
			b.WriteString(src(plain, i))
			if at != nil {
				b.WriteString(reescape(m.out, src(i, i+m.n)))
			} else {
				b.WriteString(m.out)
			}
			plain = i + m.n
		}
		i += m.n
	}
	*lineStart = startsLine(s, i, *lineStart)
	if plain == 0 {
		return src(0, i), i, ""
	}
	b.WriteString(src(plain, i))
	return b.String(), i, ""
}

// JSON escapes. An answer in JSON (response_format json_object or
// json_schema), or a JSON document inside a tool argument, is decoded by
// its reader before it is rendered, so "\u0021\u005B" there is "![". The
// link passes therefore read text through JSON string escapes: \uXXXX of
// ASCII but '"' and '\', \/, and \n, \r, \t, \f (an escaped backslash
// stays two bytes, and so a backslash). Text that is not JSON is read so
// too, which only makes more text a candidate construct. What is sent is
// the original text but for constructs removed, so escapes elsewhere are
// left as they were.

// jsonView returns s with its JSON escapes (above) replaced by what they
// stand for, and at, where at[k] is the offset in s of the view's byte k
// (len(view)+1 entries); at is nil, and the view s, when s has none.
func jsonView(s string) (string, []int) {
	if strings.IndexByte(s, '\\') < 0 {
		return s, nil
	}
	v := make([]byte, 0, len(s))
	at := make([]int, 0, len(s)+1)
	changed := false
	for i := 0; i < len(s); {
		c, n := jsonEscape(s[i:])
		switch {
		case n > 0:
			changed = true
		case strings.HasPrefix(s[i:], `\\`): // an escaped backslash
			v, at = append(v, '\\', '\\'), append(at, i, i+1)
			i += 2
			continue
		default:
			c, n = s[i], 1
		}
		v, at = append(v, c), append(at, i)
		i += n
	}
	if !changed {
		return s, nil
	}
	return string(v), append(at, len(s))
}

// jsonEscape returns the byte the escape s begins with stands for and its
// length, or n 0 if s begins with none the link passes read.
func jsonEscape(s string) (c byte, n int) {
	if len(s) < 2 || s[0] != '\\' {
		return 0, 0
	}
	switch s[1] {
	case '/':
		return '/', 2
	case 'n':
		return '\n', 2
	case 'r':
		return '\r', 2
	case 't':
		return '\t', 2
	case 'f':
		return '\f', 2
	case 'u', 'U':
		if len(s) < 6 {
			return 0, 0
		}
		x, err := strconv.ParseUint(s[2:6], 16, 16)
		if err != nil {
			return 0, 0
		}
		if x == '\t' || x == '\n' || x == '\r' || x == '\f' || 0x20 <= x && x < 0x7f && x != '"' && x != '\\' {
			return byte(x), 6
		}
	}
	return 0, 0
}

// completeEscapes returns the length of s without an escape at its end
// that more input may complete, which the link passes hold back: from the
// start of a last run of backslashes that only "u" and up to three hex
// digits follow (the run's pairs are read only with the escape after it).
func completeEscapes(s string) int {
	i := strings.LastIndexByte(s, '\\')
	if i < 0 || len(s)-i >= 6 {
		return len(s)
	}
	if t := s[i+1:]; t != "" && ((t[0] != 'u' && t[0] != 'U') || strings.Trim(t[1:], "0123456789abcdefABCDEF") != "") {
		return len(s)
	}
	for i > 0 && s[i-1] == '\\' {
		i--
	}
	return i
}

// reescape returns out, the replacement of the construct orig, with the
// control characters that orig held only escaped escaped again.
func reescape(out, orig string) string {
	for _, e := range []struct {
		c   string
		esc string
	}{{"\n", `\n`}, {"\r", `\r`}, {"\t", `\t`}, {"\f", `\f`}} {
		if strings.Contains(out, e.c) && !strings.Contains(orig, e.c) {
			out = strings.ReplaceAll(out, e.c, e.esc)
		}
	}
	return out
}

// startsLine reports whether s[i] may start a block inside containers: only
// indentation and container markers (block quote '>', list item "-", "+",
// "*", "1." or "1)", in any nesting) precede it on its line. It accepts more
// than CommonMark does ("1.5 "), which only makes more text a candidate
// definition. first says whether s[0] may.
func startsLine(s string, i int, first bool) bool {
	for i--; i >= 0; i-- {
		switch c := s[i]; {
		case c == '\n' || c == '\r': // '\r' alone ends a line too
			return true
		case c == ' ' || c == '\t' || c == '>' || c == '-' || c == '+' || c == '*' || c == '.' || c == ')' || isDigit(c):
		default:
			return false
		}
	}
	return first
}

// construct is the outcome of matching at one position.
type construct struct {
	n      int    // bytes matched; 0 if there is no construct here
	out    string // what to write instead
	reason string // why out differs, "" if the construct is allowed

	// short reports that the input ended before a decision; inURL, that it
	// ended after the construct reached its URL. If the text ends there, n,
	// out and reason (n > 0) say what to do with the rest, else it is text.
	short bool
	inURL bool
}

var (
	none  = construct{}
	short = construct{short: true}
	open  = construct{short: true, inURL: true}
)

// match tries the constructs that can start at s[0]: ![alt](url), [text](url),
// [label]: url at the start of a line, ](url) whose '[' was not matched,
// <scheme:…> and <user@host> autolinks, and raw HTML tags.
func (l *linkStage) match(s string, lineStart bool) (construct, string) {
	if len(s) < 2 {
		return short, ""
	}
	switch s[0] {
	case '!':
		if s[1] != '[' {
			return none, ""
		}
		return l.link(s, 1, false)
	case '[':
		return l.link(s, 0, lineStart)
	case ']':
		if s[1] != '(' {
			return none, ""
		}
		end, url, m := destination(s, 1)
		if end == 0 {
			return m, ""
		}
		if ok, why := checkURL(url, l.hosts); !ok {
			return construct{n: end, out: "]", reason: "link to a " + why}, ""
		}
		return none, ""
	case '<':
		return l.angle(s), ""
	}
	return none, ""
}

// link matches an inline link or image whose '[' is s[bracket], or a
// reference definition.
func (l *linkStage) link(s string, bracket int, lineStart bool) (construct, string) {
	image := bracket == 1
	closing, m := closeBracket(s, bracket)
	if closing == 0 {
		return m, ""
	}
	if closing+1 >= len(s) {
		return short, ""
	}
	text := s[bracket+1 : closing]
	switch s[closing+1] {
	case '(':
		end, url, m := destination(s, closing+1)
		if end == 0 {
			return m, ""
		}
		ok, why := checkURL(url, l.hosts)
		switch {
		case ok:
			return none, "" // scanned on from the next byte
		case image:
			return construct{n: end, out: imageRemoved, reason: "image from a " + why}, ""
		}
		// The text is kept, and may hold links and images itself.
		inner, _, blocked := l.run(text, true, new(bool))
		if blocked != "" {
			return none, blocked
		}
		return construct{n: end, out: inner, reason: "link to a " + why}, ""
	case ':':
		if image || !lineStart {
			return none, ""
		}
		end, url, m := definition(s, closing+2)
		if end == 0 {
			return m, ""
		}
		if ok, why := checkURL(url, l.hosts); !ok {
			// If s ends in the URL, m is open and the definition, which
			// the end of the text completes, is removed at the end.
			m.n, m.reason = end, "link to a "+why
			return m, ""
		}
		return construct{short: m.short, inURL: m.inURL}, ""
	}
	return none, ""
}

// closeBracket returns the index of the ']' matching the '[' at s[open]:
// brackets nest, a backslash escapes, a blank line ends the attempt.
func closeBracket(s string, open int) (int, construct) {
	depth := 0
	for j := open + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case '[':
			depth++
		case ']':
			if depth == 0 {
				return j, none
			}
			depth--
		case '\n':
			if j+1 < len(s) && s[j+1] == '\n' {
				return 0, none
			}
		}
	}
	return 0, short
}

// destination matches "(url …)" at s[p] and returns the index past ')' and
// the URL: "<…>" or a run of non-space bytes with balanced parentheses.
// Anything between the URL and ')' (a title, or junk a lenient renderer
// might accept) is skipped. It returns 0 and none or open when there is no
// destination, or not yet one.
func destination(s string, p int) (int, string, construct) {
	j := skipSpace(s, p+1)
	if j < 0 {
		return 0, "", none
	}
	if j >= len(s) {
		return 0, "", open
	}
	var url string
	if s[j] == '<' {
		end := angleEnd(s[j+1:])
		switch {
		case end < 0:
			return 0, "", open
		case s[j+1+end] != '>':
			return 0, "", none
		}
		url = s[j+1 : j+1+end]
		j += end + 2
	} else {
		start, depth := j, 0
	run:
		for ; j < len(s); j++ {
			switch c := s[j]; {
			case isMarkdownSpace(c):
				break run
			case c == '\\':
				j++
			case c == '(':
				depth++
			case c == ')':
				if depth == 0 {
					break run
				}
				depth--
			}
		}
		if j >= len(s) {
			return 0, "", open
		}
		url = s[start:j]
	}
	for ; j < len(s); j++ {
		switch s[j] {
		case ')':
			return j + 1, url, none
		case '\n':
			if j+1 < len(s) && s[j+1] == '\n' {
				return 0, "", none
			}
		}
	}
	return 0, "", open
}

// definition matches the URL of a reference definition "[label]: url",
// starting at s[p] just after the colon, and returns the index past it. A URL
// that runs to the end of s is returned with open: more input may extend it.
func definition(s string, p int) (int, string, construct) {
	j := skipSpace(s, p)
	if j < 0 {
		return 0, "", none
	}
	if j >= len(s) {
		return 0, "", open
	}
	if s[j] == '<' {
		end := angleEnd(s[j+1:])
		switch {
		case end < 0:
			return 0, "", open
		case s[j+1+end] != '>':
			return 0, "", none
		}
		return j + end + 2, s[j+1 : j+1+end], none
	}
	start := j
	for j < len(s) && !isMarkdownSpace(s[j]) {
		j++
	}
	if j >= len(s) {
		return j, s[start:j], open
	}
	return j, s[start:j], none
}

// angleEnd returns the index in s of the '>' or line break that ends a
// "<…>" destination, or -1. A '<' does not end it: CommonMark says it may not
// occur there, but goldmark takes it, and a URL that goes on further than a
// renderer's only fails the check more often. Other bytes a renderer might
// take (controls) are in the URL too, for the same reason; checkURL refuses
// them.
func angleEnd(s string) int { return strings.IndexAny(s, ">\n") }

// isMarkdownSpace reports whether c ends a raw link destination: the bytes
// renderers treat as white space (goldmark's, which include '\v' and '\f').
// Any other byte, a control character or DEL too, may be part of one.
func isMarkdownSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// skipSpace skips spaces, tabs and line breaks from s[j]. It returns -1 at a
// blank line, which ends any construct.
func skipSpace(s string, j int) int {
	for ; j < len(s); j++ {
		switch s[j] {
		case ' ', '\t', '\r':
		case '\n':
			if j+1 < len(s) && s[j+1] == '\n' {
				return -1
			}
		default:
			return j
		}
	}
	return j
}

// angle matches an autolink or a raw HTML tag at s[0] == '<'.
func (l *linkStage) angle(s string) construct {
	j := 1
	for j < len(s) && s[j] > ' ' && s[j] != '<' && s[j] != '>' { // DEL too: goldmark takes it
		j++
	}
	run := s[1:j]
	colon := strings.IndexByte(run, ':')
	isLink := colon > 0 && validScheme(run[:colon]) ||
		strings.IndexByte(run, '@') > 0 && !strings.ContainsAny(run, "/=\"'") || isEmail(run, false)
	switch {
	case j >= len(s) && (isLink || !strings.ContainsAny(run, "/=\"'") || isEmail(run, true)):
		// An autolink not closed yet, or a run more input may make an
		// email autolink of ("<a/b" and "@host>"): undecided, so held
		// back, but removed at the end if as a tag it must be ("<a:/x=//").
		c := l.tag(s)
		c.short, c.inURL = true, true
		return c
	case j < len(s) && s[j] == '>' && isLink:
		if ok, why := checkURL(s[1:j], l.hosts); !ok {
			return construct{n: j + 1, out: linkRemoved, reason: "link to a " + why}
		}
		// In an HTML block the same bytes are raw HTML, which a browser
		// reads as a tag "https:" with attributes ("<https://h/?/style=…>").
	}
	return l.tag(s)
}

// isEmail reports whether s has the form of a CommonMark email autolink's
// address, whose local part may hold '/', '=' and an apostrophe (<a/b@host>
// is one), or with prefix set whether more bytes could give it that form.
func isEmail(s string, prefix bool) bool {
	at := strings.IndexByte(s, '@')
	switch {
	case at < 0 && prefix:
		at = len(s)
	case at <= 0:
		return false
	case at == len(s)-1 && !prefix:
		return false
	}
	for i := 0; i < at; i++ {
		if c := s[i]; !isAlnum(c) && !strings.ContainsRune(".!#$%&'*+/=?^_`{|}~-", rune(c)) {
			return false
		}
	}
	for i := at + 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// tag matches a raw HTML start tag: a name, then attributes tokenized the
// lenient way browsers do (a name runs to a space, '/', '>' or '='; a value
// is quoted or runs to a space or '>'). It is removed if any attribute value
// that could name another origin is not an allowed URL, and so are script
// and style tags and tags with an event handler or srcdoc attribute, which
// can reach any origin without naming it; an img tag becomes
// "[image removed]". A tag that ends early after such a value, at a blank
// line or at the end of the text, is removed up to there: a renderer or
// browser may still close it with whatever follows.
func (l *linkStage) tag(s string) construct {
	j := 1
	if !isAlpha(s[j]) && s[j] != '/' && s[j] != '!' && s[j] != '?' {
		return none
	}
	// "</x", "<!--", "<?" and "<!X" create no element, but they start HTML
	// blocks, and a tag still open at the end of the block before it (a
	// blank line ended it, which ends no tag for a browser) takes their
	// "name=value" runs as its own attributes: they are checked the same.
	//
	// A browser's tag name runs to a space, '/' or '>': "<b)" and "<a!x" are
	// elements too, and any element takes a style attribute.
	for j < len(s) && !isTagSpace(s[j]) && s[j] != '/' && s[j] != '>' {
		j++
	}
	name := strings.ToLower(s[1:j])
	c := l.attributes(s, j, name)
	if strings.IndexByte(name, '=') >= 0 {
		// A tag a blank line left open reads "<x=//host" as an attribute
		// "<x" with a value; a tag of its own, as a name.
		d := l.attributes(s, 0, name)
		short, inURL := c.short || d.short, c.inURL || d.inURL
		if c.reason == "" {
			c = d
		}
		c.short, c.inURL = short, inURL
	}
	return c
}

// attributes matches the attributes of the tag s, whose name is name, from
// s[j] (see tag).
func (l *linkStage) attributes(s string, j int, name string) construct {
	why := ""
	if name == "script" || name == "style" {
		// Their content fetches what it likes (CSS url(), @import,
		// script); removing the start tag leaves it as text.
		why = "tag not allowed: " + name
	}
	check := func(value string) {
		if why != "" {
			return
		}
		// A browser drops tabs and line breaks from a URL: "/\t/host".
		if strings.ContainsAny(value, "\t\n\r") {
			value = strings.Map(dropTabsAndBreaks, value)
		}
		if strings.ContainsAny(value, ":\\&") || strings.Contains(value, "//") {
			if ok, reason := checkURL(value, l.hosts); !ok {
				why = reason
			}
		}
	}
	end := func(n int, c construct) construct {
		switch {
		case why == "":
			return c
		case name == "img" || name == "image":
			c.n, c.out, c.reason = n, imageRemoved, "image from a "+why
		default:
			c.n, c.out, c.reason = n, "", "link to a "+why
		}
		return c
	}
	for {
		j = skipTagSpace(s, j)
		switch {
		case j < 0:
			return end(-j, none) // a blank line
		case j >= len(s):
			return end(len(s), open)
		case s[j] == '>':
			return end(j+1, none) // allowed: its attributes are scanned too
		}
		attr := j
		j++ // a name's first byte may be anything left, even '='
		for j < len(s) && !isTagSpace(s[j]) && s[j] != '/' && s[j] != '>' && s[j] != '=' {
			j++
		}
		// An event handler's script, or a document of its own, can build
		// any URL. (The reason names no more of the text than that.) A
		// name that runs to the end of s may be cut short; the tag is then
		// open, so the decision is provisional.
		switch {
		case why != "":
		case j-attr >= 2 && strings.EqualFold(s[attr:attr+2], "on"):
			why = "tag not allowed: event handler"
		case strings.EqualFold(s[attr:j], "srcdoc"):
			why = "tag not allowed: srcdoc"
		}
		v := skipAttrSpace(s, j)
		switch {
		case v < 0:
			return end(j, none)
		case v >= len(s):
			return end(len(s), open)
		case s[v] != '=':
			continue // an attribute without a value
		}
		v = skipAttrSpace(s, v+1)
		switch {
		case v < 0:
			return end(j, none)
		case v >= len(s):
			return end(len(s), open)
		}
		if q := s[v]; q == '"' || q == '\'' {
			n := strings.IndexByte(s[v+1:], q)
			value := s[v+1:]
			if n >= 0 {
				value = value[:n]
			}
			if why == "" && strings.ContainsAny(value, "\n\r") {
				// An HTML block ends at a line's end (a blank line, the
				// end of its container, its end condition); what
				// follows is rendered as markdown, with quotes and '>'
				// escaped, so a browser still in the value reads the
				// rendered text and markup after it as this tag's
				// attributes, not what this scan sees.
				why = "tag not allowed: value over lines"
			}
			check(value)
			if n < 0 {
				return end(len(s), open)
			}
			j = v + n + 2
			continue
		}
		j = v
		for j < len(s) && !isTagSpace(s[j]) && s[j] != '>' {
			j++
		}
		check(s[v:j])
		if j >= len(s) {
			return end(len(s), open)
		}
	}
}

func dropTabsAndBreaks(r rune) rune {
	if r == '\t' || r == '\n' || r == '\r' {
		return -1
	}
	return r
}

func isTagSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' }

// skipAttrSpace skips a browser's white space (form feeds too) around an
// attribute's '=' from s[j], and block quote markers after a line break (see
// skipTagSpace). It returns -1 at a blank line.
func skipAttrSpace(s string, j int) int {
	if j = skipTagSpaceOr(s, j, false); j < 0 {
		return -1
	}
	return j
}

// skipTagSpace skips spaces and slashes between attributes from s[j]. At a
// blank line it returns minus its position.
//
// A '>' that only spaces and other '>' separate from a line break is skipped
// too: in a block quote it is a marker the renderer strips from the HTML
// block, so a browser reads the tag on ("> <img\n> src=…" is an img with a
// src). If it really ends the tag, the text after it is checked as attributes
// in vain, which only removes more.
func skipTagSpace(s string, j int) int { return skipTagSpaceOr(s, j, true) }

func skipTagSpaceOr(s string, j int, slash bool) int {
	lineStart := false
	for ; j < len(s); j++ {
		switch c := s[j]; {
		case c == '\n':
			if j+1 < len(s) && s[j+1] == '\n' {
				return -j
			}
			lineStart = true
		case isTagSpace(c) || slash && c == '/':
		case c == '>' && lineStart:
		default:
			return j
		}
	}
	return j
}
