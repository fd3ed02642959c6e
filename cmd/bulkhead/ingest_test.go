package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestIngest(t *testing.T) {
	t.Parallel()
	base, admin := startServer(t)
	key := createTenantKey(t, base, admin, map[string]any{"id": "acme"})
	dir := t.TempDir()
	files := map[string]string{
		"handbook.md":        "# Handbook\n\nRefunds within 30 days. Code word ZYXWVUT.\n",
		"faq/shipping.txt":   "Shipping takes five days.\n",
		"faq/.hidden/x.txt":  "hidden",
		"image.png":          "not text",
		"notes/empty.txt":    "   \n",
		"big/manual.txt":     strings.Repeat(strings.Repeat("A paragraph about rocket maintenance. ", 20)+"\n\n", 3500), // > 2 MiB: sent in parts
		"faq/returns.md":     "Returns need a receipt.\n",
		"faq/duplicate.txt":  "Shipping takes five days.\n", // same text as shipping.txt
		"faq/more/deep.text": "Deep file.\n",
	}
	for name, body := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := envMap(map[string]string{"BULKHEAD_SERVER": base, "BULKHEAD_API_KEY": key})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"ingest", dir}, env, &out, &errOut); err != nil {
		t.Fatalf("ingest: %v\n%s%s", err, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "0 failed, 1 skipped") || !strings.Contains(out.String(), "1 unchanged") {
		t.Fatalf("first ingest summary: %s", out.String())
	}
	// Progress counts bytes: every byte of the files read, the hidden and
	// skipped ones not.
	var bytesRead int
	for name, body := range files {
		if name != "image.png" && !strings.Contains(name, ".hidden") {
			bytesRead += len(body)
		}
	}
	if want := fmt.Sprintf("Ingested 7 files (%d bytes)", bytesRead); !strings.Contains(out.String(), want) {
		t.Fatalf("first ingest summary: %s, want %q", out.String(), want)
	}
	out.Reset()
	if err := run(ctx, []string{"ingest", dir}, env, &out, &errOut); err != nil {
		t.Fatalf("second ingest: %v", err)
	}
	if !strings.Contains(out.String(), "(0 new,") {
		t.Fatalf("re-ingest created documents: %s", out.String())
	}
	status, body := call(t, http.MethodPost, base+"/v1/search", key, map[string]any{"query": "zyxwvut"})
	if status != http.StatusOK || !strings.Contains(string(body), "ZYXWVUT") {
		t.Fatalf("search after ingest: %d %s", status, body)
	}
	// Errors are clear: no key, unknown path.
	if err := run(ctx, []string{"ingest", dir}, envMap(map[string]string{"BULKHEAD_SERVER": base}), &out, &errOut); err == nil || !strings.Contains(err.Error(), "BULKHEAD_API_KEY") {
		t.Fatalf("ingest without a key: %v", err)
	}
	if err := run(ctx, []string{"ingest", filepath.Join(dir, "nosuch")}, env, &out, &errOut); err == nil {
		t.Fatal("ingest of a missing path succeeded")
	}
}
