package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
)

// encode writes v as JSON with status.
func encode(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// The status is sent; a failed write means the client went away.
	_ = json.NewEncoder(w).Encode(v)
}

// decode reads one JSON value of at most limit bytes from r's body. strict
// rejects unknown fields (admin API); the OpenAI-compatible API accepts them,
// as OpenAI's own clients send fields this server does not use.
func decode[T any](w http.ResponseWriter, r *http.Request, limit int64, strict bool) (T, error) {
	var v T
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(&v); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return v, err
		}
		if errors.Is(err, io.EOF) {
			return v, fmt.Errorf("%w: request body is empty", kind.Invalid)
		}
		return v, fmt.Errorf("%w: malformed JSON body: %v", kind.Invalid, err)
	}
	if dec.More() {
		return v, fmt.Errorf("%w: request body holds more than one JSON value", kind.Invalid)
	}
	return v, nil
}
