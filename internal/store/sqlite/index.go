package sqlite

import "strings"

// The full-text indexes are blind (see package seal): FTS5 indexes each
// chunk's or memory's seal.Blinder.Document, and queries match its tokens.

// match returns the FTS5 MATCH expression for the query tokens of
// seal.Blinder.Query: each quoted, joined by OR. Tokens are a letter and hex
// digits, so no query syntax can get in. It returns "" for no tokens; such a
// query matches nothing.
func match(tokens []string) string {
	var q strings.Builder
	for i, tok := range tokens {
		if i > 0 {
			q.WriteString(" OR ")
		}
		q.WriteByte('"')
		q.WriteString(tok)
		q.WriteByte('"')
	}
	return q.String()
}
