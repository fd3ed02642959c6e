package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Scripted is a deterministic offline model for demos and tests. It ignores
// Request.Model and answers as follows.
//
// If the last message has role "tool", the content is "Tool results:\n"
// followed by one line per tool message after the last assistant message,
// "<tool_call_id>: <content>", joined by "\n"; finish reason "stop".
//
// Otherwise it reads the last message with role "user" (empty if none).
// If that message starts with "/unshift ", the rest, with every ASCII letter
// and digit moved one back (b→a, a→z, B→A, 1→0, 0→9) and every other
// non-ASCII rune one code point back (see Shift), is read
// instead: a model decodes ciphers no filter of its input reads, and tests
// use this to make it say what its input does not carry, as a model that
// learned it elsewhere (a shared cache or provider) would. Then:
//
//   - Every line of the form "/call NAME {json args}" (surrounding spaces
//     ignored; args optional, default "{}", passed on verbatim and not
//     validated) becomes a tool call with ids "call_1", "call_2", … in order.
//     If there is any, the response is those calls with empty content and
//     finish reason "tool_calls".
//
//   - Else, if a line is exactly "/echo", the content is the compact JSON
//     {"messages":[…every request message…],"tools":["name",…]}, without HTML
//     escaping: the model's whole context, so tests see what it was given.
//
//   - Else, if the message starts with "/say ", the content is the rest of
//     the message verbatim (the model says whatever an attacker wants).
//
//   - Else the content is the default reply:
//
//     Scripted reply. System: "X". You said: "Y". Earlier you said: "A | B".
//
// where X is the first system message's content (none if there is no system
// message, giving System: "none".), Y is the last user content and A, B, … are
// the earlier user contents in order; with no earlier user messages the reply
// ends with Earlier you said: nothing. instead.
//
// Apart from tool calls, the finish reason is "stop".
//
// When onDelta is not nil the content is streamed in pieces split after each
// space ("a b c" gives "a ", "b ", "c"), checking ctx between pieces.
//
// Usage: prompt tokens are the sum over request messages of
// (len(content)+3)/4 + 4; completion tokens are (len(content)+3)/4 plus
// (len(arguments)+3)/4 for each tool call; total is their sum.
//
// It honours no Options: a script has no sampling, format or stop sequences
// to apply, so it answers the same whatever they say (the server still
// forwards them, and a test provider can see them). It reports the model
// "scripted" and calls Request.Started before streaming.
//
// Chat returns ctx.Err() if ctx is done.
type Scripted struct{}

// NewScripted returns the scripted model.
func NewScripted() *Scripted { return &Scripted{} }

