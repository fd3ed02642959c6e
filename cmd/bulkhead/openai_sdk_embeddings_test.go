package main

import (
	"testing"
)

// sdkEmbeddingsResult is the JSON line test/openai-sdk/embeddings.mjs prints.
type sdkEmbeddingsResult struct {
	Single struct {
		Object, Model             string
		Count, Dim                int
		Index                     *int
		PromptTokens, TotalTokens int
	}
	Batch struct {
		Count                                     int
		Indexes                                   []int
		RepeatEqual, Distinct, Base64MatchesFloat bool
	}
	Model   struct{ ID, Object, OwnedBy string }
	Missing struct{ UnknownModel, ForeignModel, UnknownEmbedder, WrongDimensions int }
	Auth    struct {
		APIKeyAgrees, XAPIKeyAgrees string
		Conflicting                 int
	}
}

// TestOpenAISDKEmbeddings drives the real server's /v1/embeddings and
// /v1/models/{id} with the official OpenAI Node client: embeddings.create
// in its default (base64) and float encodings, models.retrieve of the
// tenant's profile, 404s for an unknown model and for another tenant's
// profile, and the key in api-key or x-api-key headers.
func TestOpenAISDKEmbeddings(t *testing.T) {
	t.Parallel()
	node := requireOpenAISDK(t)

	base, admin := startServer(t)
	key := createTenantKey(t, base, admin, map[string]any{"id": "acme"})
	const foreign = "globex-private-profile"
	other := createTenantKey(t, base, admin, map[string]any{"id": "globex", "profiles": map[string]any{foreign: map[string]any{}}})

	var got sdkEmbeddingsResult
	runSDKScript(t, node, "embeddings.mjs", &got, "BASE_URL="+base+"/v1", "API_KEY="+key, "OTHER_KEY="+other, "FOREIGN_MODEL="+foreign)

	checks := []struct {
		name      string
		got, want any
	}{
		{"single object", got.Single.Object, "list"},
		{"single model", got.Single.Model, "default"},
		{"single count", got.Single.Count, 1},
		{"single has a vector", got.Single.Dim > 0, true},
		{"single index", got.Single.Index != nil && *got.Single.Index == 0, true},
		{"single usage", got.Single.PromptTokens > 0 && got.Single.TotalTokens == got.Single.PromptTokens, true},
		{"batch count", got.Batch.Count, 3},
		{"batch in order", len(got.Batch.Indexes) == 3 && got.Batch.Indexes[0] == 0 && got.Batch.Indexes[1] == 1 && got.Batch.Indexes[2] == 2, true},
		{"a repeated text embeds the same", got.Batch.RepeatEqual, true},
		{"different texts embed differently", got.Batch.Distinct, true},
		{"base64 decodes to the float vector", got.Batch.Base64MatchesFloat, true},
		{"retrieved id", got.Model.ID, "default"},
		{"retrieved object", got.Model.Object, "model"},
		{"retrieved owner", got.Model.OwnedBy, "acme"},
		{"unknown model status", got.Missing.UnknownModel, 404},
		{"another tenant's profile status", got.Missing.ForeignModel, 404},
		{"unknown embedding model status", got.Missing.UnknownEmbedder, 404},
		{"wrong dimensions status", got.Missing.WrongDimensions, 400},
		{"api-key beside Authorization", got.Auth.APIKeyAgrees, "acme"},
		{"x-api-key beside Authorization", got.Auth.XAPIKeyAgrees, "acme"},
		{"conflicting keys status", got.Auth.Conflicting, 401},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}
