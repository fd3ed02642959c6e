package tools

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/jsonschema-go/jsonschema"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/layers"
	"github.com/bulkhead-ai/bulkhead/internal/textnorm"
)

// A tool call's arguments take one path: decoded once from the model's JSON
// (Decode), checked key by key against the declared schema, rewritten where
// the caller must (guard, redaction), completed with the bound parameters
// and validated (Complete), then encoded once, canonically. Policy, the
// guard and the executor all see that one value; the executor sends its
// canonical bytes. A second parser anywhere on the way (a raw-text check, a
// re-marshal, a server that folds keys) is where look-alike keys, escapes
// and duplicates used to slip through.

// Reasons an argument check refuses a call, for audit records.
const (
	ReasonLookAlike  = "look-alike key"
	ReasonDuplicate  = "duplicate key"
	ReasonUndeclared = "undeclared key"
	ReasonBound      = "model supplied a bound parameter"
	ReasonSyntax     = "not a JSON object"
	ReasonSchema     = "does not match the schema"
	// ReasonReserved: the key is a query parameter the tool's URL fixes.
	ReasonReserved = "argument named like a fixed query parameter"
	// ReasonControl: a key holds a control character or U+FFFD, which a
	// C-string reader cuts the key at (or a decoder makes up).
	ReasonControl = "control character in key"
	// ReasonPrototype: a key a JavaScript merge turns into prototype
	// pollution (__proto__, constructor, prototype), at any depth.
	ReasonPrototype = "prototype key"
	// ReasonNested: a nested key named like a bound, fixed or top-level
	// parameter, which a server merging nested objects into the record
	// would read as that parameter.
	ReasonNested = "nested key named like a parameter"
	// ReasonQueryName: an undeclared key of a tool whose arguments are
	// sent as a query string holds a character ('[', ']', '{', '}', '.',
	// space) that PHP, Rack or qs parse into another parameter's name.
	ReasonQueryName = "query key with structure characters"
	// ReasonPlaceholder: a bound or secret value would leave its URL path
	// segment or add a header parameter (see ErrPlaceholderValue).
	ReasonPlaceholder = "placeholder value would change the request"
)

// maxDepth bounds the nesting of arguments, as policy does.
const maxDepth = 32

// ArgumentError is a refused argument. Its text names only declared keys:
// keys the model made up appear as Opaque labels, so the error is safe to
// log and audit.
type ArgumentError struct {
	Reason string // one of the Reason constants
	// Path locates the key or value, as a JSON pointer of declared names,
	// Opaque labels and array indexes; "" for the whole arguments.
	Path string
	msg  string
	err  error
}

func (e *ArgumentError) Error() string {
	if e.Path == "" {
		return e.msg
	}
	return e.msg + " (at " + e.Path + ")"
}

// Unwrap gives the error kind (kind.Invalid) and, for a bound parameter,
// ErrBoundByModel.
func (e *ArgumentError) Unwrap() []error { return []error{kind.Invalid, e.err} }

func argError(reason, path string, err error, format string, args ...any) *ArgumentError {
	return &ArgumentError{Reason: reason, Path: path, err: err, msg: fmt.Sprintf(format, args...)}
}

// labelKey keys Opaque: random per process, so a label cannot be computed
// (or a guess about it confirmed) outside it.
var labelKey = func() []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}()

// Opaque labels a name the model made up (an unknown tool or an undeclared
// key) for logs and audit records: the model may have put a secret or
// another tenant's canary in it. Equal names get equal labels within a
// process.
func Opaque(name string) string {
	m := hmac.New(sha256.New, labelKey)
	m.Write([]byte(name))
	return "h:" + hex.EncodeToString(m.Sum(nil)[:8])
}

// keys is what a schema declares about the keys of an object, and of the
// values below it.
type keys struct {
	// free: the schema constrains nothing here (no type, properties or
	// reference); objects below hold any keys, as long as no two of one
	// object look alike.
	free  bool
	props map[string]*keys
	// skel maps the skeleton of each declared key to the key, and loose
	// its loose form (see looseKey).
	skel     map[string]string
	loose    map[string]string
	patterns []patternKeys
	// extra is the schema of undeclared keys; nil refuses them.
	extra       *keys
	items       *keys
	prefixItems []*keys
}

