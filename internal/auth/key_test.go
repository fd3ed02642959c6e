package auth

import (
	"fmt"
	"strings"
	"testing"
)

func TestNewKeyRoundTrip(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id, secret, hash, err := NewKey()
		if err != nil {
			t.Fatal(err)
		}
		key := secret.Reveal()
		if !strings.HasPrefix(key, KeyPrefix) || len(key) != keyLen {
			t.Fatalf("key %q: want prefix %q and length %d", key, KeyPrefix, keyLen)
		}
		if seen[key] {
			t.Fatal("NewKey repeated a key")
		}
		seen[key] = true
		gotID, gotHash, err := parseKey(key)
		if err != nil {
			t.Fatalf("parseKey(%q): %v", key, err)
		}
		if gotID != id || !gotHash.equal(hash) {
			t.Fatalf("parseKey(%q) = (%q, hash), want (%q, the issued hash)", key, gotID, id)
		}
	}
}

func TestParseKeyRejects(t *testing.T) {
	_, secret, _, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	good := secret.Reveal()
	for _, bad := range []string{
		"", "bk_", good[:len(good)-1], good + "x",
		"xx" + good[2:],
		good[:len(KeyPrefix)] + "zzzzzzzzzzzzzzzz" + good[len(KeyPrefix)+keyIDLen:],
		strings.Replace(good, "_", "-", 2),
	} {
		if _, _, err := parseKey(bad); err == nil {
			t.Errorf("parseKey(%q) succeeded", bad)
		}
	}
}

func TestSecretPrintsRedacted(t *testing.T) {
	_, secret, _, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(secret), fmt.Sprintf("%v %s %+v %#v", secret, secret, secret, secret)} {
		if strings.Contains(s, secret.Reveal()) {
			t.Fatalf("formatted secret leaks the key: %s", s)
		}
	}
}
