package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/config"
	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/migrate"
	"github.com/bulkhead-ai/bulkhead/internal/store/postgres"
	"github.com/bulkhead-ai/bulkhead/internal/store/sqlite"
)

func newMigrateCmd(getenv func(string) string, stdout, stderr io.Writer) *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Copy a SQLite data directory into an empty PostgreSQL database (stop the server first)",
		Long: `Copies every tenant of the data directory --from into the empty PostgreSQL
database --to (the application role's URL; the owner role's, which creates the
schema, is read from $` + config.DefaultOwnerURLEnv + `): the control records, with
each data key still wrapped by the master key, and every tenant's rows as they are
stored, sealed, with their blind search index. Nothing is decrypted. Each tenant's
copy is then checked: row counts, its audit chain and head, and that it opens with
the tenant's key. The master key comes from BULKHEAD_MASTER_KEY or DATA/master_key,
as for serve; then serve with --database and the same master key. A database that
already holds tenants is refused; after a failed run, drop and re-create the target
database and run again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return migrateData(cmd.Context(), from, to, getenv, stdout, stderr)
		},
	}
	cmd.Flags().StringVar(&from, "from", "./bulkhead-data", "data directory to copy")
	cmd.Flags().StringVar(&to, "to", "", "PostgreSQL URL of the application role (postgres://…)")
	cmd.MarkFlagRequired("to") //nolint:errcheck // the flag exists
	return cmd
}

func migrateData(ctx context.Context, dataDir, to string, getenv func(string) string, stdout, stderr io.Writer) (err error) {
	// Checked first: masterKey would generate a key for a new directory.
	if _, err := os.Stat(filepath.Join(dataDir, "control.db")); err != nil {
		return fmt.Errorf("no data to migrate in %s: %w", dataDir, err)
	}
	key, err := masterKey(dataDir, getenv, stderr)
	if err != nil {
		return err
	}
	kek, err := keyring.NewLocalKEK(key)
	if err != nil {
		return err
	}
	token, err := adminToken(dataDir, getenv, stderr)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	closeAll := func(c io.Closer) { err = errors.Join(err, c.Close()) }

	srcPlane, err := control.Open(ctx, filepath.Join(dataDir, "control.db"), kek, logger)
	if err != nil {
		return err
	}
	defer closeAll(srcPlane)
	srcStores, err := sqlite.Open(sqlite.Options{Dir: filepath.Join(dataDir, "tenants"),
		Locator: srcPlane, Ciphers: keyring.NewRing(kek, srcPlane, 0), Logger: logger})
	if err != nil {
		return err
	}
	defer closeAll(srcStores)

	app, owner, err := config.Database{URL: to}.URLs(getenv)
	if err != nil {
		return err
	}
	dstPlane, err := control.OpenPostgres(ctx, control.PostgresOptions{URL: app, OwnerURL: owner}, kek, logger)
	if err != nil {
		return err
	}
	defer closeAll(dstPlane)
	dstStores, err := postgres.Open(ctx, postgres.Options{URL: app, OwnerURL: owner,
		Locator: dstPlane, Ciphers: keyring.NewRing(kek, dstPlane, 0), Logger: logger})
	if err != nil {
		return err
	}
	defer closeAll(dstStores)

	// The checks read each copy as the operator: the admin token is the
	// credential, as for the admin API.
	authn, err := auth.New(dstPlane, token)
	if err != nil {
		return err
	}
	opCtx, err := authn.OperatorContext(ctx, token)
	if err != nil {
		return err
	}
	if err := migrate.Run(opCtx, migrate.Source{Control: srcPlane, Stores: srcStores},
		migrate.Target{Control: dstPlane, Stores: dstStores}, stdout); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	fmt.Fprintln(stdout, "done: serve with --database and the same master key")
	return nil
}
