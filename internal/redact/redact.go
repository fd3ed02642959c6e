// Package redact removes secret values from text before it goes anywhere a
// secret must not: the model, the client, logs and the audit trail. Each
// secret is replaced by "[REDACTED:name]" wherever a reader or a lenient
// decoder would recover it:
//
//   - as it is, or in look-alike letters, fullwidth forms, any case, with
//     zero-width or soft-hyphen characters inside (the skeleton of package
//     textnorm);
//   - percent-encoded in full or in part, written with JSON escapes
//     (\u002B, \/) or \x escapes, spaced out or split by punctuation;
//   - reversed, rot13'd, hex (any case, with or without separators such as
//     ':', ' ', '-' or "\x"), base64 or base64url, base32, also inside
//     longer encoded data at any byte offset (base64("Bearer " + secret)),
//     found by the alignment-stable interior of each encoding.
//
// The cut is made in the original text: the bytes from the first to the
// last character of the form found (with an encoding's padding). A
// secret's encoded form inside longer data leaves the one or two characters
// of that data that mix its bits with its neighbours'. See textnorm.Matcher
// for the minimum lengths that keep false positives away: a secret shorter
// than 12 letters and digits is only found in its exact forms.
package redact

import (
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/bulkhead-ai/bulkhead/internal/textnorm"
)

// MinLen is the shortest secret value redacted. Shorter values would match
// ordinary text everywhere; such secrets are refused where they are set.
const MinLen = 8

// ErrUnredactable is wrapped by Check's error.
var ErrUnredactable = errors.New("secret value cannot be redacted")

// Check reports whether value can be redacted: it must have at least MinLen
// bytes, and the matcher must find it, which it does not when the value is
// mostly characters it reads as nothing (controls, zero-width characters,
// long runs of spaces). A secret the redactor cannot find would be injected
// and then echoed unredacted, so such values are refused where they are set.
func Check(value string) error {
	if len(value) < MinLen {
		return fmt.Errorf("%w: it must be at least %d bytes", ErrUnredactable, MinLen)
	}
	// The matcher alone: the literal stage finds any value byte for byte,
	// but not the forms a reader would still recognise.
	if r := build([]Secret{{Value: value}}); strings.Contains(r.apply(value, r.m.Find(value)), value) {
		return fmt.Errorf("%w: it has too few visible characters to be recognised", ErrUnredactable)
	}
	return nil
}

// Secret is a named value to hide.
type Secret struct {
	Name  string
	Value string
}

// Redactor finds and replaces a fixed set of secrets. It is immutable and safe
// for concurrent use; build one per request from the secrets resolved for it.
type Redactor struct {
	m            *textnorm.Matcher
	replacements []string // by value index
	literals     []literal
	maxLiteral   int // the longest literal's length in bytes
}

// literal is a form of a secret that is also searched for byte for byte,
// after the matcher, because the matcher's views can lose it: an escape
// begun just before a value ("%" + value, "\\" + value) decodes away its
// first characters, which a value of fewer than textnorm.MinSqueezed letters
// and digits (found in the exact view only) cannot spare, and a value
// holding '%', '\\' or a control character has forms that themselves begin
// or hold escapes. Literals are kept for those values only, so the common
// long alphanumeric secret costs nothing more.
type literal struct {
	text  string
	value int
}

// New returns a Redactor for secrets. Values shorter than MinLen are skipped.
//
// Every turn builds one, from the same few secrets, and computing every
// form of each is costly, so New keeps the Redactors of the last sets it was
// asked for (at most maxCached), found by a hash of the names and values
// keyed with a per-process secret, so that the cache's keys say nothing of
// the values. A set not asked for again is dropped when the cache fills.
func New(secrets []Secret) *Redactor {
	key := cacheKey(secrets)
	cache.Lock()
	r, ok := cache.m[key]
	cache.Unlock()
	if ok {
		return r
	}
	r = build(secrets)
	cache.Lock()
	if len(cache.m) >= maxCached {
		clear(cache.m)
	}
	cache.m[key] = r
	cache.Unlock()
	return r
}

const maxCached = 512

var cache = struct {
	sync.Mutex
	m map[[sha256.Size]byte]*Redactor
}{m: map[[sha256.Size]byte]*Redactor{}}

var cacheSalt = func() []byte {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return b
}()

