package store

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/secret"
)

func TestSecretValuePrintsRedacted(t *testing.T) {
	s := Secret{Name: "crm", Value: secret.New("crm-token-123456")}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "secret", s.Value, "all", s)
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, s, s, s.Value), logs.String()} {
		if strings.Contains(out, "crm-token-123456") {
			t.Fatalf("secret value printed: %s", out)
		}
	}
}
