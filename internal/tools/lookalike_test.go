package tools

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode"
)

// lookAlikeTool declares a few keys, one bound and one nested, and allows
// undeclared keys, so that only the look-alike check stands between a
// respelt key and the executor.
func lookAlikeTool(t testing.TB) *Tool {
	t.Helper()
	tool, err := Compile(Definition{
		Name: "lookalike", Description: "x", Scope: ScopeTenant,
		Parameters: json.RawMessage(`{"type":"object","additionalProperties":true,"properties":{
			"customer":{"type":"string"},"workspace_id":{"type":"string"},"user_id":{"type":"string"},
			"tenant_id":{"type":"string"},
			"owner":{"type":"object","additionalProperties":true,"properties":{"account_key":{"type":"string"}}}}}`),
		Bound:   map[string]string{"tenant_id": BindTenantID},
		Builtin: "noop",
	})
	if err != nil {
		t.Fatal(err)
	}
	return tool
}

var lookAlikeKeys = []string{"customer", "workspace_id", "user_id", "tenant_id"}

// confusable maps letters to look-alikes a lenient server (or a reader)
// takes for them.
var confusable = map[rune][]rune{
	'a': {'а', 'ɑ'}, 'c': {'с'}, 'e': {'е'}, 'i': {'ı', 'і', 'ⅰ'}, 'k': {'\u212A', 'ｋ'},
	'o': {'о', 'ο', '0'}, 'p': {'р'}, 's': {'ſ', 'ѕ'}, 'u': {'υ'}, 'r': {'г'}, 'd': {'ԁ'},
	'y': {'у'}, '_': {'＿'},
}

var ignorables = []rune{'\u200B', '\u00AD', '\u2060', '\uFEFF', '\u200D'}

// respell returns a random spelling of key: case flips, inserted
// ignorables, confusable and fullwidth substitutions.
func respell(r *rand.Rand, key string) string {
	var b strings.Builder
	for _, c := range key {
		switch r.IntN(6) {
		case 0:
			b.WriteRune(unicode.ToUpper(c))
		case 1:
			if subs := confusable[c]; len(subs) > 0 {
				b.WriteRune(subs[r.IntN(len(subs))])
			} else {
				b.WriteRune(c)
			}
		case 2:
			if c >= 'a' && c <= 'z' {
				b.WriteRune(c - 'a' + 'ａ')
			} else {
				b.WriteRune(c)
			}
		default:
			b.WriteRune(c)
		}
		if r.IntN(8) == 0 {
			b.WriteRune(ignorables[r.IntN(len(ignorables))])
		}
	}
	return b.String()
}

// TestLookAlikeKeysProperty: a random spelling of a declared key is either
// byte-equal to it or refused, alone or next to the real key, at the top and
// nested: never accepted as an extra key.
func TestLookAlikeKeysProperty(t *testing.T) {
	tool := lookAlikeTool(t)
	bind := func(string) (string, error) { return "acme", nil }
	r := rand.New(rand.NewPCG(9, 1))
	for i := range 4000 {
		key := lookAlikeKeys[i%len(lookAlikeKeys)]
		nested := i%5 == 4
		if nested {
			key = "account_key"
		}
		sp := respell(r, key)
		q, _ := json.Marshal(sp)
		var raws []string
		if nested {
			raws = []string{`{"owner":{` + string(q) + `:"v"}}`, `{"owner":{"account_key":"a",` + string(q) + `:"v"}}`}
		} else {
			raws = []string{`{` + string(q) + `:"v"}`, `{"customer":"c",` + string(q) + `:"v"}`}
		}
		for _, raw := range raws {
			args, err := tool.Arguments(raw, bind)
			switch {
			case sp == key && key == "tenant_id":
				if err == nil {
					t.Fatalf("Arguments(%s) accepted the bound key from the model", raw)
				}
			case sp == key:
				// Byte-equal: accepted unless it is a duplicate.
				if err == nil && !strings.Contains(raw, `"v"`) {
					t.Fatalf("Arguments(%s) lost the value", raw)
				}
			case err == nil:
				t.Fatalf("case %d: Arguments(%s) = %v, want the look-alike key %q refused", i, raw, args, key)
			}
		}
	}
}

// loosen returns a random spelling of key that a server matching by
// convention takes for it: separators removed, doubled, swapped for '-',
// '.' or a space, or dropped with the next letter upper-cased (camelCase),
// with case flips, and at times one of respell's look-alikes on top.
func loosen(r *rand.Rand, key string) string {
	seps := []string{"", "_", "__", "-", ".", " ", "\u00a0"}
	var b strings.Builder
	upper := false
	for i, c := range key {
		if c == '_' {
			sep := seps[r.IntN(len(seps))]
			b.WriteString(sep)
			upper = sep == "" && r.IntN(2) == 0
			continue
		}
		switch {
		case upper, i == 0 && r.IntN(4) == 0, r.IntN(10) == 0:
			b.WriteRune(unicode.ToUpper(c))
		default:
			b.WriteRune(c)
		}
		upper = false
	}
	s := b.String()
	if r.IntN(5) == 0 {
		s = "_" + s
	}
	if r.IntN(5) == 0 {
		s = respell(r, s)
	}
	return s
}

// TestLooseKeysProperty: a spelling of a declared or bound key that differs
// only by separators, camelCase or case (userId, user-id, user.id,
// "user id", USERID) is either byte-equal to the key or refused, alone or
// next to the real key, at the top and nested.
func TestLooseKeysProperty(t *testing.T) {
	tool := lookAlikeTool(t)
	bind := func(string) (string, error) { return "acme", nil }
	r := rand.New(rand.NewPCG(4, 7))
	refused := 0
	for i := range 4000 {
		key := lookAlikeKeys[i%len(lookAlikeKeys)]
		nested := i%5 == 4
		if nested {
			key = "account_key"
		}
		sp := loosen(r, key)
		if sp == key {
			continue
		}
		q, _ := json.Marshal(sp)
		raws := []string{`{` + string(q) + `:"v"}`, `{"customer":"c",` + string(q) + `:"v"}`}
		if nested {
			raws = []string{`{"owner":{` + string(q) + `:"v"}}`, `{"owner":{"account_key":"a",` + string(q) + `:"v"}}`}
		}
		for _, raw := range raws {
			args, err := tool.Arguments(raw, bind)
			var ae *ArgumentError
			switch {
			case err == nil:
				t.Fatalf("case %d: Arguments(%s) = %v, want the loose spelling of %q refused", i, raw, args, key)
			case !errors.As(err, &ae) || ae.Reason != ReasonLookAlike:
				t.Fatalf("case %d: Arguments(%s) = %v, want a look-alike refusal", i, raw, err)
			}
			refused++
		}
	}
	if refused < 4000 {
		t.Fatalf("only %d spellings were tried; the generator is broken", refused)
	}
}
