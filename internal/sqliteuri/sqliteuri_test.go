package sqliteuri

import (
	"database/sql"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// TestFileOpensThePath opens databases through File's URI from a working
// directory of the test's own and checks each file lands where its path says,
// including relative paths and characters a URI would otherwise read as
// syntax. Not parallel: it changes the working directory.
func TestFileOpensThePath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, path := range []string{
		"plain.db",
		"./dot.db",
		"sub/dir.db",
		"../" + filepath.Base(dir) + "/up.db",
		filepath.Join(dir, "absolute.db"),
		"sub/a?mode=memory.db",
		"sub/hash#frag.db",
		"sub/percent%41.db",
		"sub/space d.db",
	} {
		t.Run(path, func(t *testing.T) {
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				t.Fatal(err)
			}
			uri, err := File(path, url.Values{"_pragma": {"journal_mode(WAL)"}})
			if err != nil {
				t.Fatalf("File(%q): %v", path, err)
			}
			db, err := sql.Open("sqlite", uri)
			if err != nil {
				t.Fatalf("open %s: %v", uri, err)
			}
			defer db.Close()
			if _, err := db.Exec("CREATE TABLE t (x)"); err != nil {
				t.Fatalf("write through %s: %v", uri, err)
			}
			var mode string
			if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
				t.Errorf("journal_mode through %s = %q (%v), want wal: the parameters were not read", uri, mode, err)
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("File(%q) = %s: no database at the path: %v", path, uri, err)
			}
		})
	}
}
