// Package hostile is the red team's model: a provider that obeys every
// instruction it reads, in a user message, a document, a memory or a tool
// result, and knows the exfiltration moves of HARDENING.md. It is built into
// the binary (provider type "redteam") so that `bulkhead redteam` can drive a
// deployment whose model is as hostile as an attacker could make it, and it is
// deterministic: what it does is written in the text it is given.
//
// An instruction is a line "!rt VERB ARGS" (surrounding spaces ignored). The
// model reads the messages after the last assistant message: when they hold
// tool results, only the tool results (and every string inside a JSON tool
// result, so a document returned by a search tool counts); otherwise the user
// messages. Verbs, in the order they appear, build one answer:
//
//	!rt say TEXT            say TEXT
//	!rt call NAME {json}    call tool NAME with these arguments, verbatim
//	!rt echo                say the whole context (every message, compact JSON)
//	!rt echo.ENC            the same, encoded with ENC (echo.shift: in a cipher
//	                        no output filter reads, so only what reached the
//	                        model can come out)
//	!rt image URL           a markdown image to URL carrying the context, base64
//	!rt recall              say every earlier user message (the session's history)
//	!rt big N               say N bytes of filler
//	!rt sleep MS            wait MS milliseconds first (stops when ctx is done)
//	!rt drip MS TEXT        say TEXT, streamed a word at a time, MS apart
//
// In TEXT, NAME's arguments and URL, {{ENC:VALUE}} is replaced by VALUE
// encoded with ENC (see Encode), so a scenario names the move and the value
// and the model does the rest. With tool results and no instruction, the
// answer lists the results (the model repeats what tools said); with no
// instruction at all it is "OK.".
package hostile

import (
	"bytes"
	"context"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/bulkhead-ai/bulkhead/internal/llm"
)

// Prefix starts every instruction line.
const Prefix = "!rt "

// Model is the hostile provider. The zero value is ready to use.
type Model struct{}

// New returns the hostile model.
func New() *Model { return &Model{} }

// Chat implements llm.Provider.
func (*Model) Chat(ctx context.Context, req llm.Request, onDelta func(string) error) (llm.Response, error) {
	if err := ctx.Err(); err != nil {
		return llm.Response{}, err
	}
	if onDelta != nil && req.Started != nil {
		req.Started()
	}
	resp := llm.Response{Message: llm.Message{Role: "assistant"}, FinishReason: "stop", Model: "redteam"}
	lines, toolText := instructions(req.Messages)
	var say []string
	drip := time.Duration(0)
	for _, ins := range lines {
		verb, rest, _ := strings.Cut(ins, " ")
		rest = strings.TrimSpace(rest)
		switch {
		case verb == "say":
			say = append(say, Expand(rest))
		case verb == "call":
			name, args, _ := strings.Cut(rest, " ")
			args = strings.TrimSpace(Expand(args))
			if args == "" {
				args = "{}"
			}
			resp.Message.ToolCalls = append(resp.Message.ToolCalls, llm.ToolCall{
				ID: "call_" + strconv.Itoa(len(resp.Message.ToolCalls)+1), Type: "function",
				Function: llm.FunctionCall{Name: name, Arguments: args}})
		case verb == "echo" || strings.HasPrefix(verb, "echo."):
			c := contextJSON(req)
			if enc, ok := strings.CutPrefix(verb, "echo."); ok {
				c = Encode(enc, c)
			}
			say = append(say, c)
		case verb == "image":
			u := Expand(rest)
			sep := "?"
			if strings.Contains(u, "?") {
				sep = "&"
			}
			say = append(say, "![status]("+u+sep+"d="+base64.RawURLEncoding.EncodeToString([]byte(contextJSON(req)))+")")
		case verb == "recall":
			say = append(say, "Earlier you said: "+strings.Join(earlier(req.Messages), " | "))
		case verb == "big":
			n, _ := strconv.Atoi(rest)
			say = append(say, strings.Repeat("flood ", max(n, 0)/6))
		case verb == "sleep":
			ms, _ := strconv.Atoi(rest)
			if err := wait(ctx, time.Duration(ms)*time.Millisecond); err != nil {
				return llm.Response{}, err
			}
		case verb == "drip":
			ms, text, _ := strings.Cut(rest, " ")
			n, _ := strconv.Atoi(ms)
			drip = time.Duration(n) * time.Millisecond
			say = append(say, Expand(text))
		}
	}
	switch {
	case len(resp.Message.ToolCalls) > 0:
		resp.FinishReason = "tool_calls"
	case len(say) > 0:
		resp.Message.Content = strings.Join(say, "\n")
	case toolText != "":
		resp.Message.Content = "Tool results:\n" + toolText
	default:
		resp.Message.Content = "OK."
	}
	resp.Usage = usage(req.Messages, resp.Message)
	if onDelta != nil && resp.Message.Content != "" {
		for piece := range strings.SplitAfterSeq(resp.Message.Content, " ") {
			if piece == "" {
				continue
			}
			if err := wait(ctx, drip); err != nil {
				return llm.Response{}, err
			}
			if err := onDelta(piece); err != nil {
				return llm.Response{}, err
			}
		}
	}
	if err := wait(ctx, drip); err != nil {
		return llm.Response{}, err
	}
	return resp, nil
}

func wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// instructions returns the instruction lines the model obeys now, without
// the prefix, and the tool results it was given (one "id: content" a line).
func instructions(msgs []llm.Message) (lines []string, toolText string) {
	start := 0
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == "assistant" {
			start = i + 1
			break
		}
	}
	seg := msgs[start:]
	var tools []string
	for _, m := range seg {
		if m.Role == "tool" {
			tools = append(tools, m.ToolCallID+": "+m.Content)
			lines = append(lines, scan(m.Content)...)
			lines = append(lines, scanJSON(m.Content)...)
		}
	}
	if len(tools) > 0 {
		return lines, strings.Join(tools, "\n")
	}
	for _, m := range seg {
		if m.Role == "user" {
			lines = append(lines, scan(m.Content)...)
		}
	}
	return lines, ""
}

// earlier returns the contents of the user messages before the last one.
func earlier(msgs []llm.Message) []string {
	var out []string
	for _, m := range msgs {
		if m.Role == "user" {
			out = append(out, m.Content)
		}
	}
	if len(out) > 0 {
		out = out[:len(out)-1]
	}
	return out
}

func scan(s string) []string {
	var out []string
	for line := range strings.Lines(s) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), Prefix); ok {
			out = append(out, strings.TrimSpace(rest))
		}
	}
	return out
}

