package store

import (
	"bytes"
	"fmt"
	"log/slog"
	"slices"
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

func TestTerms(t *testing.T) {
	tests := []struct {
		text         string
		words, terms []string
	}{
		{"Refunds are accepted within 30 days.", []string{"refunds", "accepted", "within", "30", "days"}, []string{"refund", "accept", "within", "30", "day"}},
		{"refund window", []string{"refund", "window"}, []string{"refund", "window"}},
		{"Running RUNS ran; the runner", []string{"running", "runs", "ran", "runner"}, []string{"run", "run", "ran", "runner"}},
		{"ZEBRAacme x a", []string{"zebraacme"}, []string{"zebraacm"}},
		{"the of ?!", nil, nil},
	}
	for _, tt := range tests {
		if got := Words(tt.text); !slices.Equal(got, tt.words) {
			t.Errorf("Words(%q) = %q, want %q", tt.text, got, tt.words)
		}
		if got := Terms(tt.text); !slices.Equal(got, tt.terms) {
			t.Errorf("Terms(%q) = %q, want %q", tt.text, got, tt.terms)
		}
	}
}
