package tools

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"

	"github.com/bulkhead-ai/bulkhead/internal/secret"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// values are what placeholders expand to for one call: the tenant's secrets
// for {{secret.NAME}} and the bound parameters for {{bound.NAME}}.
type values struct {
	secrets map[tenant.SecretName]secret.Value
	bound   map[string]string
}

// errTemplate is wrapped by every expansion error. Its messages name
// placeholders, never their values.
var errTemplate = errors.New("template")

// ErrPlaceholderValue is wrapped by an expansion error that refuses a
// placeholder's value because it would change the request's structure (a
// path value leaving its segment, a header value adding a parameter). The
// value may come from the chat's user, so the call is refused, not the
// tool.
var ErrPlaceholderValue = errors.New(ReasonPlaceholder)

// lookup returns the value of the placeholder source.name. A missing or
// empty value is an error: a placeholder never expands to "".
func (v values) lookup(source, name string) (string, error) {
	var val string
	switch source {
	case "secret":
		val = v.secrets[tenant.SecretName(name)].Reveal() // the point of injection
	case "bound":
		val = v.bound[name]
	default:
		return "", fmt.Errorf("%w: placeholder {{%s.%s}}: only secret.NAME and bound.NAME exist", errTemplate, source, name)
	}
	if val == "" {
		return "", fmt.Errorf("%w: placeholder {{%s.%s}} has no value", errTemplate, source, name)
	}
	return val, nil
}

// expand replaces every placeholder in s with its value passed through
// escape. Text that looks like a placeholder but is not a valid one is an
// error, not something to send as is. check, if not nil, vets each value
// (by its placeholder's source) before it is escaped.
func (v values) expand(s string, escape func(string) string, check func(source, name, val string) error) (string, error) {
	var firstErr error
	out := templatePattern.ReplaceAllStringFunc(s, func(m string) string {
		sub := templatePattern.FindStringSubmatch(m)
		val, err := v.lookup(sub[1], sub[2])
		if err == nil && check != nil {
			err = check(sub[1], sub[2], val)
		}
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			return ""
		}
		return escape(val)
	})
	if firstErr != nil {
		return "", firstErr
	}
	if rest := templatePattern.ReplaceAllString(s, ""); strings.Contains(rest, "{{") || strings.Contains(rest, "}}") {
		return "", fmt.Errorf("%w: malformed placeholder", errTemplate)
	}
	return out, nil
}

// pathValueChars may not appear in a value filling a URL path placeholder:
// a server or proxy that decodes %2F, reads '\' as '/', resolves dot
// segments, cuts Tomcat's ";" parameters or decodes %3F before routing
// would otherwise let the value leave its segment (a bound user id
// "../../victim/u/bob" reaching another tenant's path). '%' is refused so
// that no number of decodings turns the value into one of them.
const pathValueChars = "/\\%;?#"

// checkPathValue refuses a path placeholder value that is not one opaque
// segment: one holding pathValueChars or a control character, or made of
// dots only.
func checkPathValue(source, name, val string) error {
	if strings.ContainsAny(val, pathValueChars) || strings.Trim(val, ".") == "" || strings.IndexFunc(val, unicode.IsControl) >= 0 {
		return fmt.Errorf("%w: %w: the value of {{%s.%s}} is not one url path segment (it holds one of %q, a control character, or only dots); pass such values in the query or body", errTemplate, ErrPlaceholderValue, source, name, pathValueChars)
	}
	return nil
}

