package guard

import (
	crand "crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

const mitSentence = "Permission is hereby granted, free of charge, to any person obtaining a copy"

func randomB64(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := crand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := crand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// structuredSecrets are realistic credentials whose beginning is public
// boilerplate, as a tenant may store them.
func structuredSecrets(t *testing.T) map[string]string {
	pem := "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ" + randomB64(t, 96) + "\n-----END PRIVATE KEY-----\n"
	sa := `{"type": "service_account", "project_id": "victim-prod-4821", "private_key_id": "` + randomHex(t, 20) +
		`", "private_key": "` + strings.ReplaceAll(pem, "\n", `\n`) + `", "client_email": "bot@victim-prod-4821.iam.gserviceaccount.com"}`
	claims := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"` + randomHex(t, 8) + `","iat":1700000000}`))
	jwt := "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + claims + "." + strings.TrimRight(base64.RawURLEncoding.EncodeToString([]byte(randomB64(t, 32))), "=")
	return map[string]string{"gcp_sa": sa, "tls_key": pem, "api_jwt": jwt, "licence_text": mitSentence}
}

// TestForeignSecretPublicPartNotMatched checks the class "a tenant's
// secrets as a weapon": whatever structured credentials globex stores, an
// answer of acme's quoting the public text they begin with (a PEM header,
// the jwt.io example token, a licence) is neither withheld nor changed, in
// Check and Stream; the whole secret still blocks.
func TestForeignSecretPublicPartNotMatched(t *testing.T) {
	g := New()
	secrets := structuredSecrets(t)
	for name, v := range secrets {
		g.SetSecret(globex, name, []byte(v))
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, text := range []string{
		`A key file is JSON; its first member is "type": "service_account".`,
		"Every RSA-2048 PKCS#8 key starts -----BEGIN PRIVATE KEY----- MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ",
		"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ...\n-----END PRIVATE KEY-----",
		"The jwt.io example: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
		"As the licence says: " + mitSentence + " of this software.",
		"Pick the type: service account, then download the key.",
	} {
		v, sv, sent := checkBoth(g, r, acme, text)
		if v.Blocked || sv.Blocked || v.Text != text || sent != text {
			t.Errorf("%.50q: Check %+v, Stream blocked %v sent %.50q; want it untouched", text, v, sv.Blocked, sent)
		}
	}
	for _, name := range []string{"tls_key", "api_jwt", "gcp_sa"} {
		v, sv, _ := checkBoth(g, r, acme, "leak: "+secrets[name]+" end")
		for _, got := range []Verdict{v, sv} {
			if !got.Blocked || !slices.Equal(got.Leaks, []Leak{{globex, LeakSecret}}) {
				t.Errorf("whole %s: verdict %+v, want blocked for globex's secret", name, got)
			}
		}
	}
}

// TestGuessableSecretNotTracked checks the class "the guard as an oracle":
// a secret a guess can hit (repeated, made of words, structured) is not
// tracked, so saying the right guess gives the same verdict as a wrong one.
func TestGuessableSecretNotTracked(t *testing.T) {
	for _, low := range []string{
		"Summer2024!Summer2024!",
		"Password123!Password123!",
		"correct7horse9battery3staple",
		"Correct-Horse-Battery-Staple-42",
		mitSentence,
		"abcdefghijklmnopqrstuvwxyz0123456789",
		"1234-5678-1234-5678-1234",
		"passwordpassword",
		"short-Key1",
	} {
		g := New()
		if g.SetSecret(globex, "pw", []byte(low)) {
			t.Errorf("%q: tracked, want not (a guess of it is feasible)", low)
		}
		if v := g.Check(acme, "my guess is "+low, nil); v.Blocked {
			t.Errorf("%q: the right guess is blocked: %q", low, v.Reasons)
		}
	}
}

// TestWholeRandomSecretBlocked: a random 32-character base64url secret of
// globex's in acme's answer is blocked whole, plain and base64-encoded
// (alone and inside base64 of "Bearer " + it), while 20 characters of it
// are not: nothing short of the whole is matched.
func TestWholeRandomSecretBlocked(t *testing.T) {
	for range 20 {
		b := make([]byte, 24)
		crand.Read(b)
		secret := base64.RawURLEncoding.EncodeToString(b)
		g := New()
		if !g.SetSecret(globex, "api", []byte(secret)) {
			t.Fatalf("random %q is not tracked", secret)
		}
		r := rand.New(rand.NewPCG(5, 6))
		for _, text := range []string{
			"key " + secret + " end",
			"key " + base64.StdEncoding.EncodeToString([]byte(secret)),
			"auth " + base64.StdEncoding.EncodeToString([]byte("Bearer "+secret)),
		} {
			v, sv, _ := checkBoth(g, r, acme, text)
			for _, got := range []Verdict{v, sv} {
				if !got.Blocked || !slices.Equal(got.Owners, []tenant.ID{globex}) {
					t.Errorf("%q: verdict %+v, want blocked for globex's secret", text, got)
				}
			}
		}
		if v := g.Check(acme, "part "+secret[:20], nil); v.Blocked {
			t.Errorf("20 characters of %q blocked: %q", secret, v.Reasons)
		}
	}
}

// TestRandomEnough pins what is tracked.
func TestRandomEnough(t *testing.T) {
	for _, c := range []struct {
		v    string
		want bool
	}{
		{"gx_9fK2LmQ7vR4tZp8WcX3nB6yH1sJ5dE0a", true},
		{"q7Xk2Lm9Pz4Rt8Wc3Nb6", true},             // 20 random characters
		{"3f9a1c7e5b2d8f4a6c0e9b1d7f3a5c8e", true}, // 32 hex digits
		{"Summer2024!Summer2024!", false},
		{"Tr0ub4dor&3", false}, // too short
		{mitSentence, false},
		{"correct7horse9battery3staple", false},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
		{"abababababababababababab12", false},
	} {
		if got := randomEnough([]byte(c.v)); got != c.want {
			t.Errorf("randomEnough(%q) = %v (%.0f bits), want %v", c.v, got, secretBits([]byte(c.v)), c.want)
		}
	}
}
