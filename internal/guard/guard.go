// Package guard is the last check on everything that leaves the runtime: an
// answer (streamed or not) or the arguments of an outgoing tool call. It
// assumes every other layer failed and looks for three kinds of leak, two of
// which change what is sent:
//
//   - Canaries. Each tenant has unique tokens planted in its system prompts,
//     stored as honey records and attached to every passage retrieved from
//     its stored records (package memory). Another tenant's canary anywhere
//     in the text blocks it, unless the request's own inputs carried it
//     (see Inputs: then it is no leak through the runtime, and blocking
//     would let its owner plant it to silence the receiver); the
//     tenant's own canary is removed (its system
//     prompt leaking to itself is not a cross-tenant leak). Canaries are
//     matched as a reader or a decoder would recover them (package
//     textnorm): in look-alike letters, fullwidth, any case, with zero-width
//     characters or soft hyphens inside, percent-, JSON- or \x-escaped,
//     as HTML character references or split by empty tags and comments,
//     spaced out, reversed, rot13'd, as hex with or without separators, and
//     as base64, base64url or base32 at any byte offset of longer encoded
//     data. Every form is computed once per canary set.
//   - Other tenants' secrets. Only a secret random enough that a guess of
//     it is infeasible is tracked: at least 20 bytes and two character
//     classes, not mostly words, and an estimated 80 bits that repeats and
//     words do not inflate, nor an encoding of predictable text (a JWT's
//     header and claims, base64 of a JSON key file's first members are
//     estimated as the text they decode to; a unit begins where its
//     information does). The guard keeps keyed hashes of each of its
//     forms whole (a value over 96 bytes: of each random-enough 96-byte
//     piece) and of their first 8 view bytes, never the secret, and blocks
//     a text holding a whole one of another tenant's; a stream blocks
//     before any letter or digit of it is sent (see Streaming). So a quote
//     of public or guessable text that a secret begins with (a PEM or JWT
//     header, a JWT's claims, a licence) never matches, and a guess confirms
//     nothing short of the whole value (see secrets.go). As for canaries,
//     one the request's own inputs carried passes (see Inputs). The
//     tenant's own secrets are the redactor's.
//   - Fingerprints, which never change what is sent. Text a tenant stores is
//     cut into shingles of k=8 words (lowercased, punctuation ignored),
//     hashed with a per-process key and winnowed with a window of w=5
//     shingles, so any shared run of w+k-1 = 12 or more words is found. A
//     text that left carrying such a run of text another tenant stored and
//     the receiver did not (a window whose winnowed fingerprint another
//     tenant owns, that the receiver never stored, and whose every shingle
//     that tenant stored) is reported to the operator by Run, after it was
//     sent. Shorter shared phrases are not reported; neither is text the
//     receiver stored too (boilerplate), nor a fingerprint more than
//     MaxOwners tenants own (common text is not a leak).
//   - Markdown and HTML links and images to hosts not on the tenant's
//     allow-list, the zero-click exfiltration path of an image whose URL
//     carries data in its query. They are removed: a link keeps its text, an
//     image becomes "[image removed]". They are read through JSON string
//     escapes too ("\u0021\u005B" is "![" to whoever decodes a JSON answer
//     or payload before rendering it); a removal leaves the other escapes as
//     they were and re-escapes what it writes, so JSON stays JSON.
//
// A check runs five passes over the text, each a small streaming filter:
//
//  1. canaries and secrets: another tenant's block, the tenant's own canary
//     is removed;
//  2. links and images: disallowed ones are removed;
//  3. canaries again: one formed by a removal in 1 or 2 blocks;
//  4. links and images again: one formed by a removal in 1 or 2 blocks;
//  5. fingerprints: the shingles of what passes are hashed as it passes and
//     queued, when the text ends, for the silent check.
//
// Passes 3 and 4 exist because removing text joins what was around it; they
// make the result fail closed without reasoning about every such seam.
//
// # Why fingerprints never block
//
// A verdict that depends on what another tenant stored is an oracle and a
// weapon. Tenant A's model says whatever A asks it to, so if a guessed
// sentence were withheld when tenant B stored it, A could confirm guesses
// about B's documents and prompts one answer at a time; and B could get A's
// answers withheld by storing a public text (a licence, a news story) that
// A's answers quote. So nothing A sees may depend on B's fingerprints: not
// the text, the finish reason, A's audit log, the headers, nor the time an
// answer takes. The fingerprint pass therefore only observes; the check
// runs on Run's goroutine, off the request's path, and its only output is
// the report Run hands the operator (never either tenant's audit log: a
// record in B's log would let B confirm guesses about A's answers).
// What blocks a real leak is a canary: a random token of 100 bits, planted
// in the tenant's system prompts and stored records, that no guess can
// produce, so its presence proves the text came from that tenant's data.
//
// # Why holding a stream for secrets is no oracle
//
// A streamed answer must not send a byte of another tenant's secret before
// it blocks, so the stream holds text where a secret may begin, and where
// it is cut is something the receiver sees. It is cut by three rules. Two
// are the same for everyone and in every state, whether or not any other
// tenant has a secret tracked (else the cut would show when the first one
// was stored): the last 7 letters and digits are always held (a window's
// beginning is not known before its 8th byte), and so are the 7 before
// text a pass may remove. The third holds from a place whose next
// 8 view bytes have the keyed hash (HMAC, per-process key) of the first 8
// bytes of a form of another tenant's tracked secret. To learn from it
// that a string begins another tenant's secret, a tenant must have its
// model write those 8 bytes whole: a tracked secret is random (at least
// 80 bits, see secrets.go), so that is a guess of 8 random characters of
// a case-folded view, about 2^40 tries, one answer each; a shorter
// beginning is never held, and nothing past the 8th byte changes the cut,
// so no guess confirms more than those 8 bytes. A window never begins in
// the encoding of predictable text (a JWT's header and claims, see
// secrets.go), so a cut does not show that some tenant stores a JWT; a
// secret whose first 8 bytes are public boilerplate that encodes no text
// (a PEM header) still tells a tenant, from a held cut, that some tenant
// stores such a value. The guard keeps only the
// hashes, never the bytes.
//
// # Streaming
//
// Each pass holds back only the tail of its input that more input could still
// change, and Stream's output is the concatenation of what the passes let
// through, so a streamed answer gets exactly the text and the verdict Check
// would give the whole answer (see Stream for the one difference: a block
// stops at the first reason found). What each pass holds back:
//
//   - canary passes: only text in which a match they would act on by
//     rewriting could still begin, or a window of another tenant's secret
//     could. In the first pass that is the text from the first position
//     whose next view bytes begin a form of one of the receiver's own
//     canaries, or a form every canary shares because it is fixed by the
//     public "bkc-" prefix (see publicPrefixes), plus an escape, character
//     reference, tag or UTF-8 sequence not complete yet. For secrets (see
//     secretHold), in every state: the last 7 letters and digits (in the
//     squeezed view),
//     the 7 before a place where a pass may remove text, and the text from
//     a place whose next 8 view bytes begin a window of another tenant's
//     secret (by a keyed hash) until the window is whole. Each window is
//     looked at as soon as its last byte arrives, so a secret blocks the
//     stream before any letter or digit of its form is sent. For prose that
//     is 7 to 14 letters and digits and the separators between them, never
//     a count of words. Other tenants' canaries never change what is held,
//     so where a stream is cut tells the receiver nothing about them; their
//     matches are found by the scanner, which keeps the text it needs, and
//     block the stream as soon as they are whole (canaryStage);
//   - link passes: from the start of a construct that is not closed yet
//     ("[", "![", "](", "<", or a last "!" or "]" that may begin one, in
//     the text read through JSON escapes), and a JSON escape not complete
//     yet. A
//     construct still open after 2 KiB is plain text if it has not reached
//     its URL, and blocks the text if it has: a URL that long cannot be
//     checked, and passing it as text would let any long enough URL through;
//   - the fingerprint pass: nothing. It keeps a copy of the last k-1 = 7
//     complete words and the word in progress, to hash the shingles the next
//     piece completes, and passes every byte on at once.
//
// The passes run one after the other, so a stream holds back their sum.
// Output is only cut at UTF-8 boundaries.
//
// # URLs
//
// In a markdown link, image, autolink or reference definition only an http or
// https URL whose host is allowed survives. Relative URLs, mailto:, data:,
// javascript: and anything malformed (backslashes, whitespace, control
// characters, or host characters other than [a-z0-9.-]) are removed: an
// answer has no use for them and each has been used to exfiltrate or to
// confuse a URL parser. In a raw HTML tag, whose attributes are read as
// leniently as a browser reads them, every attribute value that could name
// another origin (it contains ':', '//', '\' or '&') must be an allowed
// http(s) URL or the tag is removed (an img tag becomes "[image removed]");
// values that are plainly relative stay on the page's origin and are kept.
// script and style elements, event-handler (on*) attributes and srcdoc are
// removed whatever they hold: each runs or loads content without a URL to
// check. Bare URLs in prose are left alone: they are visible and fetched only on a
// click. Code spans and blocks are treated like any other text.
//
// # Limits
//
// A canary or secret is not found when more than 33 bytes that show
// nothing or only separators (punctuation, spaces, ignorable code points,
// character references to them, tags and comments) lie between two of its
// letters or digits in the text. Its own punctuation counts too, so
// padding of up to 16 bytes (textnorm.MaxPad) between every two
// characters is seen through when the value's punctuation comes one
// character at a time (a canary's '-', a token's '/'), up to 10 bytes
// when two come in a row. Runs of more than three invisible code points,
// or character references to them (&NoBreak;, &#x2060;), are removed from
// the answer first. It is not found either when it is encoded twice over
// or in an encoding not listed above (a translation, a spelling-out in
// words, base64 of its hex), or, for an encoded form inside longer data, by
// the one or two characters that mix its bits with its neighbours'. A secret of another tenant is found only if
// a whole form of it leaks (of a 96-byte piece of a longer one: 191
// consecutive bytes of it always hold one), and only if it is random enough
// to be tracked. Fingerprints
// ignore case, punctuation and zero-width characters but not paraphrase; a
// match is found after the text left and is only reported. A canary is only
// found when the leak carries it: a leak of a few sentences of a document,
// without the passage's reference, is reported, not stopped.
// Links and images are read through one level of JSON string escapes: a
// JSON document inside a JSON string of an answer ("\\u0021" there) is not
// unescaped twice (a tool argument's value is decoded once before it is
// checked, so one level down in arguments is covered).
package guard

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/textnorm"
)

