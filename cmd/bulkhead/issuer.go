package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/spf13/cobra"
)

// newIssuerCmd is `bulkhead issuer add|list|delete`: a tenant's end-user
// token issuers.
func newIssuerCmd(client *adminClient, server string, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "issuer", Short: "Manage tenants' end-user token issuers (admin)"}
	cmd.PersistentFlags().StringVar(&client.server, "server", server, "server URL (env BULKHEAD_SERVER)")
	call := func(c *cobra.Command, method, path string, body any) error {
		b, err := client.do(c.Context(), method, path, body)
		if err != nil {
			return err
		}
		return printJSON(stdout, b)
	}
	path := func(tenant string) string { return "/admin/v1/tenants/" + url.PathEscape(tenant) + "/issuers" }

	var iss, aud, jwksURL, jwksFile, userClaim string
	var algs []string
	add := &cobra.Command{
		Use:   "add TENANT --issuer URL --audience AUD (--jwks-url URL | --jwks FILE)",
		Short: "Register an issuer whose tokens authenticate the tenant's end users",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if iss == "" || aud == "" {
				return fmt.Errorf("--issuer and --audience are required")
			}
			body := map[string]any{"issuer": iss, "audience": aud, "algorithms": algs, "user_claim": userClaim}
			if jwksURL != "" {
				body["jwks_url"] = jwksURL
			}
			if jwksFile != "" {
				b, err := readFileArg(jwksFile)
				if err != nil {
					return err
				}
				if !json.Valid(b) {
					return fmt.Errorf("%s is not JSON", jwksFile)
				}
				body["jwks"] = json.RawMessage(b)
			}
			return call(c, http.MethodPost, path(args[0]), body)
		},
	}
	add.Flags().StringVar(&iss, "issuer", "", "the tokens' iss claim (required)")
	add.Flags().StringVar(&aud, "audience", "", "the audience the tokens must name in aud (required)")
	add.Flags().StringVar(&jwksURL, "jwks-url", "", "where the issuer publishes its JWKS")
	add.Flags().StringVar(&jwksFile, "jwks", "", "a file holding the issuer's JWKS")
	add.Flags().StringSliceVar(&algs, "alg", []string{"RS256"}, "allowed signature algorithms")
	add.Flags().StringVar(&userClaim, "user-claim", "", "the claim naming the end user (default sub)")

	cmd.AddCommand(add,
		&cobra.Command{Use: "list TENANT", Short: "List a tenant's issuers", Args: cobra.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error { return call(c, http.MethodGet, path(args[0]), nil) }},
		&cobra.Command{Use: "delete TENANT ISSUER_ID", Short: "Delete an issuer registration; its tokens stop working", Args: cobra.ExactArgs(2),
			RunE: func(c *cobra.Command, args []string) error {
				return call(c, http.MethodDelete, path(args[0])+"/"+url.PathEscape(args[1]), nil)
			}},
	)
	return cmd
}
