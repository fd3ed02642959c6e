package tools

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/textnorm"
)

func TestDecodeReasons(t *testing.T) {
	tool := lookAlikeTool(t)
	strict, err := Compile(Definition{
		Name: "strict", Scope: ScopeTenant, Builtin: "noop",
		Parameters: json.RawMessage(`{"type":"object",
			"$defs":{"who":{"type":"object","properties":{"user_id":{"type":"string"}}}},
			"properties":{"a":{"type":"string"},"who":{"$ref":"#/$defs/who"},
				"either":{"anyOf":[{"type":"object","properties":{"x":{"type":"number"}}},{"type":"object","properties":{"y":{"type":"number"}}}]},
				"tagged":{"type":"object","patternProperties":{"^tag_[a-z]+$":{"type":"string"}}},
				"closed":{"type":"object","additionalProperties":false,"properties":{"k":{"type":"string"}}},
				"any":{"description":"anything"}}}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	// Tools whose URLs fix query parameters; their schemas allow any extra
	// key, so only the reserved names stand in the way.
	queryTool := func(method string) *Tool {
		tool, err := Compile(Definition{
			Name: "q_" + method, Scope: ScopeTenant,
			Parameters: json.RawMessage(`{"type":"object","additionalProperties":true,"properties":{"customer":{"type":"string"}}}`),
			HTTP:       &HTTPSpec{Method: method, URL: "https://crm.example/lookup?scope=read&api%2Dversion=2&key={{secret.k}}#frag"},
		})
		if err != nil {
			t.Fatal(err)
		}
		return tool
	}
	get, post := queryTool("GET"), queryTool("POST")
	proto, err := Compile(Definition{
		Name: "proto", Scope: ScopeTenant, Builtin: "noop",
		Parameters: json.RawMessage(`{"type":"object","properties":{"constructor":{"type":"string"},"__proto__":{"type":"string"}}}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		tool *Tool
		raw  string
		want string // reason, "" for accepted
	}{
		// Keys a server maps onto a declared or bound key by convention.
		{"bound camelCase", tool, `{"tenantId":"x"}`, ReasonLookAlike},
		{"bound kebab-case", tool, `{"tenant-id":"x"}`, ReasonLookAlike},
		{"bound dotted", tool, `{"tenant.id":"x"}`, ReasonLookAlike},
		{"bound spaced", tool, `{"tenant id":"x"}`, ReasonLookAlike},
		{"bound run together", tool, `{"tenantid":"x"}`, ReasonLookAlike},
		{"bound run together, upper case", tool, `{"TENANTID":"x"}`, ReasonLookAlike},
		{"declared PascalCase next to real", tool, `{"customer":"a","Customer_":"b"}`, ReasonLookAlike},
		{"declared, no-break space", tool, `{"user id":"x"}`, ReasonLookAlike},
		{"nested camelCase", tool, `{"owner":{"accountKey":"b"}}`, ReasonLookAlike},
		{"two extras loosely alike", tool, `{"note_id":"a","noteId":"b"}`, ReasonLookAlike},
		{"extra not loosely alike", tool, `{"customer":"c","customers":"d"}`, ""},
		// Keys shadowing the URL's fixed query parameters, for any method.
		{"GET control", get, `{"customer":"c","note":"x"}`, ""},
		{"GET fixed name", get, `{"scope":"admin"}`, ReasonReserved},
		{"GET fixed name upper case", get, `{"SCOPE":"admin"}`, ReasonLookAlike},
		{"GET fixed name capitalised", get, `{"Scope":"admin"}`, ReasonLookAlike},
		{"GET fixed name, zero-width space", get, `{"scope​":"admin"}`, ReasonLookAlike},
		{"GET fixed name, long s", get, `{"ſcope":"admin"}`, ReasonLookAlike},
		{"GET escaped name", get, `{"api-version":"1"}`, ReasonReserved},
		{"GET escaped name, camelCase", get, `{"apiVersion":"1"}`, ReasonLookAlike},
		{"GET name of a templated value", get, `{"KEY":"x"}`, ReasonLookAlike},
		{"POST fixed name in the body", post, `{"scope":"admin"}`, ReasonReserved},
		{"POST fixed name, kebab", post, `{"s-cope":"admin"}`, ReasonLookAlike},
		// A server merging x into the record would read x.scope as scope.
		{"POST nested key named like a fixed parameter", post, `{"x":{"scope":"a"}}`, ReasonNested},
		{"declared", tool, `{"customer":"c"}`, ""},
		{"extra allowed", tool, `{"customer":"c","note":"n"}`, ""},
		{"bound", tool, `{"tenant_id":"x"}`, ReasonBound},
		{"bound upper case", tool, `{"TENANT_ID":"x"}`, ReasonLookAlike},
		{"look-alike next to real", tool, `{"customer":"a","cuſtomer":"b"}`, ReasonLookAlike},
		{"look-alike alone", tool, `{"wor\u212Aspace_id":"b"}`, ReasonLookAlike},
		{"two extras alike", tool, `{"note":"a","NOTE":"b"}`, ReasonLookAlike},
		{"nested look-alike", tool, `{"owner":{"account_Key":"b"}}`, ReasonLookAlike},
		{"nested extras alike", tool, `{"owner":{"x\u200b":1,"x":2}}`, ReasonLookAlike},
		{"duplicate", tool, `{"customer":"a","customer":"b"}`, ReasonDuplicate},
		{"duplicate nested", tool, `{"owner":{"q":1,"q":2}}`, ReasonDuplicate},
		{"invalid UTF-8", tool, "{\"customer\":\"\xc3\"}", ReasonSyntax},
		{"lone surrogate escape", tool, `{"customer":"\ud800"}`, ReasonSyntax},
		{"array", tool, `["customer"]`, ReasonSyntax},
		{"two values", tool, `{} {}`, ReasonSyntax},
		{"huge number", tool, `{"n":1e999}`, ReasonSyntax},
		{"deep", tool, `{"n":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, ReasonSyntax},
		{"undeclared", strict, `{"b":"x"}`, ReasonUndeclared},
		{"ref declared", strict, `{"who":{"user_id":"u"}}`, ""},
		{"ref look-alike", strict, `{"who":{"uſer_id":"u"}}`, ReasonLookAlike},
		{"ref undeclared", strict, `{"who":{"admin":true}}`, ReasonUndeclared},
		{"anyOf branch keys", strict, `{"either":{"x":1,"y":2}}`, ""},
		{"anyOf look-alike", strict, `{"either":{"X":1}}`, ReasonLookAlike},
		{"pattern key", strict, `{"tagged":{"tag_a":"x"}}`, ""},
		{"pattern miss", strict, `{"tagged":{"other":"x"}}`, ReasonUndeclared},
		{"additionalProperties false", strict, `{"closed":{"k":"x","j":"y"}}`, ReasonUndeclared},
		{"free value", strict, `{"any":{"whatever":{"deep":1}}}`, ""},
		{"free value, keys alike", strict, `{"any":{"deep":1,"DEEP":2}}`, ReasonLookAlike},
		// Nested copies of bound, fixed or top-level names: a server that
		// merges the nested object into the record reads them as those.
		{"nested bound name", tool, `{"owner":{"tenant_id":"b"}}`, ReasonNested},
		{"nested bound name, upper case", tool, `{"owner":{"TENANT_ID":"b"}}`, ReasonNested},
		{"nested bound name, camelCase", tool, `{"owner":{"tenantId":"b"}}`, ReasonNested},
		{"nested bound name in an array", tool, `{"owner":{"list":[{"tenant-id":"b"}]}}`, ReasonNested},
		{"nested top-level name", tool, `{"owner":{"customer":"vip"}}`, ReasonNested},
		{"nested top-level name in a free value", strict, `{"any":{"deep":{"A":"x"}}}`, ReasonNested},
		{"nested name declared there", strict, `{"who":{"user_id":"u"}}`, ""},
		{"nested other name", tool, `{"owner":{"colour":"red"}}`, ""},
		// Control characters: a C-string reader cuts "tenant_id\0" to tenant_id.
		{"NUL in key", tool, `{"tenant_id\u0000":"b"}`, ReasonControl},
		{"NUL first", tool, `{"\u0000x":"b"}`, ReasonControl},
		{"DEL in nested key", tool, `{"owner":{"x\u007f":1}}`, ReasonControl},
		{"C1 control in key", tool, `{"note\u0085":1}`, ReasonControl},
		{"replacement character in key", tool, `{"note\ufffd":1}`, ReasonControl},
		{"control in a value is fine", tool, `{"customer":"a\u0000b"}`, ""},
		// Prototype pollution of JavaScript servers, at any depth.
		{"__proto__", tool, `{"__proto__":{"is_admin":true}}`, ReasonPrototype},
		{"__proto__ escaped", tool, `{"\u005f_proto__":{}}`, ReasonPrototype},
		{"__proto__ nested in an array", tool, `{"owner":{"l":[{"__proto__":{}}]}}`, ReasonPrototype},
		{"constructor", tool, `{"constructor":{"prototype":{}}}`, ReasonPrototype},
		{"prototype nested", tool, `{"owner":{"prototype":{}}}`, ReasonPrototype},
		{"prototype upper case", tool, `{"PROTOTYPE":1}`, ReasonPrototype},
		{"_proto_", tool, `{"_proto_":1}`, ReasonPrototype},
		{"proto is a word", tool, `{"proto":"tcp"}`, ""},
		{"declared constructor", proto, `{"constructor":"c"}`, ""},
		{"declared __proto__ still refused", proto, `{"__proto__":"c"}`, ReasonPrototype},
		// Names PHP, Rack and qs parse into another parameter.
		{"bound name with brackets", tool, `{"tenant_id[]":"b"}`, ReasonLookAlike},
		{"bound name with index", tool, `{"tenant_id[0]":"b"}`, ReasonLookAlike},
		{"bound name with hash key", tool, `{"tenant_id[x]":"b"}`, ReasonLookAlike},
		{"bound name, unmatched bracket", tool, `{"tenant[id":"b"}`, ReasonLookAlike},
		{"POST fixed name with brackets", post, `{"scope[]":"admin"}`, ReasonLookAlike},
		{"GET bracketed extra", get, `{"note[]":"x"}`, ReasonQueryName},
		{"GET hash extra", get, `{"filter[scope]":"x"}`, ReasonQueryName},
		{"GET dotted extra", get, `{"filter.scope":"x"}`, ReasonQueryName},
		{"GET spaced extra", get, `{"a b":"x"}`, ReasonQueryName},
		{"POST bracketed extra", post, `{"note[]":"x"}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.tool.Decode(tt.raw)
			var ae *ArgumentError
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Decode(%q) = %v, want it accepted", tt.raw, err)
			case tt.want == "":
				return
			case !errors.As(err, &ae):
				t.Fatalf("Decode(%q) = %v, want an ArgumentError %q", tt.raw, err, tt.want)
			case ae.Reason != tt.want:
				t.Fatalf("Decode(%q) reason = %q (%v), want %q", tt.raw, ae.Reason, err, tt.want)
			case !errors.Is(err, kind.Invalid):
				t.Fatalf("Decode(%q) = %v, want it to wrap kind.Invalid", tt.raw, err)
			}
			if tt.want == ReasonBound && !errors.Is(err, ErrBoundByModel) {
				t.Fatalf("Decode(%q) = %v, want ErrBoundByModel", tt.raw, err)
			}
		})
	}
}

