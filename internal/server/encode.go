package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	jsonv2 "github.com/go-json-experiment/json"

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
//
// The body must be I-JSON (RFC 7493): unique member names and valid UTF-8,
// and member names must equal the fields' exactly. encoding/json alone would
// keep the last of two "id"s, fold "ID" onto "id" and replace invalid bytes,
// so what was stored and checked would not be what was sent.
func decode[T any](w http.ResponseWriter, r *http.Request, limit int64, strict bool) (T, error) {
	var v T
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return v, err
		}
		return v, fmt.Errorf("read request body: %w", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return v, fmt.Errorf("%w: request body is empty", kind.Invalid)
	}
	// The v2 decoder checks all of it: one value, unique member names,
	// valid UTF-8, and names matched to fields exactly. encoding/json folds
	// case, so {"id":"a","ID":"b"} would set the id to b.
	if err := jsonv2.Unmarshal(body, &v, jsonv2.RejectUnknownMembers(strict)); err != nil {
		return v, fmt.Errorf("%w: malformed JSON body: %v", kind.Invalid, err)
	}
	return v, nil
}
