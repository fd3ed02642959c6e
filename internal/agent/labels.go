package agent

import (
	"github.com/bulkhead-ai/bulkhead/internal/label"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/tools"
)

// Information-flow labels (package label): a turn's read is the join of the
// labels of everything its model has been given, each set from where it came
// from, never from what it says:
//
//   - the profile's system prompt: label.Profile (trusted, tenant);
//   - the client's messages of this turn, whatever their role (end-user
//     text, client tool results, the client's own system messages):
//     label.Client (untrusted, end user);
//   - session history: the label its turn was stored with (record), or
//     label.Unknown (untrusted, secret) for a message stored without one;
//   - a tool result: untrusted, with the confidentiality the tool declares
//     (tools.Flow.Result). The builtins' are the runtime's: kb_search's
//     passages are tenant, memories are end user.
//
// Every tool decision is asked with the turn's read as it stood when the
// model wrote the call (calls of one step see none of each other's
// results), and records it in the audit.

// resultsLabel is the label of the tool messages answering calls: untrusted,
// as confidential as the most confidential declared result among them. A
// call the runtime answered itself (a tool not offered, a refusal) still
// counts as an untrusted read.
func (b *toolbox) resultsLabel(calls []llm.ToolCall) label.Label {
	var out label.Label
	for _, tc := range calls {
		c := label.Public
		if t, ok := b.tools[tc.Function.Name]; ok {
			c = t.Flow().Result
		} else if t, ok := b.client[tc.Function.Name]; ok {
			c = t.Flow().Result
		}
		out = out.Join(label.Result(c))
	}
	return out
}

// cachedLabel is the label of an answer served from the response cache to a
// turn that read read: an answer cached from a turn that used tools read
// their results, whose labels the cache does not keep.
func cachedLabel(profile Profile, read label.Label) label.Label {
	if profile.CacheToolAnswers {
		return read.Join(label.Unknown)
	}
	return read
}

// labelFields adds the turn's label to an audit record of a tool decision.
func (b *toolbox) labelFields(record map[string]any) map[string]any {
	record["integrity"] = b.read.Integrity.String()
	record["confidentiality"] = b.read.Confidentiality.String()
	return record
}

// flowFields adds what policy read of a tool's flow to its decision record.
func flowFields(record map[string]any, f tools.Flow) map[string]any {
	record["consequential"] = f.Consequential
	record["egress"] = f.Egress.String()
	return record
}