// Reasons reported in a Verdict. Link reasons add the host or the kind of
// URL, e.g. "image from a host not allowed: evil.example".
const (
	ReasonForeignCanary = "canary of another tenant"
	ReasonForeignSecret = "secret of another tenant"
	ReasonOwnCanary     = "canary of this tenant removed"
	ReasonFormedCanary  = "canary formed by removing text"
	ReasonTooLong       = "link or image longer than 2048 bytes"
	ReasonFormedLink    = "link or image formed by removing text"
	ReasonNoTenant      = "no tenant"
	ReasonNoGuard       = "guard not configured"
	ReasonAfterFlush    = "write after flush"
)

const (
	// k words make a shingle; winnowing keeps the least of each w shingles.
	k, w = 8, 5
	// minWords is the shortest run of words always found.
	minWords = w + k - 1

	maxConstruct = 2048 // bytes a link or image may span
	maxReasons   = 16

	canaryPrefix      = "bkc-"
	canaryRandomChars = 20
	// canaryAlphabet is what NewCanary's random characters are drawn from:
	// lower-case base32.
	canaryAlphabet    = "abcdefghijklmnopqrstuvwxyz234567"
	canaryRandomBytes = 13 // 104 bits; base32 makes 21 characters of them

	imageRemoved = "[image removed]"
	linkRemoved  = "[link removed]"
)