// expandURL fills a tool URL template. Values in the path must each be one
// opaque segment (checkPathValue) and are path-escaped; values in the
// query are query-escaped. The scheme and host
// may hold no placeholder: the model never chooses where a call goes. The
// fragment, never sent, is dropped.
func (v values) expandURL(tmpl string) (*url.URL, error) {
	_, afterScheme, ok := strings.Cut(tmpl, "://")
	if !ok {
		return nil, fmt.Errorf("%w: url is not absolute", errTemplate)
	}
	end := len(tmpl) - len(afterScheme)
	if i := strings.IndexAny(afterScheme, "/?#"); i >= 0 {
		end += i
	} else {
		end = len(tmpl)
	}
	origin, rest := tmpl[:end], tmpl[end:]
	if strings.Contains(origin, "{{") || strings.Contains(origin, "}}") {
		return nil, fmt.Errorf("%w: placeholders may not appear in the scheme or host", errTemplate)
	}
	// The host is what the operator wrote: a percent-escape there would make
	// the host that is dialled differ from the host that was checked.
	if strings.Contains(origin, "%") {
		return nil, fmt.Errorf("%w: the url's host may not be percent-encoded", errTemplate)
	}
	base, err := url.Parse(origin)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("%w: url must be an absolute http(s) URL", errTemplate)
	}

	rest, _, _ = strings.Cut(rest, "#")
	path, query, hasQuery := strings.Cut(rest, "?")
	segments := strings.Split(path, "/")
	for i, seg := range segments {
		expanded, err := v.expand(seg, url.PathEscape, checkPathValue)
		if err != nil {
			return nil, err
		}
		if expanded != seg {
			if plain, err := url.PathUnescape(expanded); err != nil || plain == "." || plain == ".." {
				return nil, fmt.Errorf("%w: a placeholder in the url path may not make a segment %q", errTemplate, plain)
			}
		}
		segments[i] = expanded
	}
	if query, err = v.expand(query, url.QueryEscape, nil); err != nil {
		return nil, err
	}

	full := origin + strings.Join(segments, "/")
	if hasQuery {
		full += "?" + query
	}
	u, err := url.Parse(full)
	if err != nil {
		return nil, fmt.Errorf("%w: expanded url does not parse", errTemplate)
	}
	// Belt and braces: the expanded URL must still go where the template
	// said.
	if u.Scheme != base.Scheme || u.Host != base.Host || u.User != nil {
		return nil, fmt.Errorf("%w: expanded url changes the scheme or host", errTemplate)
	}
	return u, nil
}

// expandHeader fills a header value template. The result may not hold CR,
// LF or NUL, which would let a value add headers of its own. When the
// template has text besides one placeholder ("tenant={{bound.tenant_id}};
// uid={{bound.user_id}}", "Bearer {{secret.token}}"), a value may not hold
// the separators of structured headers (';', ',', '"'), which would let it
// add a parameter ("bob; tenant=victim"); a bound value may not hold '='
// either. A secret may: base64 credentials end in '=', and without a
// separator '=' starts no parameter.
func (v values) expandHeader(tmpl string) (string, error) {
	var check func(source, name, val string) error
	if whole := templatePattern.FindString(tmpl); whole != strings.TrimSpace(tmpl) {
		check = func(source, name, val string) error {
			seps := `;,"`
			if source == "bound" {
				seps += "="
			}
			if strings.ContainsAny(val, seps) {
				return fmt.Errorf("%w: %w: the value of {{%s.%s}} holds one of %q, which would add a parameter to the header", errTemplate, ErrPlaceholderValue, source, name, seps)
			}
			return nil
		}
	}
	out, err := v.expand(tmpl, func(s string) string { return s }, check)
	if err != nil {
		return "", err
	}
	if strings.ContainsAny(out, "\r\n\x00") {
		return "", fmt.Errorf("%w: header value holds CR, LF or NUL after expansion", errTemplate)
	}
	return out, nil
}

// expandEnv fills an environment variable template for a child process. The
// result may not hold NUL.
func (v values) expandEnv(tmpl string) (string, error) {
	out, err := v.expand(tmpl, func(s string) string { return s }, nil)
	if err != nil {
		return "", err
	}
	if strings.Contains(out, "\x00") {
		return "", fmt.Errorf("%w: environment value holds NUL after expansion", errTemplate)
	}
	return out, nil
}
