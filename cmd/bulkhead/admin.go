package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/bulkhead-ai/bulkhead/internal/policy"
)

// adminClient talks to a running server's admin API.
type adminClient struct {
	server string
	token  string
	http   *http.Client
}

// do sends body (if not nil) as JSON and returns the response body, turning
// an OpenAI-shaped error into a Go error.
func (c adminClient) do(ctx context.Context, method, path string, body any) ([]byte, error) {
	if body == nil {
		return c.doRaw(ctx, method, path, "", nil)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	return c.doRaw(ctx, method, path, "application/json", b)
}

// doRaw sends body with the given content type.
func (c adminClient) doRaw(ctx context.Context, method, path, contentType string, body []byte) ([]byte, error) {
	if c.token == "" {
		return nil, fmt.Errorf("no admin token: set BULKHEAD_ADMIN_TOKEN")
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.server, "/")+path, rd)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read response: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Message string } `json:"error"`
		}
		if json.Unmarshal(out, &e) == nil && e.Error.Message != "" {
			return nil, fmt.Errorf("%s %s: %s (%d)", method, path, e.Error.Message, resp.StatusCode)
		}
		return nil, fmt.Errorf("%s %s: status %d", method, path, resp.StatusCode)
	}
	return out, nil
}

// print writes a JSON response indented, or "ok" for an empty one.
func printJSON(w io.Writer, b []byte) error {
	if len(bytes.TrimSpace(b)) == 0 {
		_, err := fmt.Fprintln(w, "ok")
		return err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		_, err := w.Write(b)
		return err
	}
	buf.WriteByte('\n')
	_, err := buf.WriteTo(w)
	return err
}