// Guard holds every tenant's canaries and fingerprints in memory. It is safe
// for concurrent use. Its silent text check needs Run.
type Guard struct {
	seed maphash.Seed // keys fingerprints with a per-process secret

	keys *secretKeys // keys the hashes of secrets' tiles

	mu       sync.RWMutex
	canaries map[tenant.ID][]string
	secrets  map[tenant.ID]map[string][]secretTile
	// cset is immutable; it is dropped whenever canaries or secrets change
	// and rebuilt by the next Stream, so loading many tenants costs one
	// build.
	cset *canarySet
	// compiled caches each canary's patterns between builds of cset.
	compiled map[string]*textnorm.Compiled
	idx      index

	// The silent text check: texts that left, waiting for Run.
	checks                    chan textCheck
	running                   atomic.Bool
	checked, matches, dropped atomic.Uint64
}

// New returns an empty Guard.
func New() *Guard {
	random := make([]byte, 40)
	if _, err := rand.Read(random); err != nil {
		panic(fmt.Sprintf("guard: read random key: %v", err)) // crypto/rand does not fail on supported systems
	}
	return &Guard{
		seed:     maphash.MakeSeed(),
		keys:     newSecretKeys(random),
		canaries: map[tenant.ID][]string{},
		secrets:  map[tenant.ID]map[string][]secretTile{},
		compiled: map[string]*textnorm.Compiled{},
		idx:      newIndex(),
		checks:   make(chan textCheck, queueLen),
	}
}

