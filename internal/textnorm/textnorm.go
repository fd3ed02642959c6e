// Package textnorm gives text the form a reader sees, so that a matcher
// compares what a person (or a lenient parser) would take to be the same
// characters. The guard and the redactor match canaries, fingerprints and
// secrets on it, and the tool-call checks compare argument keys on it.
//
// The skeleton of a string is computed rune by rune:
//
//  1. default-ignorable code points (zero-width space and joiners, soft
//     hyphen, bidi controls, variation selectors, tags) are dropped, and so
//     are combining marks left after decomposition: an attacker can sprinkle
//     either between the letters of a token without changing how it reads;
//  2. compatibility decomposition (NFKD): fullwidth, circled, mathematical
//     and ligature forms become their plain letters, the Kelvin sign a K;
//  3. case folding (ſ, K, ı and their kin fold onto s, k, i);
//  4. the UTS #39 confusables mapping (Cyrillic а, Greek ο, digit 0 …) onto
//     one prototype, folded again; ASCII punctuation is left as it is.
//
// Working rune by rune keeps every output byte traceable to the input rune
// it came from (SkeletonMap), which the redactor needs to cut the original
// text. It differs from a whole-string NFKC only for sequences a matcher does
// not need (composition across runes), and the difference is the same on
// both sides of a comparison because both sides go through this function.
package textnorm

import (
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/mtibben/confusables"
	"golang.org/x/text/unicode/norm"
)

// asciiSkeleton is the skeleton of each ASCII byte. ASCII punctuation is
// its own skeleton: it is structure (of percent-encoding, JSON, markdown)
// that matchers read, and mapping '%' or '"' onto look-alikes would blur it.
var asciiSkeleton [utf8.RuneSelf]string

// asciiSqueezed is the squeezed skeleton of each ASCII byte (see Squeeze):
// its skeleton if that is a letter or digit, else "".
var asciiSqueezed [utf8.RuneSelf]string

// runeInfo is what the views need of one non-ASCII rune.
type runeInfo struct{ skel, squeezed string }

// cache holds the runeInfo of every non-ASCII rune seen so far.
var cache sync.Map // rune → *runeInfo

func init() {
	for b := range rune(utf8.RuneSelf) {
		if unicode.IsLetter(b) || unicode.IsDigit(b) || b == '|' {
			asciiSkeleton[b] = computeRune(b)
		} else {
			asciiSkeleton[b] = string(b)
		}
		asciiSqueezed[b] = squeezeSkel(asciiSkeleton[b])
	}
	initASCIIClass()
}

// squeezeSkel keeps the letters and digits of a skeleton.
func squeezeSkel(s string) string {
	keep := true
	for _, r := range s {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			keep = false
			break
		}
	}
	if keep {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Skeleton returns the skeleton of s (see the package comment). Invalid
// UTF-8 bytes map to U+FFFD's skeleton, which is itself.
func Skeleton(s string) string {
	i := firstChange(s)
	if i < 0 {
		return s
	}
	b := make([]byte, i, len(s))
	copy(b, s[:i])
	for i < len(s) {
		if c := s[i]; c < utf8.RuneSelf {
			b = append(b, asciiSkeleton[c]...)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		b = append(b, Rune(r)...)
		i += n
	}
	return string(b)
}

// firstChange returns the index of the first byte whose skeleton differs
// from itself, or -1 when s is its own skeleton (plain lowercase ASCII text
// without confusable characters).
func firstChange(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf || len(asciiSkeleton[c]) != 1 || asciiSkeleton[c][0] != c {
			return i
		}
	}
	return -1
}

// SkeletonMap returns the skeleton of s and, for each byte of it, the byte
// offset in s of the rune it came from; a final entry len(s) follows, so
// the input span of skeleton bytes [i, j) is [at[i], at[j]) extended to the
// end of the rune at at[j-1].
func SkeletonMap(s string) (skel string, at []int) {
	var b strings.Builder
	b.Grow(len(s))
	at = make([]int, 0, len(s)+1)
	for i, r := range s {
		k := Rune(r)
		b.WriteString(k)
		for range len(k) {
			at = append(at, i)
		}
	}
	return b.String(), append(at, len(s))
}

// Rune returns the skeleton of one rune: "" for an ignorable one.
func Rune(r rune) string {
	if 0 <= r && r < utf8.RuneSelf {
		return asciiSkeleton[r]
	}
	return info(r).skel
}

func info(r rune) *runeInfo {
	if v, ok := cache.Load(r); ok {
		return v.(*runeInfo)
	}
	s := computeRune(r)
	in := &runeInfo{skel: s, squeezed: squeezeSkel(s)}
	cache.Store(r, in)
	return in
}

// Ignorable reports whether r is dropped from skeletons: a default-ignorable
// code point or a combining mark.
func Ignorable(r rune) bool {
	return unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Me, r) ||
		unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r) ||
		unicode.Is(unicode.Variation_Selector, r) || r == 0x115F || r == 0x1160 || r == 0x3164 || r == 0xFFA0
}

func computeRune(r rune) string {
	if Ignorable(r) {
		return ""
	}
	var out strings.Builder
	// A compatibility decomposition to ASCII is what every folding reader
	// sees (ſ is s, ﬁ is fi); any other is not, and may lead away from the
	// letter the rune imitates (lunate sigma ϲ, which looks like c,
	// decomposes to final sigma ς, which folds to σ, whose prototype is o):
	// then the rune's own prototype comes first, as UTS #39 maps before it
	// decomposes.
	src := norm.NFKD.String(string(r))
	if !isASCII(src) {
		if p := confusables.Skeleton(string(r)); p != string(r) {
			src = norm.NFKD.String(p)
		}
	}
	for _, d := range src {
		if Ignorable(d) {
			continue
		}
		// The prototype of a capital can differ from its small letter's
		// (Cyrillic В is B, в is ʙ; but Latin I is l, i is i). A non-ASCII
		// capital is mapped as written first, so it meets the Latin capital
		// it imitates; everything else is folded first, so ASCII letters stay
		// case-insensitive.
		k := string(fold(d))
		if d >= utf8.RuneSelf && unicode.IsUpper(d) {
			k = foldString(confusables.Skeleton(string(d)))
		}
		for _, c := range confusables.Skeleton(k) {
			if !Ignorable(c) {
				out.WriteRune(fold(c))
			}
		}
	}
	return out.String()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func foldString(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(fold(r))
	}
	return b.String()
}

// fold maps r to the smallest-case form of its simple case-folding orbit
// that is lowercase, so K (Kelvin), k and K all give k, ſ and S give s.
func fold(r rune) rune {
	return unicode.ToLower(unicode.ToUpper(r))
}
