package control_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/control/controltest"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
)

func sqliteBackend(t *testing.T) controltest.Backend {
	path := filepath.Join(t.TempDir(), "control.db")
	return controltest.Backend{Open: func(t testing.TB, kek keyring.KEK) (*control.Plane, error) {
		return control.Open(context.Background(), path, kek, nil)
	}}
}

func TestSQLite(t *testing.T) { controltest.Run(t, sqliteBackend) }
