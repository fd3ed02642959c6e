package secret_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/secret"
)

const token = "crm-token-acme-7f3a9c"

type holder struct {
	Name  string
	Value secret.Value
	Ptr   *secret.Value
	Map   map[string]secret.Value
	List  []secret.Value
	inner secret.Value // printed by reflection, without its methods
}

func newHolder() holder {
	v := secret.New(token)
	return holder{Name: "crm", Value: v, Ptr: &v, Map: map[string]secret.Value{"crm": v}, List: []secret.Value{v}, inner: v}
}

// TestValueNeverPrints formats a Value and values holding it every way
// fmt, slog and encoding/json can, and looks for the token and its hex.
func TestValueNeverPrints(t *testing.T) {
	v := secret.New(token)
	h := newHolder()
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v"} {
		outs = append(outs, fmt.Sprintf(verb, v), fmt.Sprintf(verb, h), fmt.Sprintf(verb, &h))
	}
	outs = append(outs, fmt.Sprint(v, h), fmt.Sprintln(v, h), v.String(), v.GoString(),
		fmt.Errorf("call failed with %v", v).Error(), errors.New(fmt.Sprint(h.Map)).Error())

	for _, newHandler := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
	} {
		var buf bytes.Buffer
		log := slog.New(newHandler(&buf))
		log.Info("secret", "value", v, "holder", h, "ptr", &v, "map", h.Map, slog.Group("g", "value", v), slog.Any("any", v))
		log.With("value", v).Info("with")
		outs = append(outs, buf.String())
	}

	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	outs = append(outs, string(b))
	b, err = json.Marshal(map[secret.Value]string{v: "key"})
	if err != nil {
		t.Fatal(err)
	}
	outs = append(outs, string(b))

	hexed := fmt.Sprintf("%x", []byte(token))
	b64 := base64.StdEncoding.EncodeToString([]byte(token))[:20]
	for _, out := range outs {
		if strings.Contains(out, token) || strings.Contains(strings.ToLower(out), hexed) || strings.Contains(out, "7f3a9c") || strings.Contains(out, b64) {
			t.Errorf("printed the secret: %s", out)
		}
	}
	if got := string(b); !strings.Contains(got, secret.Redacted) {
		t.Errorf("json map key: %s, want %s", got, secret.Redacted)
	}
	if got, want := v.Reveal(), token; got != want {
		t.Fatalf("Reveal() = %q, want %q", got, want)
	}
}

func TestValueBasics(t *testing.T) {
	var zero secret.Value
	if !zero.IsZero() || zero.Reveal() != "" || zero.Len() != 0 || !secret.New("").IsZero() {
		t.Fatal("zero Value is not empty")
	}
	v := secret.New(token)
	if v.IsZero() || v.Len() != len(token) {
		t.Fatalf("Len() = %d, want %d", v.Len(), len(token))
	}
	if !v.Equal(secret.New(token)) || v.Equal(secret.New(token+"x")) || v.Equal(zero) {
		t.Fatal("Equal is wrong")
	}
}