// TestArgumentErrorsNameOnlyDeclaredKeys: a key the model made up appears
// in errors as a label, never as text.
func TestArgumentErrorsNameOnlyDeclaredKeys(t *testing.T) {
	tool := lookAlikeTool(t)
	const marker = "bkc-secretmarker"
	for _, raw := range []string{
		`{"customer":"a","` + marker + `":1,"` + strings.ToUpper(marker) + `":2}`,
		`{"owner":{"` + marker + `":1,"` + strings.ToUpper(marker) + `":2}}`,
		`{"` + marker + `":{"customer":1,"cuſtomer":2}}`,
	} {
		_, err := tool.Decode(raw)
		if err == nil {
			t.Fatalf("Decode(%s) accepted", raw)
		}
		if strings.Contains(strings.ToLower(err.Error()), marker) {
			t.Errorf("Decode(%s) = %q, which names the made-up key", raw, err)
		}
	}
	if got, again := Opaque("x"), Opaque("x"); got != again || !strings.HasPrefix(got, "h:") || got == Opaque("y") {
		t.Errorf("Opaque: %q, %q, %q; want stable, h: prefixed and distinct", got, again, Opaque("y"))
	}
}

func TestEncodeCanonical(t *testing.T) {
	tests := []struct{ raw, want string }{
		{`{"b":1,"a":2}`, `{"a":2,"b":1}`},
		{`{"s":"<&>\u2028 \/ \"q\" \\ \u0001\n"}`, `{"s":"<&>` + "\u2028" + ` / \"q\" \\ \u0001\n"}`},
		{`{"n":[1.0,1e2,-0,0.000001,1e-7,1e21,123456789012]}`, `{"n":[1,100,0,0.000001,1e-7,1e+21,123456789012]}`},
		{`{"z":{"y":[{"b":null,"a":true}]}}`, `{"z":{"y":[{"a":true,"b":null}]}}`},
		{`{"ü":1,"b":2,"Z":3}`, `{"Z":3,"b":2,"ü":1}`},
	}
	tool, err := Compile(Definition{Name: "free", Scope: ScopeTenant, Builtin: "noop",
		Parameters: json.RawMessage(`{"type":"object","additionalProperties":true}`)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		args, err := tool.Decode(tt.raw)
		if err != nil {
			t.Fatalf("Decode(%s): %v", tt.raw, err)
		}
		got, err := Encode(args)
		if err != nil || string(got) != tt.want {
			t.Errorf("Encode(Decode(%s)) = %s, %v; want %s", tt.raw, got, err, tt.want)
		}
	}
}

// FuzzArguments: whatever the model sends, accepted arguments hold only keys
// byte-equal to a declared key or unlike every declared key of their
// object, no two keys of one object alike, and their canonical encoding
// reads back to the same value and encodes again to the same bytes.
func FuzzArguments(f *testing.F) {
	for _, seed := range []string{
		`{"customer":"c"}`, `{"cuſtomer":"c"}`, `{"TENANT_ID":"x"}`, `{"tenant_ıd":"x"}`,
		`{"tenant_id\u200b":"x"}`, `{"ｔｅｎａｎｔ＿ｉｄ":"x"}`, `{"wor\u212aspace_id":"w"}`,
		`{"owner":{"account_key":"k","note":[1,2,{"a":null}]}}`, `{"customer":"a","customer":"b"}`,
		`{"note":"\u0041\/x","n":1.5e3}`, `{"owner":{"ACCOUNT_KEY":"k"}}`, "{\"x\":\"\xff\"}",
	} {
		f.Add(seed)
	}
	tool := lookAlikeTool(f)
	bind := func(string) (string, error) { return "acme", nil }
	f.Fuzz(func(t *testing.T, raw string) {
		model, err := tool.Decode(raw)
		if err != nil {
			return
		}
		checkKeys(t, raw, model, tool.keys)
		args, err := tool.Complete(model, bind)
		if err != nil {
			return
		}
		again, err := tool.Decode(string(args.JSON))
		if err == nil {
			t.Fatalf("Decode of the completed arguments %s accepted the bound key", args.JSON)
		}
		var back map[string]any
		if err := json.Unmarshal(args.JSON, &back); err != nil || !reflect.DeepEqual(back, args.Value) {
			t.Fatalf("canonical %s reads back as %v (%v), want %v", args.JSON, back, err, args.Value)
		}
		delete(back, "tenant_id")
		enc, _ := Encode(back)
		again, err = tool.Decode(string(enc))
		if err != nil {
			t.Fatalf("Decode(canonical %s): %v", enc, err)
		}
		if enc2, _ := Encode(again); !bytes.Equal(enc, enc2) {
			t.Fatalf("canonical encoding is not stable: %s then %s", enc, enc2)
		}
	})
}

func checkKeys(t *testing.T, raw string, v any, k *keys) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		skel := map[string]string{}
		for name, e := range v {
			s := textnorm.Skeleton(name)
			if other, ok := skel[s]; ok {
				t.Fatalf("Decode(%q) accepted keys %q and %q, which look alike", raw, name, other)
			}
			skel[s] = name
			if !k.free {
				if d, ok := k.skel[s]; ok && d != name {
					t.Fatalf("Decode(%q) accepted %q, a look-alike of the declared %q", raw, name, d)
				}
			}
			sub, err := k.key(name, "")
			if err != nil {
				t.Fatalf("Decode(%q) accepted %q, which the rules refuse: %v", raw, name, err)
			}
			checkKeys(t, raw, e, sub)
		}
	case []any:
		for i, e := range v {
			checkKeys(t, raw, e, k.item(i))
		}
	}
}
