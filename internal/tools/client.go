package tools

import (
	"encoding/json"
	"fmt"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// ScopeClient marks a client tool: one a chat request declares and its
// client runs. Bulkhead never executes it; it checks the model's call to it
// as it checks any call, and returns the call to the client. Only
// CompileClient makes one: a catalog definition may not claim it.
const ScopeClient Scope = "client"

// ClientPrefix starts a client tool's Name, which is also its policy
// resource: Tool::"client/<name>". Catalog names cannot hold the '/', so
// a client tool is never taken for a catalog tool, in policy or audit.
const ClientPrefix = "client/"

// CompileClient validates a tool declared by a request's client, owned by
// the calling tenant. runtime names the parameters the runtime fills for
// the profile's server-side tools (tenant id, end user, account): a client
// tool may not declare them, by any spelling a server would match, and the
// model may not add them to a call even where the schema allows undeclared
// keys. Errors wrap kind.Invalid and name the tool.
func CompileClient(owner tenant.ID, name, description string, parameters json.RawMessage, runtime []string) (*Tool, error) {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: client tool %q: %s", kind.Invalid, name, fmt.Sprintf(format, args...))
	}
	if !namePattern.MatchString(name) {
		return nil, invalid("name must be 1-64 of [A-Za-z0-9_-]")
	}
	if len(description) > maxDescription {
		return nil, invalid("description longer than %d bytes", maxDescription)
	}
	if _, err := tenant.ParseID(string(owner)); err != nil {
		return nil, invalid("owner: %v", err)
	}
	if len(parameters) == 0 {
		parameters = json.RawMessage(`{"type":"object","properties":{}}`)
	}
	schema, resolved, err := parseSchema(parameters)
	if err != nil {
		return nil, invalid("%v", err)
	}
	if err := checkLabelNames(schema); err != nil {
		return nil, invalid("%v", err)
	}
	reserved := newReserved(runtime)
	reserved.runtime = true
	for param := range schema.Properties {
		if reserved.check(param, "") != nil {
			return nil, invalid("parameter %q is one the runtime fills (a bound parameter); a client tool may not declare it", param)
		}
	}
	return &Tool{
		Definition: Definition{Name: ClientPrefix + name, Description: description, Scope: ScopeClient, Owner: owner, Parameters: parameters},
		schema:     resolved, visible: parameters, reserved: reserved, flow: clientFlow,
		keys: keysOf(schema, schema, map[*jsonschema.Schema]*keys{}),
	}, nil
}
