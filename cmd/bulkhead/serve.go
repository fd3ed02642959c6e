package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/bulkhead-ai/bulkhead/internal/config"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/server"
)

func newServeCmd(getenv func(string) string, stdout, stderr io.Writer) *cobra.Command {
	var addr, dataDir, configPath, database, metricsAddr string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the HTTP server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(configPath)
			if err != nil {
				return err
			}
			if database != "" {
				d := config.Database{}
				if cfg.Database != nil {
					d = *cfg.Database
				}
				d.URL, d.URLEnv = database, ""
				cfg.Database = &d
			}
			if metricsAddr != "" {
				cfg.Metrics.Addr = metricsAddr
			}
			logger := slog.New(slog.NewTextHandler(stderr, nil))
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", addr, err)
			}
			return serve(cmd.Context(), ln, dataDir, cfg, getenv, stderr, logger)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "address to listen on")
	cmd.Flags().StringVar(&dataDir, "data", "./bulkhead-data", "data directory")
	cmd.Flags().StringVar(&configPath, "config", "", "YAML configuration file")
	cmd.Flags().StringVar(&metricsAddr, "metrics-addr", "", "also serve /metrics here, without a token (a private address for the Prometheus scraper); on --addr it needs the admin token")
	cmd.Flags().StringVar(&database, "database", "", "PostgreSQL URL of the application role (postgres://…): keep all state there instead of in --data; the owner role's URL, which runs the migrations, is read from $"+config.DefaultOwnerURLEnv)
	return cmd
}

// serve runs the server on ln until ctx is cancelled, then drains requests.
func serve(ctx context.Context, ln net.Listener, dataDir string, cfg config.Config, getenv func(string) string, stderr io.Writer, logger *slog.Logger) (err error) {
	// Shutdown closes ln; this closes it when the server never starts.
	defer ln.Close()
	token, err := adminToken(dataDir, getenv, stderr)
	if err != nil {
		return err
	}
	key, err := masterKey(dataDir, getenv, stderr)
	if err != nil {
		return err
	}
	inst, err := server.Open(ctx, server.Options{DataDir: dataDir, Config: cfg, AdminToken: token, MasterKey: key,
		Getenv: getenv, Logger: logger})
	if err != nil {
		return err
	}
	// Closed after the HTTP server has drained, below.
	defer func() { err = errors.Join(err, inst.Close()) }()
	srv := &http.Server{
		Handler:           inst.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 2)
	if cfg.Metrics.Addr != "" {
		mln, err := net.Listen("tcp", cfg.Metrics.Addr)
		if err != nil {
			return fmt.Errorf("listen for metrics on %s: %w", cfg.Metrics.Addr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", inst.Metrics())
		msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
		go func() { errc <- msrv.Serve(mln) }()
		defer msrv.Close() // a scrape has nothing to drain
		logger.Info("serving metrics", "addr", mln.Addr().String())
	}
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("listening", "addr", ln.Addr().String(), "data", dataDir)
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	return nil
}

// adminToken reads BULKHEAD_ADMIN_TOKEN or the token file in dataDir,
// generating the file and printing the token once if neither exists.
func adminToken(dataDir string, getenv func(string) string, stderr io.Writer) (string, error) {
	if t := getenv("BULKHEAD_ADMIN_TOKEN"); t != "" {
		return t, nil
	}
	return devSecret(filepath.Join(dataDir, "admin_token"), "an admin token", stderr, func() (string, error) {
		var raw [32]byte
		if _, err := rand.Read(raw[:]); err != nil {
			return "", err
		}
		return "bka_" + base64.RawURLEncoding.EncodeToString(raw[:]), nil
	})
}

// masterKey reads the key-encryption key from BULKHEAD_MASTER_KEY or the key
// file in dataDir. A new data directory gets a generated key file; an existing
// one without a key is refused, as a new key could not read its data.
func masterKey(dataDir string, getenv func(string) string, stderr io.Writer) ([]byte, error) {
	if v := getenv("BULKHEAD_MASTER_KEY"); v != "" {
		k, err := keyring.ParseMasterKey(v)
		if err != nil {
			return nil, fmt.Errorf("BULKHEAD_MASTER_KEY: %w", err)
		}
		return k, nil
	}
	path := filepath.Join(dataDir, "master_key")
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(filepath.Join(dataDir, "control.db")); err == nil {
			return nil, fmt.Errorf("%s holds data but no master key: set BULKHEAD_MASTER_KEY to the key it was created with", dataDir)
		}
	}
	v, err := devSecret(path, "a master key (back it up: without it the data cannot be read)", stderr, func() (string, error) {
		k, err := keyring.NewKey()
		return base64.StdEncoding.EncodeToString(k), err
	})
	if err != nil {
		return nil, err
	}
	k, err := keyring.ParseMasterKey(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// devSecret reads the secret stored at path or, if there is none, generates
// one, stores it with mode 0600 and prints it once. It is for development;
// production passes secrets in the environment.
// writeDurably creates path holding b, all at once and on disk before it
// returns: a crash leaves either no file or the whole one, never an empty
// key that would stop every later start. It fails with fs.ErrExist if path
// exists.
func writeDurably(path string, b []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func devSecret(path, what string, stderr io.Writer, generate func() (string, error)) (string, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("create data directory: %w", err)
	}
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	v, err := generate()
	if err != nil {
		return "", fmt.Errorf("generate %s: %w", what, err)
	}
	if err := writeDurably(path, []byte(v+"\n")); errors.Is(err, fs.ErrExist) {
		// Another process generated one first: use it.
		return devSecret(path, what, stderr, generate)
	} else if err != nil {
		return "", fmt.Errorf("store %s: %w", what, err)
	}
	fmt.Fprintf(stderr, "Generated %s (shown once; stored in %s):\n  %s\n", what, path, v)
	return v, nil
}