type patternKeys struct {
	re   *regexp.Regexp
	keys *keys
}

var freeKeys = &keys{free: true}

// keysOf derives the key rules from a schema. Subschemas of allOf, anyOf
// and oneOf add their keys: a key declared on any branch is declared.
// Local references ("#/$defs/x", "#/definitions/x") are followed; any other
// reference declares nothing, which refuses every key (fail closed).
func keysOf(s, root *jsonschema.Schema, memo map[*jsonschema.Schema]*keys) *keys {
	if s == nil {
		return freeKeys
	}
	if k, ok := memo[s]; ok {
		return k
	}
	k := &keys{}
	memo[s] = k
	constrained := s.Type != "" || len(s.Types) > 0 || s.Properties != nil || s.PatternProperties != nil ||
		s.AdditionalProperties != nil || s.Ref != "" || s.AllOf != nil || s.AnyOf != nil || s.OneOf != nil
	if !constrained {
		k.free = true
		k.items = freeKeys
		return k
	}
	k.props = map[string]*keys{}
	k.skel = map[string]string{}
	k.loose = map[string]string{}
	k.merge(s, root, memo, map[*jsonschema.Schema]bool{})
	return k
}

func (k *keys) merge(s, root *jsonschema.Schema, memo map[*jsonschema.Schema]*keys, merged map[*jsonschema.Schema]bool) {
	if merged[s] {
		return
	}
	merged[s] = true
	for name, sub := range s.Properties {
		if _, ok := k.props[name]; !ok {
			k.props[name] = keysOf(sub, root, memo)
		}
		k.skel[textnorm.Skeleton(name)] = name
		k.loose[looseKey(name)] = name
	}
	for pat, sub := range s.PatternProperties {
		if re, err := regexp.Compile(pat); err == nil {
			k.patterns = append(k.patterns, patternKeys{re, keysOf(sub, root, memo)})
		}
	}
	if a := s.AdditionalProperties; a != nil && !isFalse(a) && k.extra == nil {
		k.extra = keysOf(a, root, memo)
	}
	if s.Items != nil && k.items == nil {
		k.items = keysOf(s.Items, root, memo)
	}
	for i, sub := range s.PrefixItems {
		if i >= len(k.prefixItems) {
			k.prefixItems = append(k.prefixItems, keysOf(sub, root, memo))
		}
	}
	if ref := localRef(s.Ref, root); ref != nil {
		k.merge(ref, root, memo, merged)
	}
	for _, branches := range [][]*jsonschema.Schema{s.AllOf, s.AnyOf, s.OneOf} {
		for _, sub := range branches {
			if sub != nil {
				k.merge(sub, root, memo, merged)
			}
		}
	}
}

func isFalse(s *jsonschema.Schema) bool {
	return s.Not != nil && s.Not.Type == "" && len(s.Not.Types) == 0 && s.Not.Properties == nil && s.Not.AnyOf == nil
}

func localRef(ref string, root *jsonschema.Schema) *jsonschema.Schema {
	if name, ok := strings.CutPrefix(ref, "#/$defs/"); ok {
		return root.Defs[name]
	}
	if name, ok := strings.CutPrefix(ref, "#/definitions/"); ok {
		return root.Definitions[name]
	}
	if ref == "#" {
		return root
	}
	return nil
}

// key finds the rules for the value of key in an object governed by k, or
// refuses the key.
func (k *keys) key(name, path string) (*keys, error) {
	if k.free {
		return freeKeys, nil
	}
	if sub, ok := k.props[name]; ok {
		return sub, nil
	}
	declared, ok := k.skel[textnorm.Skeleton(name)]
	if !ok {
		declared, ok = k.loose[looseKey(name)]
	}
	if ok {
		return nil, argError(ReasonLookAlike, path, nil,
			"argument key %s is spelt like the declared key %q but is not the same bytes; use the declared spelling", Opaque(name), declared)
	}
	for _, p := range k.patterns {
		if p.re.MatchString(name) {
			return p.keys, nil
		}
	}
	if k.extra != nil {
		return k.extra, nil
	}
	return nil, argError(ReasonUndeclared, path, nil, "argument key %s is not declared by the tool", Opaque(name))
}