func addAdminCmds(root *cobra.Command, getenv func(string) string, stdout io.Writer) {
	server := getenv("BULKHEAD_SERVER")
	if server == "" {
		server = "http://127.0.0.1:8080"
	}
	client := &adminClient{token: getenv("BULKHEAD_ADMIN_TOKEN"), http: &http.Client{Timeout: 60 * time.Second}}
	call := func(cmd *cobra.Command, method, path string, body any) error {
		b, err := client.do(cmd.Context(), method, path, body)
		if err != nil {
			return err
		}
		return printJSON(stdout, b)
	}

	tenantCmd := &cobra.Command{Use: "tenant", Short: "Manage tenants (admin)"}
	tenantCmd.PersistentFlags().StringVar(&client.server, "server", server, "server URL (env BULKHEAD_SERVER)")
	keyCmd := &cobra.Command{Use: "key", Short: "Manage tenant API keys (admin)"}
	keyCmd.PersistentFlags().StringVar(&client.server, "server", server, "server URL (env BULKHEAD_SERVER)")

	var def tenantFlags
	create := &cobra.Command{
		Use:   "create ID",
		Short: "Create a tenant",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := def.body(cmd)
			if err != nil {
				return err
			}
			body["id"] = args[0]
			return call(cmd, http.MethodPost, "/admin/v1/tenants", body)
		},
	}
	def.register(create)

	var upd tenantFlags
	update := &cobra.Command{
		Use:   "update ID",
		Short: "Change a tenant's fields (only the flags given)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := upd.body(cmd)
			if err != nil {
				return err
			}
			return call(cmd, http.MethodPatch, "/admin/v1/tenants/"+url.PathEscape(args[0]), body)
		},
	}
	upd.register(update)
	update.Flags().StringVar(&upd.status, "status", "", "active or suspended")

	tenantCmd.AddCommand(create, update,
		&cobra.Command{Use: "list", Short: "List tenants", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return call(cmd, http.MethodGet, "/admin/v1/tenants", nil)
			}},
		&cobra.Command{Use: "get ID", Short: "Show a tenant", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return call(cmd, http.MethodGet, "/admin/v1/tenants/"+url.PathEscape(args[0]), nil)
			}},
		&cobra.Command{Use: "delete ID", Short: "Delete a tenant and all its data", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return call(cmd, http.MethodDelete, "/admin/v1/tenants/"+url.PathEscape(args[0]), nil)
			}},
	)
	var keysOf string
	listKeys := &cobra.Command{Use: "list --tenant TENANT", Short: "List a tenant's API keys: ids and times, revoked ones too, never the keys",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Like the other key commands, the tenant may also come first.
			switch {
			case len(args) == 1 && keysOf != "" && args[0] != keysOf:
				return fmt.Errorf("two tenants given: %s and --tenant %s", args[0], keysOf)
			case len(args) == 1:
				keysOf = args[0]
			case keysOf == "":
				return fmt.Errorf("which tenant's keys? give --tenant TENANT")
			}
			return call(cmd, http.MethodGet, "/admin/v1/tenants/"+url.PathEscape(keysOf)+"/keys", nil)
		}}
	listKeys.Flags().StringVar(&keysOf, "tenant", "", "the tenant whose keys to list")
	var keyName, keyExpires string
	createKey := &cobra.Command{Use: "create TENANT", Short: "Create an API key (shown once)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := keyBody(keyName, keyExpires, time.Now())
			if err != nil {
				return err
			}
			path := "/admin/v1/tenants/" + url.PathEscape(args[0]) + "/keys"
			if body == nil {
				return call(cmd, http.MethodPost, path, nil) // no body, as before
			}
			return call(cmd, http.MethodPost, path, body)
		}}
	createKey.Flags().StringVar(&keyName, "name", "", "a name for the key, shown in key list")
	createKey.Flags().StringVar(&keyExpires, "expires", "", "when the key stops working: a duration from now (720h) or an RFC 3339 time")
	keyCmd.AddCommand(listKeys, createKey,
		&cobra.Command{Use: "revoke TENANT KEY_ID", Short: "Revoke an API key", Args: cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				return call(cmd, http.MethodDelete, "/admin/v1/tenants/"+url.PathEscape(args[0])+"/keys/"+url.PathEscape(args[1]), nil)
			}},
	)
	secretCmd := &cobra.Command{Use: "secret", Short: "Manage tenant secrets (admin; values are write-only)"}
	secretCmd.PersistentFlags().StringVar(&client.server, "server", server, "server URL (env BULKHEAD_SERVER)")
	var fromFile string
	set := &cobra.Command{
		Use:   "set TENANT NAME",
		Short: "Set a secret; the value is read from standard input or --from-file, never from the command line",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var value []byte
			var err error
			if fromFile != "" {
				value, err = readFileArg(fromFile)
			} else {
				value, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20))
			}
			if err != nil {
				return fmt.Errorf("read secret value: %w", err)
			}
			v := strings.TrimRight(string(value), "\r\n")
			return call(cmd, http.MethodPut, "/admin/v1/tenants/"+url.PathEscape(args[0])+"/secrets/"+url.PathEscape(args[1]), map[string]string{"value": v})
		},
	}
	set.Flags().StringVar(&fromFile, "from-file", "", "read the value from this file")
	secretCmd.AddCommand(set,
		&cobra.Command{Use: "delete TENANT NAME", Short: "Delete a secret", Args: cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				return call(cmd, http.MethodDelete, "/admin/v1/tenants/"+url.PathEscape(args[0])+"/secrets/"+url.PathEscape(args[1]), nil)
			}},
	)
	tenantCmd.AddCommand(&cobra.Command{Use: "export ID", Short: "Print everything a tenant has stored, decrypted (secret values excepted)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return call(cmd, http.MethodGet, "/admin/v1/tenants/"+url.PathEscape(args[0])+"/export", nil)
		}})
	toolCmd := &cobra.Command{Use: "tool", Short: "Manage the tool catalog (admin)"}
	toolCmd.PersistentFlags().StringVar(&client.server, "server", server, "server URL (env BULKHEAD_SERVER)")
	toolCmd.AddCommand(
		&cobra.Command{Use: "create FILE", Short: "Add a tool from its JSON definition", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				b, err := readFileArg(args[0])
				if err != nil {
					return err
				}
				return call(cmd, http.MethodPost, "/admin/v1/tools", json.RawMessage(b))
			}},
		&cobra.Command{Use: "list", Short: "List tools", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return call(cmd, http.MethodGet, "/admin/v1/tools", nil)
			}},
		&cobra.Command{Use: "get NAME", Short: "Show a tool", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return call(cmd, http.MethodGet, "/admin/v1/tools/"+url.PathEscape(args[0]), nil)
			}},
		&cobra.Command{Use: "delete NAME", Short: "Remove a tool", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return call(cmd, http.MethodDelete, "/admin/v1/tools/"+url.PathEscape(args[0]), nil)
			}},
	)

	policyCmd := &cobra.Command{Use: "policy", Short: "Manage tenants' Cedar policies (admin)"}
	policyCmd.PersistentFlags().StringVar(&client.server, "server", server, "server URL (env BULKHEAD_SERVER)")
	policyCmd.AddCommand(
		&cobra.Command{Use: "set TENANT FILE", Short: "Replace a tenant's policy with the Cedar text in FILE", Args: cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				b, err := readFileArg(args[1])
				if err != nil {
					return err
				}
				_, err = client.doRaw(cmd.Context(), http.MethodPut, "/admin/v1/tenants/"+url.PathEscape(args[0])+"/policy", "text/plain", b)
				if err == nil {
					_, err = fmt.Fprintln(stdout, "ok")
				}
				return err
			}},
		&cobra.Command{Use: "template NAME", Short: "Print a label policy template (trusted-action, permitted-flow) to include in a tenant's policy",
			Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				t, err := policy.TemplateNamed(args[0])
				if err == nil {
					_, err = io.WriteString(stdout, t.Source)
				}
				return err
			}},
		&cobra.Command{Use: "get TENANT", Short: "Print a tenant's policy", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				b, err := client.do(cmd.Context(), http.MethodGet, "/admin/v1/tenants/"+url.PathEscape(args[0])+"/policy", nil)
				if err == nil {
					_, err = stdout.Write(b)
				}
				return err
			}},
	)
	var usageTenant, usageFrom, usageTo string
	usageCmd := &cobra.Command{Use: "usage", Short: "Print usage and spend per tenant, end user, model and UTC day (admin)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := "/admin/v1/usage"
			if usageTenant != "" {
				path = "/admin/v1/tenants/" + url.PathEscape(usageTenant) + "/usage"
			}
			q := url.Values{}
			for name, v := range map[string]string{"from": usageFrom, "to": usageTo} {
				if v != "" {
					q.Set(name, v)
				}
			}
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			return call(cmd, http.MethodGet, path, nil)
		}}
	usageCmd.Flags().StringVar(&client.server, "server", server, "server URL (env BULKHEAD_SERVER)")
	usageCmd.Flags().StringVar(&usageTenant, "tenant", "", "only this tenant (default: every tenant)")
	usageCmd.Flags().StringVar(&usageFrom, "from", "", "first day, YYYY-MM-DD (default: 29 days before --to)")
	usageCmd.Flags().StringVar(&usageTo, "to", "", "last day, YYYY-MM-DD (default: today, UTC)")
	root.AddCommand(tenantCmd, keyCmd, secretCmd, toolCmd, policyCmd, usageCmd, newAuditCmd(client, server, stdout), newIssuerCmd(client, server, stdout))
}

