package main

import (
	"io"

	"github.com/spf13/cobra"
)

func newRootCmd(getenv func(string) string, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "bulkhead",
		Short:         "Multi-tenant runtime for customer-facing AI agents",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(
		newServeCmd(getenv, stdout, stderr),
		newDemoCmd(getenv, stdout, stderr),
		newKeyringCmd(getenv, stdout, stderr),
		newIngestCmd(getenv, stdout, stderr),
		newMigrateCmd(getenv, stdout, stderr),
		newRedteamCmd(getenv, stdout, stderr),
		newLoadCmd(getenv, stdout, stderr),
	)
	addAdminCmds(root, getenv, stdout)
	return root
}
