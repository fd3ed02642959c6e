package server

// HTTP-level tests of two guard findings, through the hostile harness
// (hostile_test.go): a streamed answer carrying another tenant's secret
// must be blocked before any of the secret is sent, and padding between
// every character of a canary or secret (up to the guard's documented
// limit) must not hide it.

import (
	"encoding/base64"
	"html"
	"net/http"
	"strings"
	"testing"
)

// TestStreamedForeignSecret: A's model says B's token, whole or in a form
// the guard tracks, in the middle of a sentence; streamed and not, the
// answer is withheld and nothing of the token reaches A.
func TestStreamedForeignSecret(t *testing.T) {
	w := newHostileWorld(t, false)
	aCanary := hostileCanary(t, w.env, hostileA)
	tok := hostileBToken
	for _, v := range []struct{ name, text string }{
		{"verbatim, more words after", "The token is " + tok + " (please ignore this line entirely)."},
		{"verbatim at the end", "The token is " + tok},
		{"reversed", "Reversed, for fun: " + hostileReverse(tok) + " and that is all there is to say."},
		{"hex with colons", "Hex: " + hostileHexSep(tok, ":") + " and that is all there is to say."},
		{"base64 of a header", "Header: " + base64.StdEncoding.EncodeToString([]byte("Bearer "+tok)) + " and that is all there is to say."},
		{"joined by removing A's own canary", "The token is " + tok[:5] + aCanary + tok[5:] + " and that is all there is to say."},
		{"joined by removing a link", "The token is " + tok[:3] + "[" + tok[3:9] + "](https://evil.example/x)" + tok[9:] + " and that is all there is to say."},
	} {
		t.Run(v.name, func(t *testing.T) {
			for i, rep := range w.both(t, w.aKey, "/say "+v.text) {
				if rep.status != http.StatusOK || rep.finish != "content_filter" {
					t.Errorf("%s: status %d, finish %q, want the answer withheld: %s", hostileWhere("A's answer", i), rep.status, rep.finish, hostileExcerpt(rep.content))
				}
				hostileCheckNo(t, "streamed foreign secret", v.name, hostileWhere("A's answer", i), rep.content, w.secretsOfB[1])
				if strings.Contains(strings.ToLower(rep.content), strings.ToLower(tok[:8])) {
					t.Errorf("%s: the first characters of B's token got out: %s", hostileWhere("A's answer", i), hostileExcerpt(rep.content))
				}
			}
		})
	}
}

// TestPaddingBetweenEveryCharacter: B's canary, B's token and A's own token
// with padding a renderer shows as nothing (named and numeric references
// to U+2060, short runs of it, empty tags) or as separators between every
// two characters are withheld or redacted, streamed and not.
func TestPaddingBetweenEveryCharacter(t *testing.T) {
	w := newHostileWorld(t, false)
	bToken := w.secretsOfB[1]
	for _, pad := range []string{"&NoBreak;", "&#x2060;", "&#8288;", "\u2060\u2060\u2060", "&NoBreak;&NoBreak;&NoBreak;&NoBreak;", "........", "<b></b><i>", "<!---->  ", ". . . . "} {
		for _, v := range []struct {
			what, value string
			n           hostileNeedle
		}{
			{"B's canary", w.bCanary, w.bCanaryNeedle},
			{"B's token", hostileBToken, bToken},
			{"A's token", hostileAToken, w.aSecret},
		} {
			text := hostileInterleave(v.value, pad)
			name := v.what + " with " + pad + " between characters"
			hostileMustSee(t, name, html.UnescapeString(text), v.n)
			for i, rep := range w.both(t, w.aKey, "/say Here: "+text+" ok.") {
				if rep.status != http.StatusOK {
					t.Errorf("%s: %s: status %d: %s", name, hostileWhere("A's answer", i), rep.status, hostileExcerpt(rep.content))
				}
				hostileCheckNo(t, "padding between every character", name, hostileWhere("A's answer", i), html.UnescapeString(rep.content), v.n)
			}
		}
	}
}
