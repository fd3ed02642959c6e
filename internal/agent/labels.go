package agent

import (
	"github.com/bulkhead-ai/bulkhead/internal/label"
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
//     passages are tenant, memories are end user. A tool given held values
//     (refs.go) returns something as confidential as they are too;
//   - a held result's reference, and the runtime's own words (a refusal,
//     "the tool failed to run"): nothing, since no one else wrote them.
//
// Every tool decision is asked with the turn's read as it stood when the
// model wrote the call (calls of one step see none of each other's
// results), joined with the labels of the held values the call uses, and
// records it in the audit.

// cachedLabel is the label of an answer served from the response cache to a
// turn that read read: an answer cached from a turn that used tools read
// their results, whose labels the cache does not keep.
func cachedLabel(profile Profile, read label.Label) label.Label {
	if profile.CacheToolAnswers {
		return read.Join(label.Unknown)
	}
	return read
}

// reasonUnknownRef is the audited reason of a call naming a reference the
// turn did not make (refs.go).
const reasonUnknownRef = "unknown reference"

// reasonRefToClient is the audited reason of a client tool call given a
// held value (refs.go): the client, and the session, would give it back to
// the model.
const reasonRefToClient = "held value to a client tool"

// labelFields adds the label a tool decision was made with to its audit
// record.
func (b *toolbox) labelFields(record map[string]any, l label.Label) map[string]any {
	record["integrity"] = l.Integrity.String()
	record["confidentiality"] = l.Confidentiality.String()
	return record
}

// flowFields adds what policy read of a tool's flow to its decision record.
func flowFields(record map[string]any, f tools.Flow) map[string]any {
	record["consequential"] = f.Consequential
	record["egress"] = f.Egress.String()
	return record
}
