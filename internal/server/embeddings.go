package server

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/bulkhead-ai/bulkhead/internal/agent"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/config"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Embeddings embeds texts with the tenant's own embedder and its partition
// of the embedding cache (*memory.Service).
type Embeddings interface {
	Embed(ctx context.Context, scope auth.Scope, texts []string) ([][]float32, error)
}

// Limits of one embeddings request. 2048 inputs is OpenAI's own limit.
const (
	maxEmbeddingInputs = 2048
	maxEmbeddingBytes  = 2 << 20 // all inputs together
)

// embeddingRequest is OpenAI's embeddings request. Any other member is
// refused by name: an ignored field would answer a question the client did
// not ask.
type embeddingRequest struct {
	// Model names the tenant's embedder: "default" unless the operator gave
	// the tenant another one (its "embedder" field).
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
	Dimensions     *int            `json:"dimensions"`
	User           string          `json:"user"`
}

type embeddingData struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"` // []float32, or a base64 string
}

type embeddingUsage struct {
	PromptTokens int `json:"prompt_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

type embeddingResponse struct {
	Object string          `json:"object"`
	Data   []embeddingData `json:"data"`
	Model  string          `json:"model"`
	Usage  embeddingUsage  `json:"usage"`
}

// decodeEmbeddingRequest reads the body with exact member names, refusing
// unknown ones by name.
func decodeEmbeddingRequest(w http.ResponseWriter, r *http.Request, limit int64) (embeddingRequest, error) {
	raw, err := decode[json.RawMessage](w, r, limit, false)
	if err != nil {
		return embeddingRequest{}, err
	}
	var req embeddingRequest
	if err := jsonv2.Unmarshal(raw, &req, jsonv2.RejectUnknownMembers(true)); err != nil {
		var se *jsonv2.SemanticError
		if errors.Is(err, jsonv2.ErrUnknownName) && errors.As(err, &se) {
			return req, fmt.Errorf("%w: unsupported field %q: the embeddings API takes model, input, encoding_format, dimensions and user, and refuses rather than ignore others", kind.Invalid, se.JSONPointer.LastToken())
		}
		return req, fmt.Errorf("%w: malformed JSON body: %v", kind.Invalid, err)
	}
	return req, nil
}

// inputs returns the texts to embed: input is a string or an array of
// strings. Token arrays are refused: tokens mean something only to the
// tokenizer of one upstream model, and the tenant's embedder may have none.
func (req embeddingRequest) inputs() ([]string, error) {
	if len(req.Input) == 0 || string(req.Input) == "null" {
		return nil, fmt.Errorf("%w: input is required", kind.Invalid)
	}
	var texts []string
	switch req.Input[0] {
	case '"':
		var s string
		if err := jsonv2.Unmarshal(req.Input, &s); err != nil {
			return nil, fmt.Errorf("%w: input: %v", kind.Invalid, err)
		}
		texts = []string{s}
	case '[':
		if err := jsonv2.Unmarshal(req.Input, &texts); err != nil {
			var tokens []json.RawMessage
			if jsonv2.Unmarshal(req.Input, &tokens) == nil && len(tokens) > 0 && tokens[0][0] != '"' {
				return nil, fmt.Errorf("%w: input: token arrays are not supported; send the text", kind.Invalid)
			}
			return nil, fmt.Errorf("%w: input must be a string or an array of strings", kind.Invalid)
		}
	default:
		return nil, fmt.Errorf("%w: input must be a string or an array of strings", kind.Invalid)
	}
	switch {
	case len(texts) == 0:
		return nil, fmt.Errorf("%w: input must not be an empty array", kind.Invalid)
	case len(texts) > maxEmbeddingInputs:
		return nil, fmt.Errorf("%w: input: at most %d texts per request", kind.Invalid, maxEmbeddingInputs)
	}
	total := 0
	for i, t := range texts {
		if t == "" {
			return nil, fmt.Errorf("%w: input[%d] is empty", kind.Invalid, i)
		}
		total += len(t)
	}
	if total > maxEmbeddingBytes {
		return nil, fmt.Errorf("%w: input: at most %d bytes of text per request; split it into several requests", kind.Invalid, maxEmbeddingBytes)
	}
	return texts, nil
}

func handleEmbeddings(d Deps) http.Handler {
	// JSON escaping grows text; leave room over the input limit.
	limit := max(d.MaxBodyBytes, 2*maxEmbeddingBytes+64<<10)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, err := tenantScope(r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		req, err := decodeEmbeddingRequest(w, r, limit)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		if d.Embeddings == nil || d.Quota == nil {
			// Fail closed: never embed outside the tenant's limits.
			writeError(d.Logger, w, r, errors.New("embeddings: no embedder or quota wired"))
			return
		}
		res, err := embeddings(r.Context(), d, scope, req)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		record(d, r, scope, "embeddings.create", map[string]any{"model": res.Model, "inputs": len(res.Data), "tokens": res.Usage.TotalTokens})
		encode(w, http.StatusOK, res)
	})
}

// embeddings checks req and answers it with the tenant's embedder, under
// the tenant's limits.
func embeddings(ctx context.Context, d Deps, scope auth.Scope, req embeddingRequest) (embeddingResponse, error) {
	texts, err := req.inputs()
	if err != nil {
		return embeddingResponse{}, err
	}
	base64Out := false
	switch req.EncodingFormat {
	case "", "float":
	case "base64":
		base64Out = true
	default:
		return embeddingResponse{}, fmt.Errorf("%w: encoding_format must be float or base64", kind.Invalid)
	}
	if req.Dimensions != nil && *req.Dimensions <= 0 {
		return embeddingResponse{}, fmt.Errorf("%w: dimensions must be positive", kind.Invalid)
	}
	user, err := tenant.ParseUserID(req.User)
	if err != nil {
		return embeddingResponse{}, fmt.Errorf("%w: user: %w", kind.Invalid, err)
	}
	if scope, err = scope.ForUser(user); err != nil {
		return embeddingResponse{}, err
	}
	if req.Model == "" {
		return embeddingResponse{}, fmt.Errorf("%w: model is required (this tenant's embedding model)", kind.Invalid)
	}
	t, err := d.Tenants.Tenant(scope.Tenant())
	if err != nil {
		return embeddingResponse{}, err
	}
	// The tenant has one embedder, the one its documents and searches use;
	// any other name, another tenant's included, does not exist for it.
	name := cmp.Or(t.Embedder, config.DefaultEmbedder)
	if req.Model != name {
		return embeddingResponse{}, fmt.Errorf("%w: the model %q does not exist", kind.NotFound, req.Model)
	}

	tokens := 0
	for _, s := range texts {
		tokens += (len(s) + 3) / 4 // an estimate: the embedder reports none
	}
	limits := agent.QuotaLimits(t.Limits)
	release, err := d.Quota.Admit(ctx, scope.Incarnation(), limits)
	if err != nil {
		return embeddingResponse{}, err
	}
	defer release()
	vecs, err := d.Embeddings.Embed(ctx, scope, texts)
	if err != nil {
		return embeddingResponse{}, err
	}
	// The vectors are computed; a failure to count them is logged, not
	// returned, as the agent does for a turn.
	if err := d.Quota.Spend(context.WithoutCancel(ctx), scope.Incarnation(), limits, tokens); err != nil {
		d.Logger.ErrorContext(ctx, "record token use", "tenant", scope.Tenant(), "error", err.Error())
	}
	if req.Dimensions != nil && len(vecs) > 0 && *req.Dimensions != len(vecs[0]) {
		// Cutting a vector short is meaningful only for models trained for
		// it; the tenant's is not known to be one.
		return embeddingResponse{}, fmt.Errorf("%w: dimensions: the model %q gives %d dimensions, not %d", kind.Invalid, name, len(vecs[0]), *req.Dimensions)
	}
	res := embeddingResponse{Object: "list", Data: make([]embeddingData, len(vecs)), Model: name,
		Usage: embeddingUsage{PromptTokens: tokens, TotalTokens: tokens}}
	for i, v := range vecs {
		var out any = v
		if base64Out {
			out = float32Base64(v)
		}
		res.Data[i] = embeddingData{Object: "embedding", Index: i, Embedding: out}
	}
	return res, nil
}

// float32Base64 is OpenAI's base64 form: the little-endian float32s.
func float32Base64(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return base64.StdEncoding.EncodeToString(b)
}

// handleModel answers GET /v1/models/{id}: one of the tenant's profiles.
// Any other name, another tenant's profile included, is not found.
func handleModel(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, err := tenantScope(r)
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		t, err := d.Tenants.Tenant(scope.Tenant())
		if err != nil {
			writeError(d.Logger, w, r, err)
			return
		}
		id := r.PathValue("id")
		if !slices.Contains(modelIDs(t), id) {
			writeError(d.Logger, w, r, fmt.Errorf("%w: the model %q does not exist", kind.NotFound, id))
			return
		}
		encode(w, http.StatusOK, modelView{ID: id, Object: "model", Created: t.CreatedAt.Unix(), OwnedBy: string(t.ID)})
	})
}
