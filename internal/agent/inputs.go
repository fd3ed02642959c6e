package agent

import "github.com/bulkhead-ai/bulkhead/internal/llm"

// Which texts of a turn are its own inputs (see guard.Inputs): what another
// tenant's canary or secret found in them carries into the answer without
// being a leak of the runtime's.
//
// The client's messages of this turn are, whatever their role: the client
// wrote them all. So are the results of the tenant's external (HTTP, MCP)
// tools: the tenant chose those servers, and a page or ticket they return
// is public to it. From the session history, the earlier turns' user
// messages and tool results (of external tools or the client's own), and
// their final answers, which the guard passed. Never an input: the system
// prompt, and what builtin tools read from the tenant's storage (a canary
// there is exactly the leak the guard exists for), in this turn or in the
// history.

// turnInputs returns the inputs among history (the stored messages) and the
// client's messages of this turn.
func (a *Agent) turnInputs(history, client []llm.Message) []string {
	var out []string
	for _, m := range history {
		switch {
		case m.Role == "user",
			m.Role == "assistant" && len(m.ToolCalls) == 0,
			m.Role == "tool" && !a.builtin(m.Name):
			out = append(out, m.Content)
		}
	}
	for _, m := range client {
		out = append(out, m.Content)
		for _, tc := range m.ToolCalls {
			out = append(out, tc.Function.Name, tc.Function.Arguments)
		}
	}
	return out
}

// external reports whether the catalog's tool name is one whose results come
// from outside the runtime.
func (a *Agent) external(name string) bool {
	if a.Tools == nil {
		return false
	}
	t, ok := a.Tools.Tool(name)
	return ok && t.Builtin == ""
}

// builtin reports whether name is a builtin tool of the catalog, whose
// results come from the runtime's own storage.
func (a *Agent) builtin(name string) bool {
	if a.Tools == nil {
		return false
	}
	t, ok := a.Tools.Tool(name)
	return ok && t.Builtin != ""
}

// toolInputs returns the results, among msgs, of external tools.
func (a *Agent) toolInputs(msgs []llm.Message) []string {
	var out []string
	for _, m := range msgs {
		if m.Role == "tool" && a.external(m.Name) {
			out = append(out, m.Content)
		}
	}
	return out
}
