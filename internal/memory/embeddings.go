package memory

import (
	"context"
	"errors"
	"fmt"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/embed"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
)

// Embed returns one vector per text, computed as the tenant's documents and
// searches get theirs: by the tenant's own embedder, through the tenant's
// partition of the embedding cache (keyed by its incarnation and a key
// derived from its data key), so no other tenant's cached vector can answer.
func (s *Service) Embed(ctx context.Context, scope auth.Scope, texts []string) ([][]float32, error) {
	if len(texts) == 0 {
		return nil, fmt.Errorf("%w: nothing to embed", kind.Invalid)
	}
	return s.embed(ctx, scope, texts)
}

// embedError classifies an embedder failure: the provider refusing the
// input (400, 422) is the client's error, in the provider's words (the
// embedder has already removed its API key from them); its rate limit is a
// 429; anything else is the provider failing, and its words go to the log.
func embedError(err error) error {
	var se *embed.StatusError
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.As(err, &se) && (se.StatusCode == 400 || se.StatusCode == 422):
		return fmt.Errorf("%w: the embedding provider refused the input: %s", kind.Invalid, se.Message)
	case errors.As(err, &se) && se.StatusCode == 429:
		return fmt.Errorf("%w: the embedding provider's rate limit was reached", kind.Limited)
	}
	return fmt.Errorf("%w: embed: %w", kind.Unavailable, err)
}
