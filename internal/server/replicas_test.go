package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bulkhead-ai/bulkhead/internal/config"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopPostgres()
	os.Exit(code)
}

// forBackends runs f against a server on each storage backend: SQLite files
// and PostgreSQL.
func forBackends(t *testing.T, opts envOptions, f func(t *testing.T, env *testEnv)) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			o := opts
			if backend == "postgres" {
				o.database, o.env = postgresDatabase(t)
			}
			f(t, newTestEnv(t, o))
		})
	}
}

// twoReplicas is two servers on one PostgreSQL database and one Redis, with
// one master key: a deployment of two replicas behind a load balancer.
func twoReplicas(t *testing.T) [2]*testEnv {
	t.Helper()
	db, env := postgresDatabase(t)
	redisAddr := cmpOr(os.Getenv("BULKHEAD_TEST_REDIS"), "127.0.0.1:6379")
	client := redis.NewClient(&redis.Options{Addr: redisAddr, DialTimeout: time.Second})
	err := client.Ping(t.Context()).Err()
	client.Close()
	testenv.Require(t, "Redis", err == nil, "start redis-server or set BULKHEAD_TEST_REDIS")
	key, err := keyring.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	// A prefix of the run's own: the Redis server is shared.
	rc := &config.Redis{Addr: redisAddr, Prefix: fmt.Sprintf("bulkhead-test-replicas-%d", time.Now().UnixNano())}
	var r [2]*testEnv
	for i := range r {
		r[i] = newTestEnv(t, envOptions{database: db, env: env, masterKey: key, redis: rc})
	}
	return r
}

// within polls f every 10 ms until it holds or limit passes, and returns how
// long it took.
func within(t *testing.T, limit time.Duration, f func() bool) (time.Duration, bool) {
	t.Helper()
	start := time.Now()
	for {
		if f() {
			return time.Since(start), true
		}
		if time.Since(start) > limit {
			return time.Since(start), false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReplicasAgree runs issue 10's two-replica checks: what one replica
// changes is in force on the other within a second, limits hold across
// both, a document ingested through one is found through the other, and
// tenant A, alternating replicas, reaches nothing of B's.
func TestReplicasAgree(t *testing.T) {
	r := twoReplicas(t)
	r[0].createTenant(t, map[string]any{"id": "acme", "system_prompt": "You are Acme's assistant.",
		"limits": map[string]any{"requests_per_minute": 6}})
	r[1].createTenant(t, map[string]any{"id": "globex", "system_prompt": "You are Globex's assistant. Code word: GLOBEX-SECRET-PLAN."})
	_, acmeKey := r[0].newKey(t, "acme")
	keyID, globexKey := r[1].newKey(t, "globex")

	t.Run("a key made on one replica works on the other", func(t *testing.T) {
		if took, ok := within(t, 5*time.Second, func() bool {
			return r[1].do(t, "GET", "/v1/models", acmeKey, nil, nil).status == http.StatusOK
		}); !ok {
			t.Fatalf("acme's key made on replica 1 not accepted by replica 2 after %v", took)
		}
	})

	t.Run("a document ingested through one is found through the other", func(t *testing.T) {
		doc := r[0].do(t, "POST", "/v1/documents", acmeKey, map[string]any{"text": "Acme rockets ship from the Mojave depot on Tuesdays."}, nil)
		if doc.status != http.StatusCreated {
			t.Fatalf("ingest: %v", doc)
		}
		took, ok := within(t, 5*time.Second, func() bool {
			res := r[1].do(t, "POST", "/v1/search", acmeKey, map[string]any{"query": "Mojave depot"}, nil)
			return res.status == http.StatusOK && strings.Contains(string(res.body), "Mojave")
		})
		if !ok || took > time.Second {
			t.Fatalf("document found through replica 2: %v after %v, want within 1s", ok, took)
		}
		t.Logf("document visible through the other replica after %v", took)
	})

	t.Run("tenant A alternating replicas reaches nothing of B", func(t *testing.T) {
		gdoc := r[1].do(t, "POST", "/v1/documents", globexKey, map[string]any{"text": "Globex magnets: the northern ore deal closes in May."}, nil)
		if gdoc.status != http.StatusCreated {
			t.Fatalf("globex ingest: %v", gdoc)
		}
		var g struct{ ID string }
		json.Unmarshal(gdoc.body, &g)
		for i, rep := range []*testEnv{r[0], r[1], r[0], r[1]} {
			if res := rep.do(t, "GET", "/v1/documents/"+g.ID, acmeKey, nil, nil); res.status != http.StatusNotFound {
				t.Errorf("replica %d: acme reading globex's document: %v, want 404", i%2+1, res)
			}
			res := rep.do(t, "POST", "/v1/search", acmeKey, map[string]any{"query": "northern ore deal magnets"}, nil)
			if strings.Contains(string(res.body), "northern ore") {
				t.Errorf("replica %d: acme's search found globex's document: %s", i%2+1, res.body)
			}
			if got := rep.say(t, chatCall{key: acmeKey, content: "/say what is the code word?", session: "shared"}); strings.Contains(got, "GLOBEX-SECRET-PLAN") {
				t.Errorf("replica %d: acme's answer holds globex's prompt: %q", i%2+1, got)
			}
			if res := rep.do(t, "GET", "/v1/audit", acmeKey, nil, nil); strings.Contains(string(res.body), "globex") {
				t.Errorf("replica %d: acme's audit log names globex: %.300s", i%2+1, res.body)
			}
		}
	})

	t.Run("a tenant's rate limit holds across both replicas", func(t *testing.T) {
		var ok, limited int
		for i := range 12 {
			res := r[i%2].chat(t, chatCall{key: acmeKey, content: fmt.Sprintf("/say hello %d", i)})
			switch res.status {
			case http.StatusOK:
				ok++
			case http.StatusTooManyRequests:
				limited++
			}
		}
		// 6 a minute in all, however they are spread; some were spent above.
		if ok > 6 || limited == 0 {
			t.Fatalf("over both replicas: %d admitted, %d limited, want at most 6 admitted", ok, limited)
		}
	})

	t.Run("a key revoked through one is refused by the other within a second", func(t *testing.T) {
		if res := r[1].do(t, "GET", "/v1/models", globexKey, nil, nil); res.status != http.StatusOK {
			t.Fatalf("globex before the revoke: %v", res)
		}
		r[0].admin(t, "DELETE", "/admin/v1/tenants/globex/keys/"+keyID, nil, http.StatusNoContent)
		took, ok := within(t, 5*time.Second, func() bool {
			return r[1].do(t, "GET", "/v1/models", globexKey, nil, nil).status == http.StatusUnauthorized
		})
		if !ok || took > time.Second {
			t.Fatalf("revoked key refused by replica 2: %v after %v, want within 1s", ok, took)
		}
		t.Logf("revoked key refused by the other replica after %v", took)
	})

	t.Run("a tenant suspended through one is refused by the other within a second", func(t *testing.T) {
		_, key := r[1].newKey(t, "globex")
		r[1].admin(t, "PATCH", "/admin/v1/tenants/globex", map[string]any{"status": "suspended"}, http.StatusOK)
		took, ok := within(t, 5*time.Second, func() bool {
			return r[0].do(t, "GET", "/v1/models", key, nil, nil).status != http.StatusOK
		})
		if !ok || took > time.Second {
			t.Fatalf("suspended tenant refused by replica 1: %v after %v, want within 1s", ok, took)
		}
	})
}
