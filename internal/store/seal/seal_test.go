package seal_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/store/seal"
)

func cipher(t *testing.T) *keyring.Cipher {
	t.Helper()
	key, err := keyring.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	c, err := keyring.NewCipher("acme", key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestContextsAreDistinct checks that no two places share a context, even
// where the fields of one could be read as those of another.
func TestContextsAreDistinct(t *testing.T) {
	contexts := []string{
		seal.MessageContent("alice", "s1"), seal.MessageContent("alice", "s2"), seal.MessageContent("bob", "s1"),
		seal.MessageContent("alice-s", "1"), seal.MessageMeta("alice", "s1"),
		seal.Secret("api_token"), seal.Secret("other"),
		seal.DocumentText("d1"), seal.DocumentMetadata("d1"), seal.DocumentHash("d1"), seal.DocumentText("d2"),
		seal.ChunkText("d1", 0), seal.ChunkText("d1", 1), seal.ChunkText("d2", 0), seal.ChunkEmbedding("d1", 0),
		seal.MemoryText("alice", 1), seal.MemoryText("alice", 2), seal.MemoryText("bob", 1), seal.MemoryEmbedding("alice", 1),
	}
	seen := map[string]int{}
	for i, c := range contexts {
		if j, ok := seen[c]; ok {
			t.Errorf("contexts %d and %d are both %q", j, i, c)
		}
		seen[c] = i
	}
	c := cipher(t)
	sealed := c.Seal([]byte("text"), contexts[0])
	for _, other := range contexts[1:] {
		if _, err := c.Open(sealed, other); !errors.Is(err, keyring.ErrDecrypt) {
			t.Errorf("a ciphertext of %q opened under %q: %v", contexts[0], other, err)
		}
	}
}

func TestEmbedding(t *testing.T) {
	c := cipher(t)
	v := []float32{0.1, -1.5e-7, 3.4028235e38, -2.25}
	got, err := seal.OpenEmbedding(c, seal.Embedding(c, v, seal.ChunkEmbedding("d", 0)), seal.ChunkEmbedding("d", 0))
	if err != nil || !slices.Equal(got, v) {
		t.Errorf("round trip: got %v, %v; want %v", got, err, v)
	}
	if b := seal.Embedding(c, nil, "x"); b != nil {
		t.Errorf("empty embedding: got %d bytes, want nil", len(b))
	}
	if got, err := seal.OpenEmbedding(c, nil, "x"); got != nil || err != nil {
		t.Errorf("NULL embedding: got %v, %v; want nil, nil", got, err)
	}
	if _, err := seal.OpenEmbedding(c, c.Seal([]byte{1, 2, 3}, "x"), "x"); !errors.Is(err, seal.ErrEmbeddingSize) {
		t.Errorf("3-byte embedding: got %v, want %v", err, seal.ErrEmbeddingSize)
	}
}

func TestBlinder(t *testing.T) {
	c, other := cipher(t), cipher(t)
	chunks, alice, bob := seal.ChunkBlinder(c), seal.MemoryBlinder(c, "alice"), seal.MemoryBlinder(c, "bob")
	tok := chunks.Token("kestrel")
	if len(tok) != 1+seal.TokenHex || tok[0] != 't' {
		t.Errorf("token %q: want t and %d hex digits", tok, seal.TokenHex)
	}
	if again := seal.ChunkBlinder(c).Token("kestrel"); again != tok {
		t.Errorf("same key and term: got %q and %q", tok, again)
	}
	for name, b := range map[string]*seal.Blinder{"alice's memories": alice, "bob's memories": bob, "another key": seal.ChunkBlinder(other)} {
		if b.Token("kestrel") == tok {
			t.Errorf("%s: same token as the knowledge base's", name)
		}
	}
	if alice.Token("kestrel") == bob.Token("kestrel") {
		t.Error("two users' memories share a token")
	}
	tokens := chunks.Tokens("Kestrels hover; kestrel kestrel HOVER the")
	if len(tokens) != 5 || !slices.IsSorted(tokens) {
		t.Errorf("Tokens: got %q, want 5 sorted tokens (the stopword dropped)", tokens)
	}
	if q := chunks.Query("kestrel Kestrel hover"); !slices.Equal(q, []string{tok, chunks.Token("hover")}) {
		t.Errorf("Query: got %q, want kestrel's and hover's tokens once each", q)
	}
	// A word that is not its own stem asks for both: the stem finds stemmed
	// text, the word text indexed before stemming.
	if q := chunks.Query("kestrels hovering kestrel"); !slices.Equal(q, []string{tok, chunks.Token("kestrels"), chunks.Token("hover"), chunks.Token("hovering")}) {
		t.Errorf("Query of inflected words: got %q, want the stems' and the words' tokens", q)
	}
	if tokens := chunks.Tokens("kestrels hovering"); !slices.Equal(tokens, sorted(tok, chunks.Token("hover"))) {
		t.Errorf("Tokens of inflected words: got %q, want the stems' tokens", tokens)
	}
	if q := chunks.Query("the of ?!"); len(q) != 0 {
		t.Errorf("Query without terms: got %q, want none", q)
	}
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}
