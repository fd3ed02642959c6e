package agent

import (
	"encoding/json"
	"fmt"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
)

// offeredOptions checks the client's tool_choice against the tools offered
// and returns the options to send. With no tool offered, "none" and "auto"
// and parallel_tool_calls mean nothing (no call can be made) and are not
// sent, since providers refuse them without tools; "required" or a named
// function is refused. A named function must be one offered: a
// server-side tool policy permits, or a client tool of the request.
func offeredOptions(o llm.Options, offered []llm.Tool) (llm.Options, error) {
	if len(o.ToolChoice) == 0 {
		if len(offered) == 0 {
			o.ParallelToolCalls = nil
		}
		return o, nil
	}
	var mode string
	if json.Unmarshal(o.ToolChoice, &mode) == nil {
		switch mode {
		case "none", "auto":
			if len(offered) == 0 {
				o.ToolChoice, o.ParallelToolCalls = nil, nil
			}
			return o, nil
		case "required":
			if len(offered) == 0 {
				return o, fmt.Errorf("%w: tool_choice \"required\": this model offers no tools", kind.Invalid)
			}
			return o, nil
		}
		return o, fmt.Errorf("%w: tool_choice must be \"none\", \"auto\", \"required\" or a function", kind.Invalid)
	}
	var named struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(o.ToolChoice, &named); err != nil || named.Type != "function" || named.Function.Name == "" {
		return o, fmt.Errorf("%w: tool_choice must be \"none\", \"auto\", \"required\" or {\"type\":\"function\",\"function\":{\"name\":…}}", kind.Invalid)
	}
	for _, t := range offered {
		if t.Function.Name == named.Function.Name {
			return o, nil
		}
	}
	return o, fmt.Errorf("%w: tool_choice names a function this model does not offer", kind.Invalid)
}
