package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/bulkhead-ai/bulkhead/internal/audit"
	"github.com/bulkhead-ai/bulkhead/internal/store"
)

func newAuditCmd(client *adminClient, server string, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read and verify tenants' hash-chained audit logs"}
	cmd.PersistentFlags().StringVar(&client.server, "server", server, "server URL (env BULKHEAD_SERVER)")
	var tenantID, head string
	verify := &cobra.Command{
		Use:   "verify [FILE]",
		Short: "Verify an audit log: from FILE (JSON as GET …/audit returns it) or, with --tenant, fetched from the server",
		Long: `Recomputes every record's hash and checks the chain: an edited, removed, reordered or
inserted record fails. With --head SEQ:HASH (printed by an earlier verify) a log cut
short or rewritten from the start also fails.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var recs []store.AuditRecord
			var source string
			switch {
			case len(args) == 1 && tenantID == "":
				b, err := readFileArg(args[0])
				if err != nil {
					return err
				}
				if recs, err = decodeAudit(b); err != nil {
					return fmt.Errorf("read %s: %w", args[0], err)
				}
				source = args[0]
			case len(args) == 0 && tenantID != "":
				var after int64
				for {
					b, err := client.do(cmd.Context(), http.MethodGet, fmt.Sprintf("/admin/v1/tenants/%s/audit?after=%d", url.PathEscape(tenantID), after), nil)
					if err != nil {
						return err
					}
					page, err := decodeAudit(b)
					if err != nil {
						return err
					}
					if len(page) == 0 {
						break
					}
					recs = append(recs, page...)
					after = page[len(page)-1].Seq
				}
				source = "tenant " + tenantID
			default:
				return fmt.Errorf("give either FILE or --tenant")
			}
			var err error
			if head != "" {
				var h audit.Head
				if _, scanErr := fmt.Sscanf(head, "%d:%s", &h.Seq, &h.Hash); scanErr != nil {
					return fmt.Errorf("--head must be SEQ:HASH")
				}
				err = audit.VerifyHead(recs, h)
			} else {
				err = audit.Verify(recs)
			}
			if err != nil {
				return fmt.Errorf("audit log of %s does not verify: %w", source, err)
			}
			h := audit.HeadOf(recs)
			_, err = fmt.Fprintf(stdout, "audit log of %s: %d records verified; head %d:%s\n", source, len(recs), h.Seq, h.Hash)
			return err
		},
	}
	verify.Flags().StringVar(&tenantID, "tenant", "", "fetch the tenant's log from the server (admin)")
	verify.Flags().StringVar(&head, "head", "", "expected head SEQ:HASH from an earlier verify")
	cmd.AddCommand(verify)
	return cmd
}

// decodeAudit reads {"data":[…]} as the API returns it, or a bare array.
func decodeAudit(b []byte) ([]store.AuditRecord, error) {
	var page struct {
		Data []store.AuditRecord `json:"data"`
	}
	if err := json.Unmarshal(b, &page); err == nil && page.Data != nil {
		return page.Data, nil
	}
	var recs []store.AuditRecord
	if err := json.Unmarshal(b, &recs); err != nil {
		return nil, fmt.Errorf("not an audit log: %w", err)
	}
	return recs, nil
}
