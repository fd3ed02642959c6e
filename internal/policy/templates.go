package policy

import (
	"fmt"
	"slices"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
)

// Template is an opt-in tenant policy on information-flow labels. A tenant
// turns one on by putting its Source into its own policy text (PUT
// /admin/v1/tenants/{tenant}/policy): it is an ordinary forbid, and the
// tenant may edit it or write its own on the same attributes.
type Template struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Source      string `json:"source"`
}

// The two policies FIDES (Costa et al., 2025) calls trusted action and
// permitted flow. They read context attributes that only AuthorizeLabeled
// sets, without `has`: a decision made without labels is an evaluation
// error, which denies.
var templates = []Template{
	{
		Name:        "trusted-action",
		Description: "No consequential tool once the turn has read untrusted input (end-user text, documents, memories, tool results).",
		Source: `@id("trusted-action")
forbid (principal, action == Action::"call_tool", resource)
when { resource.consequential && context.integrity == "untrusted" };
`,
	},
	{
		Name:        "permitted-flow",
		Description: "No tool whose egress is below the confidentiality of what the turn has read.",
		Source: `@id("permitted-flow")
forbid (principal, action == Action::"call_tool", resource)
unless { resource.receives.contains(context.confidentiality) };
`,
	},
}

// Templates returns the shipped templates, by name.
func Templates() []Template { return slices.Clone(templates) }

// TemplateNamed returns the template called name. Errors wrap kind.NotFound.
func TemplateNamed(name string) (Template, error) {
	for _, t := range templates {
		if t.Name == name {
			return t, nil
		}
	}
	return Template{}, fmt.Errorf("%w: policy template %q (there are trusted-action and permitted-flow)", kind.NotFound, name)
}
