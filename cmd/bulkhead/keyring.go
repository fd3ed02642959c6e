package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
)

func newKeyringCmd(getenv func(string) string, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "keyring", Short: "Manage the master key (key-encryption key)"}
	var dataDir string
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Rewrap every tenant's data key under a new master key (stop the server first)",
		Long: `Rewraps every tenant's data key under a new master key, in one transaction;
tenant data is not re-encrypted. The current key comes from BULKHEAD_MASTER_KEY or
DATA/master_key; the new one from BULKHEAD_NEW_MASTER_KEY, or is generated. With a
key file, the file is replaced; with the environment, restart with the new key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return rotateMasterKey(cmd, dataDir, getenv, stdout, stderr)
		},
	}
	rotate.Flags().StringVar(&dataDir, "data", "./bulkhead-data", "data directory")
	cmd.AddCommand(rotate)
	return cmd
}

func rotateMasterKey(cmd *cobra.Command, dataDir string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx := cmd.Context()
	dbPath := filepath.Join(dataDir, "control.db")
	if _, err := os.Stat(dbPath); err != nil {
		return fmt.Errorf("no data to rotate in %s: %w", dataDir, err)
	}
	oldKey, err := masterKey(dataDir, getenv, stderr)
	if err != nil {
		return err
	}
	oldKEK, err := keyring.NewLocalKEK(oldKey)
	if err != nil {
		return err
	}
	newB64 := getenv("BULKHEAD_NEW_MASTER_KEY")
	generated := newB64 == ""
	if generated {
		k, err := keyring.NewKey()
		if err != nil {
			return err
		}
		newB64 = base64.StdEncoding.EncodeToString(k)
	}
	newKey, err := keyring.ParseMasterKey(newB64)
	if err != nil {
		return fmt.Errorf("BULKHEAD_NEW_MASTER_KEY: %w", err)
	}
	newKEK, err := keyring.NewLocalKEK(newKey)
	if err != nil {
		return err
	}

	plane, err := control.Open(ctx, dbPath, oldKEK, nil)
	if err != nil {
		return err
	}
	defer plane.Close()

	keyFile := getenv("BULKHEAD_MASTER_KEY") == ""
	path := filepath.Join(dataDir, "master_key")
	staged := path + ".new"
	if keyFile {
		// The new key is on disk before any data key depends on it.
		if err := os.WriteFile(staged, []byte(newB64+"\n"), 0o600); err != nil {
			return fmt.Errorf("stage new master key: %w", err)
		}
	}
	if err := plane.RotateKEK(ctx, newKEK); err != nil {
		if keyFile {
			if rerr := os.Remove(staged); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				err = errors.Join(err, rerr)
			}
		}
		return err
	}
	if keyFile {
		if err := os.Rename(staged, path); err != nil {
			return fmt.Errorf("data keys are rewrapped, but replacing %s failed (the new key is in %s): %w", path, staged, err)
		}
		fmt.Fprintf(stdout, "Master key rotated; %s holds the new key.\n", path)
		return nil
	}
	if generated {
		fmt.Fprintf(stdout, "Master key rotated. Restart with this BULKHEAD_MASTER_KEY (shown once):\n  %s\n", newB64)
		return nil
	}
	fmt.Fprintln(stdout, "Master key rotated. Restart with BULKHEAD_MASTER_KEY set to the value of BULKHEAD_NEW_MASTER_KEY.")
	return nil
}
