package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auditchain"
)

// serveArgsEnv makes the test binary run `bulkhead` with the JSON-encoded
// arguments it holds instead of the tests (see TestMain), so that a test can
// kill a real server process.
const serveArgsEnv = "BULKHEAD_TEST_RUN_ARGS"

// startServerProcess runs `bulkhead serve` on dataDir in a process of its
// own and waits until it is healthy.
func startServerProcess(t *testing.T, dataDir string, env map[string]string) (base string, proc *os.Process) {
	t.Helper()
	addr := freeAddr(t)
	args, _ := json.Marshal([]string{"serve", "--addr", addr, "--data", dataDir})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serveArgsEnv+"="+string(args))
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the server process: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("server process log:\n%s", logs.String())
		}
	})
	base = "http://" + addr
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := client.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base, cmd.Process
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server process not healthy after 30s; log:\n%s", logs.String())
		}
	}
}

// tryCall is call for a server that may be gone: it returns the error
// instead of failing the test.
func tryCall(url, method, token string, body any) (int, []byte, error) {
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	req, err := http.NewRequest(method, url, bytes.NewReader(b))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

// writers runs step(w, n) for n = 0, 1, … in each of n writers w until stop
// is closed or step returns false (the server went away).
func writers(count int, stop <-chan struct{}, step func(w, n int) bool) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range count {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if !step(w, n) {
					return
				}
			}
		}()
	}
	return &wg
}

// acked is a change the server acknowledged: its audit record type and the
// value that identifies it in the record's data.
type acked struct{ typ, field, value string }

// TestKillDuringChangesLosesNoAuditRecord changes a tenant's secrets and
// keys from several clients at once, kills the server with SIGKILL in the
// middle, restarts it, and checks that every change the server acknowledged
// has its audit record and that the chain verifies.
func TestKillDuringChangesLosesNoAuditRecord(t *testing.T) {
	dir := t.TempDir()
	const admin = "bka_test_crash_admin_token_1234567"
	env := map[string]string{"BULKHEAD_ADMIN_TOKEN": admin}
	base, proc := startServerProcess(t, dir, env)
	createTenantKey(t, base, admin, map[string]any{"id": "acme"})

	var mu sync.Mutex
	var done []acked
	ack := func(a acked) { mu.Lock(); done = append(done, a); mu.Unlock() }
	send := func(method, path string, body any) (int, []byte, error) {
		return tryCall(base+path, method, admin, body)
	}

	stop := make(chan struct{})
	wg := writers(3, stop, func(w, n int) bool {
		name := fmt.Sprintf("s_%d_%d", w, n)
		status, _, err := send("PUT", "/admin/v1/tenants/acme/secrets/"+name, map[string]string{"value": "v-" + name})
		if err != nil {
			return false // the server is gone
		}
		if status == http.StatusNoContent {
			ack(acked{"secret.set", "secret", name})
		}
		status, b, err := send("POST", "/admin/v1/tenants/acme/keys", nil)
		if err != nil {
			return false
		}
		if status == http.StatusCreated {
			var k struct{ ID string }
			json.Unmarshal(b, &k)
			ack(acked{"key.create", "key_id", k.ID})
			if n%2 == 0 {
				status, _, err := send("DELETE", "/admin/v1/tenants/acme/keys/"+k.ID, nil)
				if err != nil {
					return false
				}
				if status == http.StatusNoContent {
					ack(acked{"key.revoke", "key_id", k.ID})
				}
			}
		}
		return true
	})
	time.Sleep(1500 * time.Millisecond)
	if err := proc.Kill(); err != nil {
		t.Fatalf("killing the server: %v", err)
	}
	close(stop)
	wg.Wait()
	if len(done) < 10 {
		t.Fatalf("only %d changes were acknowledged before the kill; the test needs more", len(done))
	}

	base, _ = startServerWith(t, dir, env)
	status, b := call(t, http.MethodGet, base+"/admin/v1/tenants/acme/audit?limit=10000", admin, nil)
	if status != http.StatusOK {
		t.Fatalf("audit after restart: %d %s", status, b)
	}
	recs, err := decodeAudit(b)
	if err != nil {
		t.Fatalf("decoding the audit log: %v", err)
	}
	if err := auditchain.Verify(recs); err != nil {
		t.Fatalf("the audit chain does not verify after the kill: %v", err)
	}
	have := map[acked]bool{}
	for _, r := range recs {
		var data map[string]any
		json.Unmarshal(r.Data, &data)
		for _, f := range []string{"secret", "key_id"} {
			if v, ok := data[f].(string); ok {
				have[acked{r.Type, f, v}] = true
			}
		}
	}
	missing := 0
	for _, a := range done {
		if !have[a] {
			missing++
			t.Errorf("acknowledged %s %s=%s has no audit record", a.typ, a.field, a.value)
		}
	}
	t.Logf("%d acknowledged changes before SIGKILL, %d audit records after restart, %d missing", len(done), len(recs), missing)
}
