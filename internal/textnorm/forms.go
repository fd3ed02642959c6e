package textnorm

import (
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"slices"
)

// Form names a way a value is written.
type Form uint8

// The forms searched for. Percent-encoding, JSON and \x escapes, spacing,
// separators, look-alike letters and case need no form of their own: the
// views decode and normalise them.
const (
	Plain    Form = iota
	Reversed      // the value's runes in reverse order
	Rot13         // ASCII letters rotated by 13
	Hex           // lower or upper case, with or without separators
	Base64        // standard or URL alphabet, padded or not, at any byte offset
	Base32        // standard alphabet, at any byte offset
	Query         // url.QueryEscape (a space as '+')
)

func (f Form) String() string {
	switch f {
	case Plain:
		return "plain"
	case Reversed:
		return "reversed"
	case Rot13:
		return "rot13"
	case Hex:
		return "hex"
	case Base64:
		return "base64"
	case Base32:
		return "base32"
	case Query:
		return "query"
	}
	return "unknown"
}

// Encoded is one encoded form of a value.
type Encoded struct {
	Form Form
	Text string
	// Interior reports that Text is the alignment-stable interior of an
	// encoding of the value inside longer data: the characters whose bits
	// come from the value's bytes alone, whatever precedes and follows it.
	Interior bool
}

// Encodings lists the forms of v that matchers search for: v itself,
// reversed, rot13, hex, its base64 (standard and URL alphabets) and base32
// encodings, the interiors of those encodings at every byte alignment (3 for
// base64, 5 for base32: so v is found inside base64("Bearer " + v) or at any
// offset of any encoded data), and its query escaping.
func Encodings(v string) []Encoded {
	b := []byte(v)
	out := []Encoded{
		{Form: Plain, Text: v},
		{Form: Reversed, Text: reverse(v)},
		{Form: Rot13, Text: rot13(v)},
		{Form: Hex, Text: hex.EncodeToString(b)},
		{Form: Query, Text: url.QueryEscape(v)},
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		out = append(out, Encoded{Form: Base64, Text: enc.EncodeToString(b)})
		for a := range 3 {
			out = append(out, Encoded{Form: Base64, Text: interior(b, a, 6, enc.EncodeToString), Interior: true})
		}
	}
	out = append(out, Encoded{Form: Base32, Text: base32.StdEncoding.EncodeToString(b)})
	for a := range 5 {
		out = append(out, Encoded{Form: Base32, Text: interior(b, a, 5, base32.StdEncoding.EncodeToString), Interior: true})
	}
	return out
}

// interior returns the characters of the encoding (bits per character) of
// b preceded by a bytes that depend on b alone: character j covers bits
// [bits*j, bits*j+bits) of the data, and b holds bits [8a, 8a+8len(b)).
func interior(b []byte, a, bits int, encode func([]byte) string) string {
	data := make([]byte, a+len(b)+bits) // trailing zero bytes: the last stable characters do not depend on them
	copy(data[a:], b)
	enc := encode(data)
	first := (8*a + bits - 1) / bits
	last := (8*(a+len(b)) - bits) / bits // inclusive
	if last < first {
		return ""
	}
	return enc[first : last+1]
}

func reverse(s string) string {
	r := []rune(s)
	slices.Reverse(r)
	return string(r)
}

func rot13(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z':
			b[i] = 'a' + (c-'a'+13)%26
		case 'A' <= c && c <= 'Z':
			b[i] = 'A' + (c-'A'+13)%26
		}
	}
	return string(b)
}