// looseKey is the form in which servers match keys by convention rather
// than by bytes: the skeleton (case, look-alikes, ignorables) without the
// separators that camelCase, kebab-case, dotted and spaced aliases differ
// by (user_id, userId, user-id, user.id, "user id" and USERID are one
// field to a Pydantic alias generator, a case-insensitive binder or PHP's
// name mangling). The name is first cut as PHP, Rack and qs parse a query
// name: "tenant_id[]", "tenant_id[0]" and "tenant_id[x]" are tenant_id, and
// an unmatched '[' reads as '_' ("tenant[id").
func looseKey(name string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r == '-' || r == '.' || unicode.IsSpace(r) {
			return -1
		}
		return r
	}, textnorm.Skeleton(frameworkName(name)))
}

// frameworkName is the parameter name PHP, Rack and qs file a query name
// under: the part before a '[' that a ']' closes, or the name with its first
// unmatched '[' read as '_'.
func frameworkName(name string) string {
	i := strings.IndexByte(name, '[')
	if i < 0 {
		return name
	}
	if i > 0 && strings.IndexByte(name[i:], ']') > 0 {
		return name[:i]
	}
	return name[:i] + "_" + name[i+1:]
}

// prototypeKeys are the names a JavaScript merge (Object.assign, lodash
// merge, $.extend) turns into prototype pollution, in skeleton form.
var prototypeKeys = map[string]string{
	textnorm.Skeleton("__proto__"):   "__proto__",
	textnorm.Skeleton("constructor"): "constructor",
	textnorm.Skeleton("prototype"):   "prototype",
}

// checkKeyText refuses a key of any object that no schema key legitimately
// holds: control characters (a C-string reader stops at NUL, so
// "tenant_id\x00x" reads as tenant_id), U+FFFD (what a decoder makes of
// invalid bytes), and prototype-pollution names by any spelling. A schema
// may declare constructor or prototype by their exact bytes; __proto__ is
// refused even then.
func checkKeyText(name, path string, declared bool) error {
	for _, r := range name {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return argError(ReasonControl, path, nil, "argument key %s holds a control character", Opaque(name))
		}
	}
	p, ok := prototypeKeys[textnorm.Skeleton(name)]
	if trimmed := strings.Trim(name, "_"); !ok && trimmed != name && textnorm.Skeleton(trimmed) == textnorm.Skeleton("proto") {
		p, ok = "__proto__", true // _proto_, __proto: no server's name, but one look-alike away
	}
	if ok && (p == "__proto__" || !declared || name != p) {
		return argError(ReasonPrototype, path, nil,
			"argument key %s is spelt like %q, which merges into a JavaScript prototype", Opaque(name), p)
	}
	return nil
}

// queryNameChars are the characters PHP, Rack and qs read structure into in
// a query name (arrays, hashes, dotted paths) or mangle ('.', ' ' → '_').
const queryNameChars = "[]{}. "

// checkQueryName refuses an undeclared top-level key of a tool that sends
// its arguments as a query string if a lenient parser would read structure
// into it: "filter[tenant_id]" or "tenant_id[]" reach tenant_id there.
func (t *Tool) checkQueryName(name, path string, declared bool) error {
	if declared || !t.queryArgs() || !strings.ContainsAny(name, queryNameChars) {
		return nil
	}
	return argError(ReasonQueryName, path, nil,
		"argument key %s holds one of %q, which query parsers read as another parameter; the tool sends its arguments as a query string", Opaque(name), queryNameChars)
}

// queryArgs reports whether the tool's arguments go out as a query string.
func (t *Tool) queryArgs() bool {
	if t.HTTP == nil {
		return false
	}
	m := strings.ToUpper(t.HTTP.Method)
	return m == "GET" || m == "DELETE"
}

// protectedNames are the names no nested object may hold by any spelling
// unless its schema declares the exact key there: a server that merges a
// nested object into the record (Object.assign(record, body.metadata),
// record.update(metadata)) would read it as the top-level parameter,
// bound, fixed by the URL, or checked by policy.
func (t *Tool) protectedNames() reservedNames {
	names := make([]string, 0, len(t.Bound)+len(t.keys.props)+len(t.reserved.exact))
	for n := range t.Bound {
		names = append(names, n)
	}
	for n := range t.keys.props {
		names = append(names, n)
	}
	for n := range t.reserved.exact {
		names = append(names, n)
	}
	return newReserved(names)
}

