package main

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDemoLeavesNoPlaintext runs the demo on a kept data directory, then
// reads every file in it: neither a secret nor a message may be there in
// clear.
func TestDemoLeavesNoPlaintext(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out lockedBuffer
	if err := run(ctx, []string{"demo", "--data", dir}, envMap(nil), &out, &out); err != nil {
		t.Fatalf("run(demo) = %v\n%s", err, out.String())
	}
	needles := []string{demoSecret, demoTenants[0].secretFact, "A-1001", "What did I tell you?"}
	var files int
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				t.Errorf("%s holds %q in plaintext", path, n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 3 {
		t.Fatalf("only %d files in the data directory; did the demo use it?", files)
	}
}