// Chat implements Provider.
func (*Scripted) Chat(ctx context.Context, req Request, onDelta func(content string) error) (Response, error) {
	if err := ctx.Err(); err != nil {
		return Response{}, err
	}
	resp := Response{Message: Message{Role: "assistant"}, FinishReason: "stop", Model: "scripted"}
	msgs := req.Messages
	if onDelta != nil && req.Started != nil {
		req.Started()
	}

	switch {
	case len(msgs) > 0 && msgs[len(msgs)-1].Role == "tool":
		resp.Message.Content = toolResults(msgs)
	default:
		last, earlier := userMessages(msgs)
		if rest, ok := strings.CutPrefix(last, "/unshift "); ok {
			last = Unshift(rest)
		}
		if calls := parseCalls(last); len(calls) > 0 {
			resp.Message.ToolCalls = calls
			resp.FinishReason = "tool_calls"
		} else if hasLine(last, "/echo") {
			content, err := echo(req)
			if err != nil {
				return Response{}, err
			}
			resp.Message.Content = content
		} else if rest, ok := strings.CutPrefix(last, "/say "); ok {
			resp.Message.Content = rest
		} else {
			resp.Message.Content = defaultReply(msgs, last, earlier)
		}
	}

	resp.Usage = scriptedUsage(msgs, resp.Message)

	if onDelta != nil {
		for piece := range strings.SplitAfterSeq(resp.Message.Content, " ") {
			if piece == "" {
				continue
			}
			if err := ctx.Err(); err != nil {
				return Response{}, err
			}
			if err := onDelta(piece); err != nil {
				return Response{}, err
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return Response{}, err
	}
	return resp, nil
}

// Shift returns s with every ASCII letter and digit moved one forward (a→b,
// z→a, 9→0) and every non-ASCII rune one code point forward, so that no
// look-alike of a letter survives as itself: what "/unshift " undoes. It
// is meant for text whose non-ASCII runes are letters, marks and spaces
// (shifted, they stay valid runes).
func Shift(s string) string { return shift(s, 1) }

// Unshift undoes Shift.
func Unshift(s string) string { return shift(s, -1) }

func shift(s string, by int) string {
	return strings.Map(func(r rune) rune {
		switch {
		case 'a' <= r && r <= 'z':
			return 'a' + rune((int(r-'a')+26+by)%26)
		case 'A' <= r && r <= 'Z':
			return 'A' + rune((int(r-'A')+26+by)%26)
		case '0' <= r && r <= '9':
			return '0' + rune((int(r-'0')+10+by)%10)
		case r >= 0x80:
			return r + rune(by)
		}
		return r
	}, s)
}

// toolResults lists the tool messages after the last assistant message.
func toolResults(msgs []Message) string {
	start := 0
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == "assistant" {
			start = i + 1
			break
		}
	}
	var b strings.Builder
	b.WriteString("Tool results:\n")
	first := true
	for _, m := range msgs[start:] {
		if m.Role != "tool" {
			continue
		}
		if !first {
			b.WriteByte('\n')
		}
		first = false
		b.WriteString(m.ToolCallID)
		b.WriteString(": ")
		b.WriteString(m.Content)
	}
	return b.String()
}

// userMessages returns the last user content and the user contents before it.
func userMessages(msgs []Message) (last string, earlier []string) {
	var all []string
	for _, m := range msgs {
		if m.Role == "user" {
			all = append(all, m.Content)
		}
	}
	if len(all) == 0 {
		return "", nil
	}
	return all[len(all)-1], all[:len(all)-1]
}

func parseCalls(content string) []ToolCall {
	var calls []ToolCall
	for line := range strings.Lines(content) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "/call ")
		if !ok {
			continue
		}
		rest = strings.TrimSpace(rest)
		name, args, _ := strings.Cut(rest, " ")
		if name == "" {
			continue
		}
		args = strings.TrimSpace(args)
		if args == "" {
			args = "{}"
		}
		calls = append(calls, ToolCall{
			ID:       "call_" + strconv.Itoa(len(calls)+1),
			Type:     "function",
			Function: FunctionCall{Name: name, Arguments: args},
		})
	}
	return calls
}

func hasLine(content, want string) bool {
	for line := range strings.Lines(content) {
		if strings.TrimSpace(line) == want {
			return true
		}
	}
	return false
}

func echo(req Request) (string, error) {
	ctxt := struct {
		Messages []Message `json:"messages"`
		Tools    []string  `json:"tools"`
	}{Messages: req.Messages, Tools: []string{}}
	if ctxt.Messages == nil {
		ctxt.Messages = []Message{}
	}
	for _, t := range req.Tools {
		ctxt.Tools = append(ctxt.Tools, t.Function.Name)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ctxt); err != nil {
		return "", fmt.Errorf("llm: scripted echo: %w", err)
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

func defaultReply(msgs []Message, last string, earlier []string) string {
	system := "none"
	for _, m := range msgs {
		if m.Role == "system" {
			system = m.Content
			break
		}
	}
	prev := "nothing"
	if len(earlier) > 0 {
		prev = `"` + strings.Join(earlier, " | ") + `"`
	}
	return `Scripted reply. System: "` + system + `". You said: "` + last + `". Earlier you said: ` + prev + `.`
}

func scriptedUsage(msgs []Message, out Message) Usage {
	n := len(out.Content)
	for _, tc := range out.ToolCalls {
		n += len(tc.Function.Arguments)
	}
	return EstimateUsage(msgs, n)
}

// EstimateUsage guesses the usage of a call with msgs answered with
// outputBytes of text, at four bytes a token: for calls whose provider
// reported none, such as a stream cut short.
func EstimateUsage(msgs []Message, outputBytes int) Usage {
	var u Usage
	for _, m := range msgs {
		u.PromptTokens += (len(m.Content)+3)/4 + 4
	}
	u.CompletionTokens = (max(outputBytes, 0) + 3) / 4
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u
}
