package main

import (
	"fmt"
	"io"
	"os"
)

// readFileArg reads a file named on the command line, at most 16 MiB.
func readFileArg(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 16<<20+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > 16<<20 {
		return nil, fmt.Errorf("%s is larger than 16 MiB", path)
	}
	return b, nil
}
