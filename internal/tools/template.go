package tools

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

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
// error, not something to send as is.
func (v values) expand(s string, escape func(string) string) (string, error) {
	var firstErr error
	out := templatePattern.ReplaceAllStringFunc(s, func(m string) string {
		sub := templatePattern.FindStringSubmatch(m)
		val, err := v.lookup(sub[1], sub[2])
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

// expandURL fills a tool URL template. Values in the path are path-escaped,
// each placeholder staying inside its segment, and may not make a segment
// "." or ".."; values in the query are query-escaped. The scheme and host
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
	base, err := url.Parse(origin)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("%w: url must be an absolute http(s) URL", errTemplate)
	}

	rest, _, _ = strings.Cut(rest, "#")
	path, query, hasQuery := strings.Cut(rest, "?")
	segments := strings.Split(path, "/")
	for i, seg := range segments {
		expanded, err := v.expand(seg, url.PathEscape)
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
	if query, err = v.expand(query, url.QueryEscape); err != nil {
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
// LF or NUL, which would let a value add headers of its own.
func (v values) expandHeader(tmpl string) (string, error) {
	out, err := v.expand(tmpl, func(s string) string { return s })
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
	out, err := v.expand(tmpl, func(s string) string { return s })
	if err != nil {
		return "", err
	}
	if strings.Contains(out, "\x00") {
		return "", fmt.Errorf("%w: environment value holds NUL after expansion", errTemplate)
	}
	return out, nil
}
