package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"time"

	"github.com/spf13/cobra"

	"github.com/bulkhead-ai/bulkhead/internal/config"
	"github.com/bulkhead-ai/bulkhead/internal/redteam"
	"github.com/bulkhead-ai/bulkhead/internal/server"
)

// redteamConfig is the in-process server's configuration: the offline
// model and the hostile one the tenants of the suite use.
const redteamConfig = `providers:
  - name: offline
    type: scripted
  - name: redteam
    type: redteam
`

func newRedteamCmd(getenv func(string) string, stdout, stderr io.Writer) *cobra.Command {
	var opts redteam.Options
	var jsonFile, htmlFile, only string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "redteam",
		Short: "Attack a Bulkhead with a hostile model and report what got out",
		Long: `Runs the red-team suite: named attack scenarios by a hostile tenant and a model that obeys every
instruction it reads. Without --target it runs against a fresh in-process server (offline, temporary
data directory). With --target it attacks a running deployment, which must declare a provider
"redteam" of type redteam; it creates tenants and tools under a random prefix and deletes them after.
Exits non-zero if anything leaked.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.AdminToken == "" {
				opts.AdminToken = getenv("BULKHEAD_ADMIN_TOKEN")
			}
			if only != "" {
				re, err := regexp.Compile(only)
				if err != nil {
					return fmt.Errorf("--run: %w", err)
				}
				opts.Only = func(s redteam.Scenario) bool { return re.MatchString(s.Name) }
			}
			logger := slog.New(slog.DiscardHandler)
			if verbose {
				logger = slog.New(slog.NewTextHandler(stderr, nil))
			}
			return runRedteam(cmd.Context(), opts, getenv, stdout, logger, jsonFile, htmlFile)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Target, "target", "", "base URL of a running deployment (default: an in-process server)")
	f.StringVar(&opts.AdminToken, "admin-token", "", "the deployment's admin token (default $BULKHEAD_ADMIN_TOKEN)")
	f.StringVar(&opts.Model, "model", "", `the tenants' model, a provider of type redteam (default "redteam/hostile")`)
	f.StringVar(&opts.ToolListen, "tool-listen", "", "address of the suite's tool server (default 127.0.0.1:0)")
	f.StringVar(&opts.ToolURL, "tool-url", "", "URL the deployment reaches the tool server at (default http://<tool-listen>)")
	f.StringVar(&jsonFile, "json", "", "also write the report as JSON to this file")
	f.StringVar(&htmlFile, "html", "", "also write the report as self-contained HTML to this file")
	f.StringVar(&only, "run", "", "run only the scenarios whose name matches this regular expression")
	f.BoolVarP(&verbose, "verbose", "v", false, "print the in-process server's logs")
	return cmd
}

func runRedteam(ctx context.Context, opts redteam.Options, getenv func(string) string, out io.Writer, logger *slog.Logger,
	jsonFile, htmlFile string) (err error) {
	if opts.Target == "" {
		stop, err := startRedteamServer(ctx, &opts, getenv, logger)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, stop()) }()
	} else if opts.AdminToken == "" {
		return errors.New("redteam: --target needs --admin-token or BULKHEAD_ADMIN_TOKEN")
	}
	rep, runErr := redteam.Run(ctx, opts)
	if rep.Target != "" {
		if err := rep.WriteText(out); err != nil {
			return err
		}
	}
	for _, w := range []struct {
		file  string
		write func(io.Writer) error
	}{{jsonFile, rep.WriteJSON}, {htmlFile, rep.WriteHTML}} {
		if w.file == "" {
			continue
		}
		if err := writeFile(w.file, w.write); err != nil {
			return err
		}
	}
	if runErr != nil {
		return runErr
	}
	if rep.Leaked > 0 {
		return fmt.Errorf("redteam: %d of %d attempts leaked", rep.Leaked, rep.Attempts)
	}
	return nil
}

// startRedteamServer starts a fresh server on a loopback port with a
// temporary data directory and points opts at it.
func startRedteamServer(ctx context.Context, opts *redteam.Options, getenv func(string) string, logger *slog.Logger) (stop func() error, err error) {
	dir, err := os.MkdirTemp("", "bulkhead-redteam-")
	if err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	cleanup := []func() error{func() error { return os.RemoveAll(dir) }}
	stop = func() error {
		var errs []error
		for i := len(cleanup) - 1; i >= 0; i-- {
			errs = append(errs, cleanup[i]())
		}
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, stop())
		}
	}()
	cfg, err := config.Parse([]byte(redteamConfig))
	if err != nil {
		return stop, err
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return stop, fmt.Errorf("generate admin token: %w", err)
	}
	opts.AdminToken = base64.RawURLEncoding.EncodeToString(raw[:])
	key, err := masterKey(dir, getenv, io.Discard)
	if err != nil {
		return stop, err
	}
	inst, err := server.Open(ctx, server.Options{DataDir: dir, Config: cfg, AdminToken: opts.AdminToken, MasterKey: key,
		Getenv: getenv, Logger: logger})
	if err != nil {
		return stop, err
	}
	cleanup = append(cleanup, inst.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return stop, fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: inst.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ErrServerClosed after Shutdown.
	cleanup = append(cleanup, func() error { return srv.Shutdown(context.WithoutCancel(ctx)) })
	opts.Target = "http://" + ln.Addr().String()
	return stop, nil
}

// writeFile creates path and writes it with write.
func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