// tenantFlags are the tenant fields settable from the command line.
type tenantFlags struct {
	name, systemPrompt, model, status, file string
	tools                                   []string
	rpm, tpm, maxConcurrent                 int
}

func (f *tenantFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.name, "name", "", "display name")
	cmd.Flags().StringVar(&f.systemPrompt, "system-prompt", "", "system prompt of the default profile")
	cmd.Flags().StringVar(&f.model, "model", "", `model of the default profile, "provider/model"`)
	cmd.Flags().StringSliceVar(&f.tools, "tools", nil, "tools of the default profile")
	cmd.Flags().IntVar(&f.rpm, "requests-per-minute", 0, "request rate limit")
	cmd.Flags().IntVar(&f.tpm, "tokens-per-minute", 0, "token rate limit")
	cmd.Flags().IntVar(&f.maxConcurrent, "max-concurrent", 0, "concurrent request limit")
	cmd.Flags().StringVarP(&f.file, "file", "f", "", "JSON body to send (flags given override its fields)")
}

// body builds the request from the file (if any) and the flags that were set.
func (f *tenantFlags) body(cmd *cobra.Command) (map[string]any, error) {
	body := map[string]any{}
	if f.file != "" {
		b, err := readFileArg(f.file)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, &body); err != nil {
			return nil, fmt.Errorf("parse %s: %w", f.file, err)
		}
	}
	set := cmd.Flags().Changed
	for flag, field := range map[string]any{"name": f.name, "system-prompt": f.systemPrompt, "model": f.model, "status": f.status, "tools": f.tools} {
		if set(flag) {
			body[strings.ReplaceAll(flag, "-", "_")] = field
		}
	}
	limits, _ := body["limits"].(map[string]any)
	if limits == nil {
		limits = map[string]any{}
	}
	for flag, v := range map[string]int{"requests-per-minute": f.rpm, "tokens-per-minute": f.tpm, "max-concurrent": f.maxConcurrent} {
		if set(flag) {
			limits[strings.ReplaceAll(flag, "-", "_")] = v
		}
	}
	if len(limits) > 0 {
		body["limits"] = limits
	}
	return body, nil
}