// NewCanary returns a fresh canary token: "bkc-" and 20 random base32
// characters (100 bits). Callers plant it in the tenant's system prompt and
// honey records and pass it to SetCanaries.
func NewCanary() (string, error) {
	b := make([]byte, canaryRandomBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("guard: new canary: %w", err)
	}
	s := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)
	return canaryPrefix + strings.ToLower(s[:canaryRandomChars]), nil
}

// SetCanaries replaces the tenant's canaries. Values that are not a valid
// canary (see MinCanaryLen) are ignored: they would match ordinary text.
func (g *Guard) SetCanaries(id tenant.ID, canaries []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(canaries) == 0 {
		delete(g.canaries, id)
	} else {
		g.canaries[id] = slices.Clone(canaries)
	}
	g.cset = nil
}

// SetSecret records the tenant's secret name, to recognize its value in
// other tenants' answers, and reports whether it is tracked: only values
// random enough that a guess is infeasible are (see secrets.go for what and
// why). The guard keeps keyed hashes of the value's forms whole, never the
// value. A value that is not tracked forgets an earlier one of
// the same name.
func (g *Guard) SetSecret(id tenant.ID, name string, value []byte) bool {
	if id == "" {
		return false
	}
	var tiles []secretTile
	if tracked(value) {
		tiles = g.keys.tiles(value)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(tiles) == 0 {
		g.deleteSecretLocked(id, name)
		return false
	}
	if g.secrets[id] == nil {
		g.secrets[id] = map[string][]secretTile{}
	}
	g.secrets[id][name] = tiles
	g.cset = nil
	return true
}

// DeleteSecret forgets the tenant's secret name.
func (g *Guard) DeleteSecret(id tenant.ID, name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.deleteSecretLocked(id, name)
}

func (g *Guard) deleteSecretLocked(id tenant.ID, name string) {
	if _, ok := g.secrets[id][name]; !ok {
		return
	}
	delete(g.secrets[id], name)
	if len(g.secrets[id]) == 0 {
		delete(g.secrets, id)
	}
	g.cset = nil
}

// canarySet returns the current canary set, building it if a change
// dropped it.
func (g *Guard) canarySet() *canarySet {
	g.mu.RLock()
	cs := g.cset
	g.mu.RUnlock()
	if cs != nil {
		return cs
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cset == nil {
		g.cset = newCanarySet(g.canaries, newSecretSet(g.keys, g.secrets), g.compiled)
	}
	return g.cset
}

// AddText registers text the tenant stores (a document, a memory, a system
// prompt) as fingerprints it owns, so that Run reports it when it leaves for
// another tenant. Fingerprints are kept until RemoveTenant; a deleted
// document's text is therefore still recognized.
func (g *Guard) AddText(id tenant.ID, text string) {
	if id == "" {
		return
	}
	selected, all := fingerprints(g.seed, text)
	if len(all) == 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.idx.add(id, selected, all)
}

// RemoveTenant forgets the tenant's canaries and fingerprints (offboarding).
// It walks the whole index, so it costs time proportional to its size.
func (g *Guard) RemoveTenant(id tenant.ID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, c := g.canaries[id]
	_, sec := g.secrets[id]
	if c || sec {
		delete(g.canaries, id)
		delete(g.secrets, id)
		g.cset = nil
	}
	g.idx.remove(id)
}

// Verdict is the outcome of a check.
type Verdict struct {
	// Blocked reports that the text must not be sent. A blocked stream must
	// be stopped.
	Blocked bool
	// Reasons lists what was found (by a stream, so far), sorted, e.g.
	// "canary of another tenant", "link to a host not allowed:
	// evil.example". It names hosts, never
	// other content.
	Reasons []string
	// Text is what to send when not blocked (for a stream, this piece).
	Text string
	// Owners lists, sorted, the tenants whose canary or secret was found
	// (by a stream, so far): the victims of a blocked leak, for their own
	// audit logs. It never holds the receiving tenant.
	Owners []tenant.ID
	// Leaks says what of each owner's was found, sorted by owner and kind.
	Leaks []Leak
	// Carried says what of other tenants' was found that the request's own
	// inputs carry (see Inputs), sorted: it passed, and is for the
	// operator's log only. An owner's log must not hear of it, or a tenant
	// that planted its canary where another's model reads would learn each
	// time it was quoted.
	Carried []Leak
}

// LeakKind is what of another tenant's was found.
type LeakKind string

// The kinds of leak.
const (
	LeakCanary LeakKind = "canary"
	LeakSecret LeakKind = "secret"
)

// Leak is one kind of another tenant's data found in a text.
type Leak struct {
	Owner tenant.ID
	Kind  LeakKind
}

// leaks collects what a stream found of other tenants'.
type leaks struct{ list []Leak }

func (l *leaks) add(owner tenant.ID, kind LeakKind) {
	lk := Leak{Owner: owner, Kind: kind}
	cmp := func(a, b Leak) int {
		if a.Owner != b.Owner {
			return strings.Compare(string(a.Owner), string(b.Owner))
		}
		return strings.Compare(string(a.Kind), string(b.Kind))
	}
	if i, found := slices.BinarySearchFunc(l.list, lk, cmp); !found {
		l.list = slices.Insert(l.list, i, lk)
	}
}

// Check inspects text that is about to leave for tenant id: an answer or the
// arguments of a tool call. allowHosts is the tenant's allow-list for link
// and image hosts: exact hosts ("docs.example.com") or "*.example.com" for
// its subdomains (not example.com itself). A caller that cannot send the
// rewritten Text, such as a tool call, should refuse when Text differs from
// the input.
func (g *Guard) Check(id tenant.ID, text string, allowHosts []string) Verdict {
	return g.CheckFrom(id, text, allowHosts, nil)
}

// CheckFrom is Check for a text that answers a request whose own inputs
// carry in (see Inputs): what they carry passes, reported in
// Verdict.Carried.
func (g *Guard) CheckFrom(id tenant.ID, text string, allowHosts []string, in *Inputs) Verdict {
	s := g.StreamFrom(id, allowHosts, in)
	a, v := s.Write(text)
	if v.Blocked {
		return v
	}
	b, v := s.Flush()
	if v.Blocked {
		return v
	}
	v.Text = a + b
	return v
}

// stage is one pass over the text. write takes the next piece of input and
// returns the output it has settled; final means no input follows, so
// nothing may be held back. A non-empty blocked stops everything.
type stage interface {
	write(in string, final bool) (out, blocked string)
}

// Stream checks an answer that arrives in pieces. It is not safe for
// concurrent use.
//
// Over any split of a text into pieces, a stream that is not blocked emits
// exactly the Text of Check on the whole text and reports the same Reasons;
// a stream is blocked exactly when Check is, though it may stop at a
// different reason (it stops at the first one it finds). Canaries added while
// a stream runs are not seen by it. The text a stream lets through is queued
// for the silent check (see Run) when it is flushed, or in batches while it
// runs when it is long; a stream that is never flushed is checked only in
// the batches it completed.
type Stream struct {
	stages  []stage
	reasons reasons
	leaks   leaks
	carried leaks
	blocked bool
	flushed bool
}

// Stream returns a checker for an answer streamed to tenant id.
func (g *Guard) Stream(id tenant.ID, allowHosts []string) *Stream {
	return g.StreamFrom(id, allowHosts, nil)
}

// StreamFrom is Stream for an answer to a request whose own inputs carry in
// (see Inputs, CheckFrom).
func (g *Guard) StreamFrom(id tenant.ID, allowHosts []string, in *Inputs) *Stream {
	s := &Stream{}
	switch {
	case g == nil:
		s.block(ReasonNoGuard)
		return s
	case id == "":
		s.block(ReasonNoTenant)
		return s
	}
	cs := g.canarySet()
	hosts := newHostList(allowHosts)
	first := &canaryStage{set: cs, self: id, remove: true, r: &s.reasons, leaks: &s.leaks, inputs: in, carried: &s.carried}
	links := &linkStage{hosts: hosts, r: &s.reasons, lineStart: true}
	s.stages = []stage{
		first,
		links,
		&canaryStage{set: cs, self: id, r: &s.reasons, leaks: &s.leaks, inputs: in, carried: &s.carried,
			seams: func() bool { return first.removed || first.cutAhead || links.pending != "" || links.changed }},
		&linkStage{hosts: hosts, detect: true, r: &s.reasons, lineStart: true},
		&fingerprintTap{g: g, self: id},
	}
	return s
}

// Write takes the next piece of the answer and returns the text now safe to
// send, possibly empty. Once the verdict is Blocked the caller must stop the
// stream; later calls return nothing.
func (s *Stream) Write(piece string) (string, Verdict) {
	if s.flushed && !s.blocked {
		s.block(ReasonAfterFlush)
	}
	return s.run(piece, false)
}

// Flush returns the rest of the answer. Call it once, at the end.
func (s *Stream) Flush() (string, Verdict) {
	if s.flushed && !s.blocked {
		s.block(ReasonAfterFlush)
	}
	out, v := s.run("", true)
	s.flushed = true
	return out, v
}

func (s *Stream) run(text string, final bool) (string, Verdict) {
	if s.blocked {
		return "", s.verdict("")
	}
	for _, st := range s.stages {
		var blocked string
		text, blocked = st.write(text, final)
		if blocked != "" {
			s.block(blocked)
			return "", s.verdict("")
		}
	}
	return text, s.verdict(text)
}

func (s *Stream) block(reason string) {
	s.blocked = true
	s.reasons.force(reason)
}

func (s *Stream) verdict(text string) Verdict {
	v := Verdict{Blocked: s.blocked, Text: text, Reasons: slices.Clone(s.reasons.list), Leaks: slices.Clone(s.leaks.list),
		Carried: slices.Clone(s.carried.list)}
	for _, l := range v.Leaks {
		if len(v.Owners) == 0 || v.Owners[len(v.Owners)-1] != l.Owner {
			v.Owners = append(v.Owners, l.Owner)
		}
	}
	if v.Blocked {
		v.Text = ""
	}
	return v
}

// reasons collects distinct reasons in sorted order: the first maxReasons in
// that order, so the set does not depend on the order they were found in,
// and the one that blocked.
type reasons struct{ list []string }

func (r *reasons) add(s string) {
	r.force(s)
	if len(r.list) > maxReasons {
		r.list = r.list[:maxReasons]
	}
}

func (r *reasons) force(s string) {
	if i, found := slices.BinarySearch(r.list, s); !found {
		r.list = slices.Insert(r.list, i, s)
	}
}
