package upstream

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/bulkhead-ai/bulkhead/internal/redact"
)

// maxErrorBody is how much of a non-2xx body is read to find its message.
const maxErrorBody = 64 << 10

// StatusMessage reads the start of a non-2xx response body and returns the
// message in it, or else the body itself, cleaned by Clean to at most limit
// bytes; when that leaves nothing, the status text.
func StatusMessage(resp *http.Response, limit int, red *redact.Redactor) string {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody)) // a partial body still has a message
	msg := message(data)
	if msg == "" {
		msg = strings.TrimSpace(string(data))
	}
	msg = Clean(msg, limit, red)
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return msg
}

// message finds the message in the error shapes OpenAI-compatible servers
// use: {"error":{"message":…}}, {"error":"…"} and {"message":…}.
func message(body []byte) string {
	var v struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
	}
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	if m := ErrorMessage(v.Error); m != "" {
		return m
	}
	return v.Message
}

// ErrorMessage returns the text of an "error" member, either an object with
// a "message" or a string; "" for anything else.
func ErrorMessage(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var obj struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &obj) == nil && obj.Message != "" {
		return obj.Message
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return ""
}

// Clean makes upstream text fit to show: it redacts the secrets red knows
// (the API key; red may be nil), replaces invalid UTF-8 and control
// characters, trims space and truncates to at most limit bytes on a rune
// boundary.
func Clean(s string, limit int, red *redact.Redactor) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = red.String(s)
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}
