package server

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
)

func TestEncode(t *testing.T) {
	w := httptest.NewRecorder()
	encode(w, http.StatusCreated, map[string]string{"id": "<acme>"})
	if w.Code != http.StatusCreated {
		t.Errorf("got status %d, want %d", w.Code, http.StatusCreated)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("got Content-Type %q, want application/json", ct)
	}
	if got, want := w.Body.String(), `{"id":"\u003cacme\u003e"}`+"\n"; got != want {
		t.Errorf("got body %q, want %q", got, want)
	}
}

func TestDecode(t *testing.T) {
	type body struct {
		A int    `json:"a"`
		B string `json:"b"`
	}
	const limit = 32
	tests := []struct {
		name     string
		in       string
		strict   bool
		want     body
		wantKind error // nil: success; errTooLarge: *http.MaxBytesError
	}{
		{"object", `{"a":1,"b":"x"}`, true, body{A: 1, B: "x"}, nil},
		{"surrounding whitespace", " \n{\"a\":2}\n ", true, body{A: 2}, nil},
		{"unknown field lenient", `{"a":1,"c":true}`, false, body{A: 1}, nil},
		{"unknown field strict", `{"a":1,"c":true}`, true, body{}, kind.Invalid},
		{"at the limit", `{"b":"` + strings.Repeat("x", limit-8) + `"}`, true, body{B: strings.Repeat("x", limit-8)}, nil},
		{"empty", ``, false, body{}, kind.Invalid},
		{"only whitespace", "  \n", false, body{}, kind.Invalid},
		{"malformed", `{"a":`, false, body{}, kind.Invalid},
		{"not JSON", `hello`, false, body{}, kind.Invalid},
		{"wrong type", `{"a":"1"}`, false, body{}, kind.Invalid},
		{"two values", `{"a":1}{"a":2}`, false, body{}, kind.Invalid},
		{"value then garbage", `{"a":1} x`, false, body{}, kind.Invalid},
		{"duplicate key", `{"b":"x","b":"y"}`, false, body{}, kind.Invalid},
		{"duplicate key, escaped", `{"b":"x","\u0062":"y"}`, false, body{}, kind.Invalid},
		{"duplicate unknown key", `{"c":1,"c":2}`, false, body{}, kind.Invalid},
		{"key in another case is not the field, strict", `{"B":"x"}`, true, body{}, kind.Invalid},
		{"key in another case is not the field, lenient", `{"b":"x","B":"y"}`, false, body{B: "x"}, nil},
		{"invalid UTF-8", "{\"b\":\"\xff\"}", false, body{}, kind.Invalid},
		{"lone surrogate escape", `{"b":"\ud800"}`, false, body{}, kind.Invalid},
		{"over the limit", `{"b":"` + strings.Repeat("x", limit) + `"}`, false, body{}, errTooLarge},
		{"unknown field over the limit", `{"c":"` + strings.Repeat("x", limit) + `","a":1}`, false, body{}, errTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", strings.NewReader(tt.in))
			got, err := decode[body](httptest.NewRecorder(), r, limit, tt.strict)
			switch tt.wantKind {
			case nil:
				if err != nil || got != tt.want {
					t.Errorf("got %+v, %v; want %+v, nil", got, err, tt.want)
				}
			case errTooLarge:
				var tooLarge *http.MaxBytesError
				if !errors.As(err, &tooLarge) {
					t.Errorf("got error %v, want *http.MaxBytesError", err)
				}
			default:
				if !errors.Is(err, tt.wantKind) {
					t.Errorf("got error %v, want kind %v", err, tt.wantKind)
				}
			}
		})
	}
}

// errTooLarge marks TestDecode cases that must fail with *http.MaxBytesError.
var errTooLarge = errors.New("too large")
