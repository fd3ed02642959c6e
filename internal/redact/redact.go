// Package redact removes secret values from text before it goes anywhere a
// secret must not: the model, the client, logs and the audit trail. Each
// secret is searched for as is and in the encodings it is most often leaked
// in (base64, base64url, URL escaping, hex), and replaced by
// "[REDACTED:name]".
package redact

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"
)

// MinLen is the shortest secret value redacted. Shorter values would match
// ordinary text everywhere; such secrets are refused where they are set.
const MinLen = 8

// Secret is a named value to hide.
type Secret struct {
	Name  string
	Value string
}

// Redactor finds and replaces a fixed set of secrets. It is immutable and safe
// for concurrent use; build one per request from the secrets resolved for it.
type Redactor struct {
	patterns []pattern
	// byPrefix maps the first four bytes of each pattern to its indexes; filter
	// is a bitmap over a hash of those bytes, so most positions in a text cost
	// one load and one bit test.
	byPrefix map[uint32][]int
	filter   [1 << filterBits / 64]uint64
	maxLen   int
}

const filterBits = 16

type pattern struct {
	text        string
	replacement string
}

// New returns a Redactor for secrets. Values shorter than MinLen are skipped.
func New(secrets []Secret) *Redactor {
	r := &Redactor{byPrefix: map[uint32][]int{}}
	seen := map[string]bool{}
	for _, s := range secrets {
		if len(s.Value) < MinLen {
			continue
		}
		repl := "[REDACTED:" + s.Name + "]"
		for _, form := range forms(s.Value) {
			if seen[form] {
				continue
			}
			seen[form] = true
			r.patterns = append(r.patterns, pattern{text: form, replacement: repl})
		}
	}
	// Longest first, so that at one position the longest form wins.
	slices.SortStableFunc(r.patterns, func(a, b pattern) int { return len(b.text) - len(a.text) })
	for i, p := range r.patterns {
		k := prefix(p.text, 0)
		r.byPrefix[k] = append(r.byPrefix[k], i)
		h := hash(k)
		r.filter[h/64] |= 1 << (h % 64)
		r.maxLen = max(r.maxLen, len(p.text))
	}
	return r
}

// forms lists the encodings of v searched for.
func forms(v string) []string {
	b := []byte(v)
	return []string{
		v,
		base64.StdEncoding.EncodeToString(b),
		base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b),
		base64.RawURLEncoding.EncodeToString(b),
		url.QueryEscape(v),
		url.PathEscape(v),
		hex.EncodeToString(b),
		strings.ToUpper(hex.EncodeToString(b)),
	}
}

func prefix(s string, i int) uint32 { return binary.LittleEndian.Uint32([]byte(s[i : i+4])) }

func hash(k uint32) uint32 { return (k * 0x9E3779B1) >> (32 - filterBits) }

// Empty reports whether r has nothing to redact.
func (r *Redactor) Empty() bool { return r == nil || len(r.patterns) == 0 }

// String returns s with every secret replaced.
func (r *Redactor) String(s string) string {
	if r.Empty() {
		return s
	}
	out, _ := r.redact(s, len(s), true)
	return out
}

// redact replaces matches in s that start before limit and returns the
// rewritten text up to the end of the region it settled (at least limit, or
// past a match that crosses it) plus the length of s that region covers.
func (r *Redactor) redact(s string, limit int, final bool) (string, int) {
	var b strings.Builder
	done := 0
	for i := 0; i < limit && i+4 <= len(s); i++ {
		k := binary.LittleEndian.Uint32([]byte(s[i : i+4]))
		if h := hash(k); r.filter[h/64]&(1<<(h%64)) == 0 {
			continue
		}
		for _, pi := range r.byPrefix[k] {
			p := r.patterns[pi]
			if strings.HasPrefix(s[i:], p.text) {
				if b.Len() == 0 && done == 0 {
					b.Grow(len(s))
				}
				b.WriteString(s[done:i])
				b.WriteString(p.replacement)
				done = i + len(p.text)
				i = done - 1
				break
			}
		}
	}
	end := max(limit, done)
	if final {
		end = len(s)
	}
	if done == 0 {
		return s[:end], end
	}
	b.WriteString(s[done:end])
	return b.String(), end
}

// Stream redacts text that arrives in pieces, such as a streamed answer. A
// secret split across pieces is still caught: Stream holds back the shortest
// tail that could be the start of one. It is not safe for concurrent use.
type Stream struct {
	r       *Redactor
	pending string
}

// Stream returns a new streaming redactor.
func (r *Redactor) Stream() *Stream { return &Stream{r: r} }

// Write takes the next piece and returns the text that is now safe to emit,
// possibly empty.
func (s *Stream) Write(piece string) string {
	if s.r.Empty() {
		return piece
	}
	buf := s.pending + piece
	// A match starting at or after safe might still be incomplete.
	safe := len(buf) - (s.r.maxLen - 1)
	if safe <= 0 {
		s.pending = buf
		return ""
	}
	// Never cut inside a UTF-8 sequence: the piece becomes a JSON string.
	for safe > 0 && safe < len(buf) && !utf8.RuneStart(buf[safe]) {
		safe--
	}
	out, used := s.r.redact(buf, safe, false)
	s.pending = buf[used:]
	return out
}

// Flush returns whatever is held back, redacted. Call it at the end.
func (s *Stream) Flush() string {
	out := s.r.String(s.pending)
	s.pending = ""
	return out
}