// checkNested refuses a key of a nested object that is, or is spelt like,
// a protected name, unless the schema declares it there.
func (p reservedNames) checkNested(name, path string, declared bool) error {
	if declared {
		return nil
	}
	n, ok := name, p.exact[name]
	if !ok {
		n, ok = p.skel[textnorm.Skeleton(name)]
	}
	if !ok {
		n, ok = p.loose[looseKey(name)]
	}
	if !ok {
		return nil
	}
	return argError(ReasonNested, path, nil,
		"nested argument key %s is spelt like the parameter %q, which a server merging objects would read as that parameter", Opaque(name), n)
}

// reservedNames is what a tool's URL fixes as query parameters: an
// argument may not reach them by any spelling a server would match, since
// frameworks merge query and body parameters and match names loosely.
//
// A client tool's reserved names are instead the parameters the runtime
// fills for the profile's server-side tools (runtime set): the model may
// not set them there either.
type reservedNames struct {
	exact       map[string]bool
	skel, loose map[string]string // form → the name
	runtime     bool
}

func newReserved(names []string) reservedNames {
	r := reservedNames{exact: map[string]bool{}, skel: map[string]string{}, loose: map[string]string{}}
	for _, n := range names {
		r.exact[n] = true
		r.skel[textnorm.Skeleton(n)] = n
		r.loose[looseKey(n)] = n
	}
	return r
}

// check refuses name if it is, or is spelt like, a reserved name.
func (r reservedNames) check(name, path string) error {
	if r.exact[name] && r.runtime && layers.Off("binding") { // redteamswitch builds only; see package layers
		return nil
	}
	if r.exact[name] && r.runtime {
		return argError(ReasonBound, path, ErrBoundByModel, "%s: %q", ErrBoundByModel, name)
	}
	if r.exact[name] {
		return argError(ReasonReserved, path, nil, "argument %q is a query parameter fixed by the tool's url", name)
	}
	n, ok := r.skel[textnorm.Skeleton(name)]
	if !ok {
		n, ok = r.loose[looseKey(name)]
	}
	if ok && r.runtime {
		return argError(ReasonLookAlike, path, nil,
			"argument key %s is spelt like the parameter %q the runtime fills", Opaque(name), n)
	}
	if ok {
		return argError(ReasonLookAlike, path, nil,
			"argument key %s is spelt like the query parameter %q fixed by the tool's url", Opaque(name), n)
	}
	return nil
}

func (k *keys) item(i int) *keys {
	switch {
	case i < len(k.prefixItems):
		return k.prefixItems[i]
	case k.items != nil:
		return k.items
	case k.free:
		return freeKeys
	}
	// An array the schema says nothing about: its objects declare no keys.
	return &keys{}
}

// declares reports whether name is a key k declares by its bytes.
func (k *keys) declares(name string) bool {
	_, ok := k.props[name]
	return ok
}

// label is how a key appears in a path: as it is when declared, else
// Opaque.
func (k *keys) label(name string) string {
	if k.declares(name) {
		return name
	}
	return Opaque(name)
}

// Decode parses the model's raw arguments: one JSON object, valid UTF-8, no
// key twice in one object, no key that looks like another of its object or
// like a declared key without being it, no undeclared key unless the schema
// allows them (additionalProperties), and no bound parameter. Numbers
// become float64. The result is the model's part of the arguments, to be
// checked and then completed with Complete.
func (t *Tool) Decode(raw string) (map[string]any, error) {
	if len(raw) > maxArguments {
		return nil, argError(ReasonSyntax, "", nil, "arguments larger than %d bytes", maxArguments)
	}
	if t.keys == nil {
		// Not from Compile: no rules to check against, so nothing passes.
		return nil, fmt.Errorf("%w: tool %q was not compiled", kind.Invalid, t.Name)
	}
	if strings.TrimSpace(raw) == "" {
		return map[string]any{}, nil
	}
	dec := jsontext.NewDecoder(strings.NewReader(raw))
	if dec.PeekKind() != '{' {
		return nil, argError(ReasonSyntax, "", nil, "arguments must be a JSON object")
	}
	d := decoder{t: t, protected: t.protectedNames()}
	v, err := d.value(dec, t.keys, "", 0, true)
	if err != nil {
		return nil, err
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return nil, argError(ReasonSyntax, "", nil, "arguments must be one JSON object")
	}
	return v.(map[string]any), nil
}

