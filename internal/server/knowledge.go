package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/memory"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

type documentBody struct {
	Text     *string         `json:"text"`
	Metadata json.RawMessage `json:"metadata"`
}

// tenantScope returns the Scope authentication put in the request.
func tenantScope(r *http.Request) (auth.Scope, error) {
	scope, ok := auth.FromContext(r.Context())
	if !ok {
		return scope, fmt.Errorf("%w: no tenant", kind.Unauthenticated)
	}
	return scope, nil
}

func handleAddDocument(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, err := tenantScope(r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		body, err := decode[documentBody](w, r, d.MaxDocumentBytes, true)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		if body.Text == nil {
			writeError(d.Logger, w, r, fmt.Errorf("%w: text is required", kind.Invalid))
			return
		}
		doc, created, err := d.Knowledge.AddDocument(r.Context(), scope, *body.Text, body.Metadata)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		status := http.StatusCreated
		if !created {
			status = http.StatusOK
		}
		encode(w, status, map[string]any{"id": doc.ID, "chunks": doc.Chunks, "hash": doc.Hash, "created": created})
	})
}

func handleGetDocument(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, err := tenantScope(r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		doc, err := d.Knowledge.Document(r.Context(), scope, r.PathValue("id"))
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		encode(w, http.StatusOK, doc)
	})
}

// documentItem is one document of a listing: what GET /v1/documents/{id}
// returns, without the text.
type documentItem struct {
	ID        string          `json:"id"`
	Object    string          `json:"object"`
	Metadata  json.RawMessage `json:"metadata,omitempty"`
	Hash      string          `json:"hash"`
	Chunks    int             `json:"chunks"`
	Size      int             `json:"size"`
	CreatedAt time.Time       `json:"created_at"`
}

// documentList is OpenAI's cursor list shape.
type documentList struct {
	Object  string         `json:"object"`
	Data    []documentItem `json:"data"`
	FirstID *string        `json:"first_id"`
	LastID  *string        `json:"last_id"`
	HasMore bool           `json:"has_more"`
}

// handleListDocuments lists the tenant's documents, newest first, a page at
// a time: ?limit=N (1-100, default 20) and ?after=ID, the last id of the page
// before, as OpenAI's lists page.
func handleListDocuments(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, err := tenantScope(r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		q := r.URL.Query()
		for name, vs := range q {
			switch {
			case name != "limit" && name != "after" && name != "order":
				err = fmt.Errorf("%w: unknown query parameter %q", kind.Invalid, name)
			case len(vs) != 1:
				err = fmt.Errorf("%w: query parameter %q given %d times", kind.Invalid, name, len(vs))
			}
		}
		// The listing is newest first; asking for the other order is refused,
		// not ignored.
		if o := q.Get("order"); err == nil && q.Has("order") && o != "desc" {
			err = fmt.Errorf("%w: order must be desc (newest first)", kind.Invalid)
		}
		limit := 0
		if err == nil && q.Has("limit") {
			if limit, err = strconv.Atoi(q.Get("limit")); err != nil || limit < 1 {
				err = fmt.Errorf("%w: limit must be between 1 and %d", kind.Invalid, memory.MaxListLimit)
			}
		}
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		docs, more, err := d.Knowledge.Documents(r.Context(), scope, q.Get("after"), limit)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		out := documentList{Object: "list", Data: make([]documentItem, len(docs)), HasMore: more}
		for i, doc := range docs {
			out.Data[i] = documentItem{ID: doc.ID, Object: "document", Metadata: doc.Metadata, Hash: doc.Hash,
				Chunks: doc.Chunks, Size: doc.Size, CreatedAt: doc.CreatedAt}
		}
		if len(docs) > 0 {
			out.FirstID, out.LastID = &docs[0].ID, &docs[len(docs)-1].ID
		}
		encode(w, http.StatusOK, out)
	})
}

func handleDeleteDocument(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, err := tenantScope(r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		if err := d.Knowledge.DeleteDocument(r.Context(), scope, r.PathValue("id")); err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

type searchBody struct {
	Query string `json:"query"`
	TopK  int    `json:"top_k"`
	// Mode is "hybrid" (default), "lexical" or "vector".
	Mode string `json:"mode"`
}

func handleSearch(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, err := tenantScope(r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		body, err := decode[searchBody](w, r, d.MaxBodyBytes, true)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		mode, ok := map[string]memory.Mode{"": memory.Hybrid, "hybrid": memory.Hybrid, "lexical": memory.Lexical, "vector": memory.Vector}[body.Mode]
		if !ok {
			writeError(d.Logger, w, r, fmt.Errorf("%w: mode must be hybrid, lexical or vector", kind.Invalid))
			return
		}
		results, err := d.Knowledge.Search(r.Context(), scope, body.Query, body.TopK, mode)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		encode(w, http.StatusOK, map[string]any{"object": "list", "data": results})
	})
}

type memoryBody struct {
	User string `json:"user"`
	Text string `json:"text"`
}

func handleAddMemory(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, err := tenantScope(r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		body, err := decode[memoryBody](w, r, d.MaxBodyBytes, true)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		user, err := tenant.ParseUserID(body.User)
		if err != nil {
			writeError(d.Logger, w, r, fmt.Errorf("%w: user: %w", kind.Invalid, err))
			return
		}
		if scope, err = scope.ForUser(user); err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		m, err := d.Knowledge.Remember(r.Context(), scope, body.Text)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		encode(w, http.StatusCreated, m)
	})
}

func handleListMemories(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, err := tenantScope(r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		user, err := tenant.ParseUserID(r.URL.Query().Get("user"))
		if err != nil {
			writeError(d.Logger, w, r, fmt.Errorf("%w: user: %w", kind.Invalid, err))
			return
		}
		if scope, err = scope.ForUser(user); err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		ms, err := d.Knowledge.Memories(r.Context(), scope, 1000)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		encode(w, http.StatusOK, map[string]any{"object": "list", "data": ms})
	})
}