func cacheKey(secrets []Secret) [sha256.Size]byte {
	h := sha256.New()
	h.Write(cacheSalt)
	var n [8]byte
	for _, s := range secrets {
		for _, f := range []string{s.Name, s.Value} {
			binary.LittleEndian.PutUint64(n[:], uint64(len(f)))
			h.Write(n[:])
			h.Write([]byte(f))
		}
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

func build(secrets []Secret) *Redactor {
	r := &Redactor{}
	var values []string
	for _, s := range secrets {
		if len(s.Value) < MinLen {
			continue
		}
		values = append(values, s.Value)
		r.replacements = append(r.replacements, "[REDACTED:"+s.Name+"]")
	}
	if len(values) > 0 {
		r.m = textnorm.NewMatcher(values, textnorm.Options{})
	}
	for i, v := range values {
		if !viewsCanLose(v) {
			continue
		}
		forms := []string{v}
		if letterDigits(v) >= textnorm.MinSqueezed {
			for _, e := range textnorm.Encodings(v) {
				if !e.Interior && e.Text != v {
					forms = append(forms, e.Text)
				}
			}
		}
		for _, f := range forms {
			r.literals = append(r.literals, literal{text: f, value: i})
			r.maxLiteral = max(r.maxLiteral, len(f))
		}
	}
	return r
}

// viewsCanLose reports whether the matcher's views can miss v's exact text
// (see literal).
func viewsCanLose(v string) bool {
	return letterDigits(v) < textnorm.MinSqueezed || strings.ContainsAny(v, `%\`) || strings.IndexFunc(v, unicode.IsControl) >= 0
}

func letterDigits(s string) int {
	n := 0
	for _, c := range s {
		if unicode.IsLetter(c) || unicode.IsDigit(c) {
			n++
		}
	}
	return n
}

// findLiterals returns every occurrence of r's literals in s, sorted by start.
func (r *Redactor) findLiterals(s string) []textnorm.Match {
	var ms []textnorm.Match
	for _, l := range r.literals {
		for from := 0; ; {
			i := strings.Index(s[from:], l.text)
			if i < 0 {
				break
			}
			ms = append(ms, textnorm.Match{Start: from + i, End: from + i + len(l.text), Value: l.value})
			from += i + 1
		}
	}
	slices.SortFunc(ms, func(a, b textnorm.Match) int { return cmp.Compare(a.Start, b.Start) })
	return ms
}

// Empty reports whether r has nothing to redact.
func (r *Redactor) Empty() bool { return r == nil || r.m.Empty() }

// String returns s with every secret replaced.
func (r *Redactor) String(s string) string {
	if r.Empty() {
		return s
	}
	s = r.apply(s, r.m.Find(s))
	if len(r.literals) > 0 {
		s = r.apply(s, r.findLiterals(s))
	}
	return s
}

// apply replaces the matches in s, sorted by start. Overlapping matches are
// cut as one, named for the first.
func (r *Redactor) apply(s string, ms []textnorm.Match) string {
	if len(ms) == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	done := 0
	for i := 0; i < len(ms); {
		start, end, name := ms[i].Start, ms[i].End, r.replacements[ms[i].Value]
		for i++; i < len(ms) && ms[i].Start < end; i++ {
			end = max(end, ms[i].End)
		}
		b.WriteString(s[done:start])
		b.WriteString(name)
		done = end
	}
	b.WriteString(s[done:])
	return b.String()
}

// Stream redacts text that arrives in pieces, such as a streamed answer. A
// secret split across pieces is still caught: Stream holds back the text
// behind the last view bytes a secret's longest form could still need (see
// textnorm.Scanner.Advance): about that many bytes of ordinary text, and at
// most textnorm's per-character bound times as many for text made of
// escapes and ignorable characters. It is not safe for concurrent use.
//
// With literals (see literal), the matcher's output goes through a second
// stage that holds back up to the longest literal's length less one byte
// more, so that a literal split across pieces is seen whole.
type Stream struct {
	r     *Redactor
	sc    *textnorm.Scanner
	carry string // the second stage's hold-back
}

// Stream returns a new streaming redactor.
func (r *Redactor) Stream() *Stream {
	s := &Stream{r: r}
	if !r.Empty() {
		s.sc = r.m.Scanner()
	}
	return s
}

// Write takes the next piece and returns the text that is now safe to emit,
// possibly empty. It never cuts inside a UTF-8 sequence.
func (s *Stream) Write(piece string) string {
	if s.sc == nil {
		return piece
	}
	seg, ms := s.sc.Advance(piece, false)
	return s.literals(s.r.apply(seg, ms), false)
}

// Flush returns whatever is held back, redacted. Call it at the end.
func (s *Stream) Flush() string {
	if s.sc == nil {
		return ""
	}
	seg, ms := s.sc.Advance("", true)
	return s.literals(s.r.apply(seg, ms), true)
}

// literals is the second stage: it redacts the literals in the text held
// back so far plus out, and returns all of it but a tail too short to hold
// a whole literal (all of it when final).
func (s *Stream) literals(out string, final bool) string {
	if len(s.r.literals) == 0 {
		return out
	}
	buf := s.carry + out
	ms := s.r.findLiterals(buf)
	cut := len(buf)
	if !final {
		cut = max(0, len(buf)-(s.r.maxLiteral-1))
		for cut > 0 && cut < len(buf) && !utf8.RuneStart(buf[cut]) {
			cut--
		}
		// A literal found whole is redacted now; one that would straddle
		// the cut waits for the next piece with the text after it.
		for moved := true; moved; {
			moved = false
			for _, m := range ms {
				if m.Start < cut && m.End > cut {
					cut, moved = m.Start, true
				}
			}
		}
	}
	var whole []textnorm.Match
	for _, m := range ms {
		if m.End <= cut {
			whole = append(whole, m)
		}
	}
	s.carry = buf[cut:]
	return s.r.apply(buf[:cut], whole)
}