// decoder is one Decode call's state.
type decoder struct {
	t         *Tool
	protected reservedNames
}

func (d decoder) value(dec *jsontext.Decoder, k *keys, path string, depth int, top bool) (any, error) {
	t := d.t
	if depth > maxDepth {
		return nil, argError(ReasonSyntax, path, nil, "arguments nested deeper than %d levels", maxDepth)
	}
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, syntaxError(err, path)
	}
	switch tok.Kind() {
	case 'n':
		return nil, nil
	case 't', 'f':
		return tok.Bool(), nil
	case '"':
		return tok.String(), nil
	case '0':
		f, err := tok.Float()
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, argError(ReasonSyntax, path, nil, "number out of range")
		}
		if f == 0 {
			f = 0 // no negative zero: one spelling for one value
		}
		return f, nil
	case '[':
		out := []any{}
		for i := 0; dec.PeekKind() != ']'; i++ {
			v, err := d.value(dec, k.item(i), path+"/"+strconv.Itoa(i), depth+1, false)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		if _, err := dec.ReadToken(); err != nil {
			return nil, syntaxError(err, path)
		}
		return out, nil
	case '{':
		out := map[string]any{}
		// seen maps the loose form of every key of this object to the key,
		// so that two keys a server would fold into one are refused.
		var seen map[string]string
		for dec.PeekKind() != '}' {
			tok, err := dec.ReadToken()
			if err != nil {
				return nil, syntaxError(err, path)
			}
			name := tok.String()
			at := path + "/" + pointerEscape(k.label(name))
			declared := k.declares(name)
			if err := checkKeyText(name, at, declared); err != nil {
				return nil, err
			}
			if top {
				if err := t.checkQueryName(name, at, declared); err != nil {
					return nil, err
				}
			} else if err := d.protected.checkNested(name, at, declared); err != nil {
				return nil, err
			}
			if top {
				if _, ok := t.Bound[name]; ok && !layers.Off("binding") {
					return nil, argError(ReasonBound, at, ErrBoundByModel, "%s: %q", ErrBoundByModel, name)
				}
			}
			if top {
				if err := t.reserved.check(name, at); err != nil {
					return nil, err
				}
			}
			sub, err := k.key(name, at)
			if err != nil {
				return nil, err
			}
			if seen == nil {
				seen = map[string]string{}
			}
			// Two declared keys may share a loose form (user_id and
			// userid both declared): each is its own field then.
			s := looseKey(name)
			if other, ok := seen[s]; ok && !(k.declares(name) && k.declares(other)) {
				return nil, argError(ReasonLookAlike, at, nil, "two argument keys of one object are spelt alike")
			}
			seen[s] = name
			v, err := d.value(dec, sub, at, depth+1, false)
			if err != nil {
				return nil, err
			}
			out[name] = v
		}
		if _, err := dec.ReadToken(); err != nil {
			return nil, syntaxError(err, path)
		}
		return out, nil
	}
	return nil, argError(ReasonSyntax, path, nil, "arguments must be a JSON object")
}

// syntaxError describes a decoding failure without quoting the input.
func syntaxError(err error, path string) error {
	switch {
	case errors.Is(err, jsontext.ErrDuplicateName):
		return argError(ReasonDuplicate, path, nil, "an argument key appears twice in one object")
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return argError(ReasonSyntax, path, nil, "arguments are cut short")
	}
	var se *jsontext.SyntacticError
	if errors.As(err, &se) && strings.Contains(se.Error(), "UTF-8") {
		return argError(ReasonSyntax, path, nil, "arguments hold invalid UTF-8")
	}
	return argError(ReasonSyntax, path, nil, "arguments must be a JSON object")
}

func pointerEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// Args is a call's complete arguments: Value is what policy and the
// executor read, JSON its canonical encoding, the bytes sent.
type Args struct {
	Value map[string]any
	JSON  []byte
}

