package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/bulkhead-ai/bulkhead/internal/chunk"
)

// ingestExts are the files ingest reads; others are skipped and counted.
var ingestExts = map[string]bool{".txt": true, ".md": true, ".markdown": true, ".text": true}

// ingestPart is the most one document may hold; a larger file is sent as
// several documents, cut on paragraph boundaries while it is read.
const ingestPart = 2 << 20

func newIngestCmd(getenv func(string) string, stdout, stderr io.Writer) *cobra.Command {
	var server string
	cmd := &cobra.Command{
		Use:   "ingest PATH...",
		Short: "Add text and markdown files (or directories of them) to a tenant's knowledge base",
		Long: `Sends each .txt/.md file to POST /v1/documents with the tenant key in
BULKHEAD_API_KEY. Re-ingesting an unchanged file is a no-op. Files larger than 2 MiB
are read in parts and stored as several documents.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key := getenv("BULKHEAD_API_KEY")
			if key == "" {
				return fmt.Errorf("no tenant key: set BULKHEAD_API_KEY")
			}
			in := &ingester{server: strings.TrimRight(server, "/"), key: key, http: &http.Client{Timeout: 5 * time.Minute}}
			return in.run(cmd.Context(), args, stdout, stderr)
		},
	}
	def := getenv("BULKHEAD_SERVER")
	if def == "" {
		def = "http://127.0.0.1:8080"
	}
	cmd.Flags().StringVar(&server, "server", def, "server URL (env BULKHEAD_SERVER)")
	return cmd
}

type ingester struct {
	server, key string
	http        *http.Client

	documents, created, unchanged, chunks, failed, skipped int
	bytes                                                  int64 // read from the files
}

func (in *ingester) run(ctx context.Context, paths []string, stdout, stderr io.Writer) error {
	var (
		files []string
		total int64 // bytes to read: the bar counts bytes, so one large file shows its progress
	)
	for _, p := range paths {
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if strings.HasPrefix(d.Name(), ".") && path != p {
					return filepath.SkipDir
				}
				return nil
			}
			if ingestExts[strings.ToLower(filepath.Ext(path))] {
				info, err := d.Info()
				if err != nil {
					return err
				}
				files = append(files, path)
				total += info.Size()
			} else {
				in.skipped++
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("list %s: %w", p, err)
		}
	}
	bar := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(stderr),
		progressbar.OptionSetDescription(fmt.Sprintf("ingesting %d files", len(files))),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
	start := time.Now()
	var firstErr error
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		var sent int64
		progress := func(n int) {
			sent += int64(n)
			bar.Add(n) //nolint:errcheck // the bar only draws
		}
		size, err := in.file(ctx, f, progress)
		if err != nil {
			in.failed++
			fmt.Fprintf(stderr, "\n%s: %v\n", f, err)
			if firstErr == nil {
				firstErr = err
			}
		}
		in.bytes += size
		if rest := size - sent; rest > 0 {
			bar.Add64(rest) //nolint:errcheck // what was not sent (blank parts, a failure) is done too
		}
	}
	bar.Finish() //nolint:errcheck // the bar only draws
	took := time.Since(start)
	fmt.Fprintf(stdout, "Ingested %d files (%d bytes) in %s (%.2f MB/s): %d documents (%d new, %d unchanged), %d chunks; %d failed, %d skipped (not .txt/.md).\n",
		len(files)-in.failed, in.bytes, took.Round(time.Millisecond), float64(in.bytes)/1e6/max(took.Seconds(), 1e-9),
		in.documents, in.created, in.unchanged, in.chunks, in.failed, in.skipped)
	if in.failed > 0 {
		return fmt.Errorf("%d of %d files failed; first: %w", in.failed, len(files), firstErr)
	}
	return nil
}

// file sends one file, in parts when it is large, never holding more than
// one part in memory, and returns its size. sent hears of the bytes of each
// part sent.
func (in *ingester) file(ctx context.Context, path string, sent func(n int)) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if info.Size() <= ingestPart {
		b, err := io.ReadAll(f)
		if err != nil {
			return info.Size(), err
		}
		if err := in.post(ctx, string(b), map[string]any{"path": path}); err != nil {
			return info.Size(), err
		}
		sent(len(b))
		return info.Size(), nil
	}
	part := 0
	return info.Size(), chunk.SplitReader(f, chunk.Options{Size: ingestPart, Overlap: -1}, func(c chunk.Chunk) error {
		part++
		if err := in.post(ctx, c.Text, map[string]any{"path": path, "part": part}); err != nil {
			return err
		}
		sent(len(c.Text))
		return nil
	})
}

func (in *ingester) post(ctx context.Context, text string, metadata map[string]any) error {
	if strings.TrimSpace(text) == "" {
		return nil
	}
	body, err := json.Marshal(map[string]any{"text": text, "metadata": metadata})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.server+"/v1/documents", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+in.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := in.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	var out struct {
		Chunks  int  `json:"chunks"`
		Created bool `json:"created"`
		Error   struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &out); err != nil || resp.StatusCode >= 300 {
		if out.Error.Message != "" {
			return fmt.Errorf("%s (%d)", out.Error.Message, resp.StatusCode)
		}
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	in.documents++
	in.chunks += out.Chunks
	if out.Created {
		in.created++
	} else {
		in.unchanged++
	}
	return nil
}