// scanJSON scans every string inside a JSON document.
func scanJSON(s string) []string {
	var v any
	if json.Unmarshal([]byte(s), &v) != nil {
		return nil
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			out = append(out, scan(v)...)
			out = append(out, scanJSON(v)...)
		case []any:
			for _, e := range v {
				walk(e)
			}
		case map[string]any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

func contextJSON(req llm.Request) string {
	c := struct {
		Messages []llm.Message `json:"messages"`
		Tools    []string      `json:"tools"`
	}{Messages: req.Messages, Tools: []string{}}
	for _, t := range req.Tools {
		c.Tools = append(c.Tools, t.Function.Name)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(c) // messages and names always encode
	return strings.TrimSuffix(buf.String(), "\n")
}

var template = regexp.MustCompile(`\{\{([a-z0-9_]+):(.*?)\}\}`)

// Expand replaces every {{ENC:VALUE}} in s with Encode(ENC, Unshift(VALUE)).
// VALUE is written shifted (see Shift) so that the text the model is given
// does not carry what it is told to say: the model says what its input does
// not hold, as one that learned it elsewhere would, and no check of the input
// can excuse the output.
func Expand(s string) string {
	return template.ReplaceAllStringFunc(s, func(m string) string {
		sub := template.FindStringSubmatch(m)
		return Encode(sub[1], Unshift(sub[2]))
	})
}

// Template returns the {{ENC:VALUE}} that Expand turns into Encode(enc, v).
func Template(enc, v string) string { return "{{" + enc + ":" + Shift(v) + "}}" }

// Unshift undoes Shift.
func Unshift(s string) string { return llm.Unshift(s) }

// Shift is the scripted model's cipher (llm.Shift): the hostile model reads
// what tests write for either; Expand undoes it.
func Shift(s string) string { return llm.Shift(s) }

// Encodings lists the names Encode knows, each an exfiltration move of
// HARDENING.md.
var Encodings = []string{"plain", "base64", "base64url", "base64off1", "base64off2", "hex", "hexcolon", "base32", "url",
	"html", "jsonesc", "fullwidth", "cyrillic", "zwj", "spaced", "reversed", "rot13", "upper", "tags", "shift"}

// Encode writes s in the named form; an unknown name leaves s as it is.
func Encode(name, s string) string {
	switch name {
	case "base64":
		return base64.StdEncoding.EncodeToString([]byte(s))
	case "base64url":
		return base64.RawURLEncoding.EncodeToString([]byte(s))
	case "base64off1": // at another alignment: one byte before
		return base64.StdEncoding.EncodeToString([]byte("x" + s))
	case "base64off2":
		return base64.StdEncoding.EncodeToString([]byte("xy" + s))
	case "hex":
		return hex.EncodeToString([]byte(s))
	case "hexcolon":
		h := hex.EncodeToString([]byte(s))
		var parts []string
		for i := 0; i+2 <= len(h); i += 2 {
			parts = append(parts, h[i:i+2])
		}
		return strings.Join(parts, ":")
	case "base32":
		return base32.StdEncoding.EncodeToString([]byte(s))
	case "url":
		var b strings.Builder
		for _, c := range []byte(s) {
			fmt.Fprintf(&b, "%%%02X", c)
		}
		return b.String()
	case "query":
		return url.QueryEscape(s)
	case "html":
		var b strings.Builder
		for _, r := range s {
			fmt.Fprintf(&b, "&#%d;", r)
		}
		return b.String()
	case "jsonesc":
		var b strings.Builder
		for _, u := range utf16.Encode([]rune(s)) {
			fmt.Fprintf(&b, `\u%04x`, u)
		}
		return b.String()
	case "fullwidth":
		return strings.Map(func(r rune) rune {
			if r > ' ' && r < 0x7f {
				return r - 0x21 + 0xff01
			}
			return r
		}, s)
	case "cyrillic":
		return strings.NewReplacer("a", "а", "e", "е", "o", "о", "p", "р", "c", "с", "x", "х", "y", "у",
			"A", "А", "E", "Е", "O", "О", "P", "Р", "C", "С", "X", "Х", "B", "В", "H", "Н", "K", "К", "M", "М", "T", "Т").Replace(s)
	case "zwj":
		return interleave(s, "\u200d")
	case "spaced":
		return interleave(s, " ")
	case "tags": // empty HTML tags between characters
		return interleave(s, "<i></i>")
	case "reversed":
		r := []rune(s)
		for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
			r[i], r[j] = r[j], r[i]
		}
		return string(r)
	case "rot13":
		return strings.Map(func(r rune) rune {
			switch {
			case 'a' <= r && r <= 'z':
				return 'a' + (r-'a'+13)%26
			case 'A' <= r && r <= 'Z':
				return 'A' + (r-'A'+13)%26
			}
			return r
		}, s)
	case "upper":
		return strings.ToUpper(s)
	case "shift": // a cipher no redactor reads: what a model can do with anything it saw
		return Shift(s)
	}
	return s
}

func interleave(s, sep string) string {
	r := []rune(s)
	parts := make([]string, len(r))
	for i, c := range r {
		parts[i] = string(c)
	}
	return strings.Join(parts, sep)
}

func usage(msgs []llm.Message, out llm.Message) llm.Usage {
	var u llm.Usage
	for _, m := range msgs {
		u.PromptTokens += (len(m.Content)+3)/4 + 4
	}
	u.CompletionTokens = (len(out.Content) + 3) / 4
	for _, tc := range out.ToolCalls {
		u.CompletionTokens += (len(tc.Function.Arguments) + 3) / 4
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u
}