// Complete fills the bound parameters of the model's decoded arguments (from
// Decode, possibly rewritten since) with bind(source), validates the result
// against the schema and encodes it canonically. It takes ownership of
// model.
func (t *Tool) Complete(model map[string]any, bind func(source string) (string, error)) (Args, error) {
	args := model
	if args == nil {
		args = map[string]any{}
	}
	for param := range t.Bound {
		if _, ok := args[param]; ok && !layers.Off("binding") {
			return Args{}, argError(ReasonBound, "/"+pointerEscape(param), ErrBoundByModel, "%s: %q", ErrBoundByModel, param)
		}
	}
	for param, source := range t.Bound {
		if _, ok := args[param]; ok && layers.Off("binding") { // redteamswitch builds only: the model's value stays
			continue
		}
		v, err := bind(source)
		if err != nil {
			return Args{}, fmt.Errorf("fill bound parameter %q: %w", param, err)
		}
		args[param] = v
	}
	if err := t.schema.Validate(args); err != nil {
		return Args{}, &ArgumentError{Reason: ReasonSchema, err: err, msg: "arguments do not match the schema: " + err.Error()}
	}
	b, err := Encode(args)
	if err != nil {
		return Args{}, fmt.Errorf("%w: encode arguments: %v", kind.Invalid, err)
	}
	return Args{Value: args, JSON: b}, nil
}

// Declares reports whether name is a declared top-level parameter (which
// makes it safe to log as it is).
func (t *Tool) Declares(name string) bool {
	_, ok := t.keys.props[name]
	return ok
}

// keyLabel is how a top-level key appears in errors: quoted when declared,
// else Opaque.
func (t *Tool) keyLabel(name string) string {
	if t.Declares(name) {
		return strconv.Quote(name)
	}
	return Opaque(name)
}

// MapStrings calls fn on every string value in v, recursively, replacing the
// value with fn's result, and on every object key with key set (a key
// cannot be replaced: fn may refuse it). The first error stops the walk.
func MapStrings(v map[string]any, fn func(s string, key bool) (string, error)) error {
	for k, e := range v {
		if _, err := fn(k, true); err != nil {
			return err
		}
		ne, err := mapValue(e, fn)
		if err != nil {
			return err
		}
		v[k] = ne
	}
	return nil
}

func mapValue(v any, fn func(s string, key bool) (string, error)) (any, error) {
	switch v := v.(type) {
	case string:
		return fn(v, false)
	case []any:
		for i, e := range v {
			ne, err := mapValue(e, fn)
			if err != nil {
				return nil, err
			}
			v[i] = ne
		}
	case map[string]any:
		if err := MapStrings(v, fn); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// Encode writes a decoded JSON value canonically: object keys sorted by
// bytes, no insignificant space, strings escaped only where JSON requires
// (no HTML escaping), numbers in the shortest form that reads back the same
// float64.
func Encode(v any) ([]byte, error) {
	return appendValue(nil, v, 0)
}

func appendValue(b []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth+1 {
		return nil, fmt.Errorf("nested deeper than %d levels", maxDepth)
	}
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case string:
		return appendString(b, v), nil
	case float64:
		return appendFloat(b, v)
	case []any:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendValue(b, e, depth+1); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case map[string]any:
		names := make([]string, 0, len(v))
		for k := range v {
			names = append(names, k)
		}
		slices.Sort(names)
		b = append(b, '{')
		for i, k := range names {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			var err error
			if b, err = appendValue(b, v[k], depth+1); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	}
	return nil, fmt.Errorf("value of type %T is not JSON", v)
}

func appendString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, s[i:i+size]...)
			}
			i += size
			continue
		}
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		default:
			b = append(b, c)
		}
		i++
	}
	return append(b, '"')
}

// appendFloat formats f as encoding/json (and ECMAScript) do.
func appendFloat(b []byte, f float64) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, fmt.Errorf("number %v is not JSON", f)
	}
	if f == 0 {
		return append(b, '0'), nil
	}
	format := byte('f')
	if abs := math.Abs(f); abs < 1e-6 || abs >= 1e21 {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 → e-9, as encoding/json writes it.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}
