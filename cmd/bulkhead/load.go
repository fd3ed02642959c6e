package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"regexp"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/bulkhead-ai/bulkhead/internal/config"
	"github.com/bulkhead-ai/bulkhead/internal/server"
)

// loadOptions are the flags of bulkhead load.
type loadOptions struct {
	target, adminToken, dataDir, cpuProfile string
	rate                                    float64
	duration                                time.Duration
	tenants, maxInFlight                    int
	sessions, stream, cancel, tools         float64
	seed                                    uint64
}

func newLoadCmd(getenv func(string) string, stdout, stderr io.Writer) *cobra.Command {
	o := loadOptions{}
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Drive a mixed load with cancellations and check every answer and history belongs to its own request",
		Long: `load creates its tenants (each with a key, a memory and the memory_search
tool), then sends chat requests at a fixed rate: a mix of sessions,
streaming, cancellations mid-flight and tool calls. Every request carries a
marker; an answer holding another request's marker or another tenant's
name, or a session history holding another session's turns or its own out
of order, is a mismatch. It prints throughput, latency and errors and exits
non-zero on any mismatch. Without --target it runs an in-process server on
a fresh data directory with the offline scripted model.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.target != "" && o.adminToken == "" {
				o.adminToken = getenv("BULKHEAD_ADMIN_TOKEN")
			}
			res, err := runLoad(cmd.Context(), o, getenv, stderr)
			if err != nil {
				return err
			}
			res.print(stdout)
			if res.mismatches.Load() > 0 {
				return fmt.Errorf("load: %d mismatched responses or histories", res.mismatches.Load())
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.target, "target", "", "base URL of a running server (default: an in-process one)")
	f.StringVar(&o.adminToken, "admin-token", "", "admin token of --target (default $BULKHEAD_ADMIN_TOKEN)")
	f.StringVar(&o.dataDir, "data", "", "data directory of the in-process server (default: a temporary one)")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the run (client and in-process server) to this file")
	f.Float64Var(&o.rate, "rate", 200, "requests per second")
	f.DurationVar(&o.duration, "duration", 60*time.Second, "how long to send")
	f.IntVar(&o.tenants, "tenants", 100, "tenants")
	f.IntVar(&o.maxInFlight, "max-in-flight", 4096, "requests in flight at most; one due beyond it is counted as dropped")
	f.Float64Var(&o.sessions, "sessions", 0.4, "share of requests in a server-side session")
	f.Float64Var(&o.stream, "stream", 0.5, "share of requests streamed")
	f.Float64Var(&o.cancel, "cancel", 0.2, "share of requests cancelled mid-flight")
	f.Float64Var(&o.tools, "tools", 0.1, "share of requests that make a tool call")
	f.Uint64Var(&o.seed, "seed", 1, "random seed of the mix")
	return cmd
}

// loadTenant is one tenant the run created.
type loadTenant struct {
	id, key  string
	sessions []*loadSession
	mu       sync.Mutex // guards sessions
}

// loadSession is one X-Session-Id; its turns are sent one at a time, so
// its history has an order to check.
type loadSession struct {
	id   string
	busy sync.Mutex
	// sent are the markers of the turns sent in it, in order; done the
	// ones that completed (a cancelled turn may or may not be kept).
	sent []string
	done map[string]bool
}

// loadResult counts what happened.
type loadResult struct {
	opts                                          loadOptions
	elapsed                                       time.Duration
	sent, completed, cancelled, dropped, errCount atomic.Int64
	mismatches                                    atomic.Int64
	mu                                            sync.Mutex
	latencies                                     []time.Duration
	errors                                        map[string]int
	examples                                      []string
}

func (r *loadResult) fail(mismatch bool, what string) {
	if mismatch {
		r.mismatches.Add(1)
	} else {
		r.errCount.Add(1)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !mismatch {
		r.errors[what]++
	}
	if mismatch && len(r.examples) < 10 {
		r.examples = append(r.examples, what)
	}
}

func (r *loadResult) print(w io.Writer) {
	slices.Sort(r.latencies)
	pct := func(p float64) time.Duration {
		if len(r.latencies) == 0 {
			return 0
		}
		return r.latencies[min(len(r.latencies)-1, int(p*float64(len(r.latencies))))]
	}
	secs := r.elapsed.Seconds()
	fmt.Fprintf(w, "rate %.0f/s for %s, %d tenants (sessions %.0f%%, streamed %.0f%%, cancelled %.0f%%, tool calls %.0f%%)\n",
		r.opts.rate, r.opts.duration, r.opts.tenants, 100*r.opts.sessions, 100*r.opts.stream, 100*r.opts.cancel, 100*r.opts.tools)
	fmt.Fprintf(w, "sent %d, completed %d, cancelled %d, dropped %d, errors %d\n",
		r.sent.Load(), r.completed.Load(), r.cancelled.Load(), r.dropped.Load(), r.errCount.Load())
	fmt.Fprintf(w, "throughput %.0f req/s (completed + cancelled over %.1fs)\n", float64(r.completed.Load()+r.cancelled.Load())/secs, secs)
	fmt.Fprintf(w, "latency of completed: p50 %s, p99 %s, max %s\n", pct(0.50).Round(time.Microsecond*100), pct(0.99).Round(time.Microsecond*100), pct(1).Round(time.Microsecond*100))
	for what, n := range r.errors {
		fmt.Fprintf(w, "  error %dx: %s\n", n, what)
	}
	fmt.Fprintf(w, "mismatched responses or histories: %d\n", r.mismatches.Load())
	for _, e := range r.examples {
		fmt.Fprintf(w, "  %s\n", e)
	}
}

// runLoad sets up the tenants and sends the load.
func runLoad(ctx context.Context, o loadOptions, getenv func(string) string, stderr io.Writer) (res *loadResult, err error) {
	if o.rate <= 0 || o.tenants <= 0 || o.duration <= 0 {
		return nil, errors.New("load: --rate, --tenants and --duration must be positive")
	}
	base, admin := o.target, o.adminToken
	if base == "" {
		var stop func() error
		base, admin, stop, err = startLoadServer(ctx, o.dataDir, getenv)
		if err != nil {
			return nil, err
		}
		defer func() { err = errors.Join(err, stop()) }()
	}
	base = strings.TrimSuffix(base, "/")
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: 30 * time.Second}}
	l := &loader{ctx: ctx, base: base, admin: admin, client: client}

	var run [3]byte
	rand.Read(run[:])
	prefix := hex.EncodeToString(run[:]) // the run's own tenants, on a shared target too
	tenants := make([]*loadTenant, o.tenants)
	fmt.Fprintf(stderr, "load: creating %d tenants on %s\n", o.tenants, base)
	for i := range tenants {
		t, err := l.createTenant(fmt.Sprintf("lt-%s-%03d", prefix, i))
		if t != nil {
			tenants[i] = t
		}
		if err != nil {
			l.cleanup(tenants)
			return nil, err
		}
	}
	defer func() {
		if n := l.cleanup(tenants); n > 0 {
			fmt.Fprintf(stderr, "load: %d tenants could not be deleted\n", n)
		}
	}()

	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return nil, fmt.Errorf("load: create cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, fmt.Errorf("load: start cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	res = &loadResult{opts: o, errors: map[string]int{}}
	rng := mrand.New(mrand.NewPCG(o.seed, 14))
	sem := make(chan struct{}, o.maxInFlight)
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / o.rate)
	start := time.Now()
	for i := 0; ; i++ {
		due := start.Add(time.Duration(i) * interval)
		if due.Sub(start) >= o.duration || ctx.Err() != nil {
			break
		}
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		req := loadRequest{
			n: i, tenant: tenants[rng.IntN(len(tenants))],
			session: rng.Float64() < o.sessions, stream: rng.Float64() < o.stream,
			cancel: rng.Float64() < o.cancel, tool: rng.Float64() < o.tools,
			cancelAfter: time.Duration(rng.IntN(3000)) * time.Microsecond,
		}
		select {
		case sem <- struct{}{}:
		default:
			res.dropped.Add(1)
			continue
		}
		res.sent.Add(1)
		wg.Go(func() {
			defer func() { <-sem }()
			l.do(req, res)
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res, nil
}

// startLoadServer opens a server on a fresh data directory (or dataDir)
// with the offline model and serves it on a loopback port.
func startLoadServer(ctx context.Context, dataDir string, getenv func(string) string) (base, admin string, stop func() error, err error) {
	cleanDir := func() error { return nil }
	if dataDir == "" {
		dir, err := os.MkdirTemp("", "bulkhead-load-")
		if err != nil {
			return "", "", nil, fmt.Errorf("load: create data directory: %w", err)
		}
		dataDir, cleanDir = dir, func() error { return os.RemoveAll(dir) }
	}
	cfg, err := config.Parse(nil)
	if err != nil {
		return "", "", nil, errors.Join(err, cleanDir())
	}
	var raw [24]byte
	rand.Read(raw[:])
	admin = base64.RawURLEncoding.EncodeToString(raw[:])
	key, err := masterKey(dataDir, getenv, io.Discard)
	if err != nil {
		return "", "", nil, errors.Join(err, cleanDir())
	}
	inst, err := server.Open(ctx, server.Options{DataDir: dataDir, Config: cfg, AdminToken: admin, MasterKey: key,
		Getenv: getenv, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return "", "", nil, errors.Join(err, cleanDir())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", nil, errors.Join(fmt.Errorf("load: listen: %w", err), inst.Close(), cleanDir())
	}
	srv := &http.Server{Handler: inst.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // Serve returns ErrServerClosed after Shutdown.
	stop = func() error {
		return errors.Join(srv.Shutdown(context.WithoutCancel(ctx)), inst.Close(), cleanDir())
	}
	return "http://" + ln.Addr().String(), admin, stop, nil
}

type loader struct {
	ctx             context.Context
	base, admin     string
	client          *http.Client
	sessionsCreated atomic.Int64
}

func (l *loader) call(method, path, token string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(l.ctx, method, l.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := l.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// createTenant makes one tenant with a key, the memory_search tool and one
// memory of end user u1 that names the tenant.
func (l *loader) createTenant(id string) (*loadTenant, error) {
	status, body, err := l.call(http.MethodPost, "/admin/v1/tenants", l.admin, map[string]any{
		"id": id, "name": id, "system_prompt": "You are the agent of " + id + ".", "tools": []string{"memory_search"},
	})
	if err != nil || status != http.StatusCreated {
		return nil, fmt.Errorf("load: create tenant %s: %d %s %v", id, status, body, err)
	}
	t := &loadTenant{id: id}
	status, body, err = l.call(http.MethodPost, "/admin/v1/tenants/"+id+"/keys", l.admin, nil)
	var k struct{ Key string }
	if err != nil || status != http.StatusCreated || json.Unmarshal(body, &k) != nil {
		return t, fmt.Errorf("load: key for %s: %d %s %v", id, status, body, err)
	}
	t.key = k.Key
	status, body, err = l.call(http.MethodPost, "/v1/memories", t.key, map[string]any{"user": "u1", "text": "the load fact of " + id})
	if err != nil || status/100 != 2 {
		return t, fmt.Errorf("load: memory for %s: %d %s %v", id, status, body, err)
	}
	return t, nil
}

// cleanup deletes the tenants the run created (a --target keeps nothing)
// and returns how many it could not.
func (l *loader) cleanup(tenants []*loadTenant) (failed int) {
	for _, t := range tenants {
		if t == nil {
			continue
		}
		if status, _, err := l.call(http.MethodDelete, "/admin/v1/tenants/"+t.id, l.admin, nil); err != nil || status != http.StatusNoContent {
			failed++
		}
	}
	return failed
}

// loadRequest is one request of the mix.
type loadRequest struct {
	n                             int
	tenant                        *loadTenant
	session, stream, cancel, tool bool
	cancelAfter                   time.Duration
}

var (
	markerRE    = regexp.MustCompile(`mk\d+x`)
	tenantRE    = regexp.MustCompile(`lt-[a-z0-9]+-\d{3}`)
	earlierRE   = regexp.MustCompile(`(?s)Earlier you said: (.*)$`)
	errCanceled = errors.New("cancelled")
)

// session picks an idle session of the tenant, or starts one.
func (l *loader) session(t *loadTenant) *loadSession {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.sessions {
		if s.busy.TryLock() {
			return s
		}
	}
	s := &loadSession{id: fmt.Sprintf("s%d", l.sessionsCreated.Add(1)), done: map[string]bool{}}
	s.busy.Lock()
	t.sessions = append(t.sessions, s)
	return s
}

func (l *loader) do(lr loadRequest, res *loadResult) {
	marker := fmt.Sprintf("mk%dx", lr.n)
	content := "question " + marker
	if lr.tool {
		content += "\n/call memory_search {\"query\": \"load fact\"}"
	}
	var sess *loadSession
	var before []string
	var doneBefore map[string]bool
	if lr.session {
		sess = l.session(lr.tenant)
		defer sess.busy.Unlock()
		before, doneBefore = slices.Clone(sess.sent), sess.done
		sess.sent = append(sess.sent, marker)
	}
	body, _ := json.Marshal(map[string]any{
		"model": "default", "user": "u1", "stream": lr.stream,
		"messages": []map[string]string{{"role": "user", "content": content}},
	})
	ctx, cancel := context.WithCancel(l.ctx)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, l.base+"/v1/chat/completions", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+lr.tenant.key)
	req.Header.Set("Content-Type", "application/json")
	if sess != nil {
		req.Header.Set("X-Session-Id", sess.id)
	}
	if lr.cancel && !lr.stream {
		time.AfterFunc(lr.cancelAfter, cancel)
	}
	start := time.Now()
	answer, err := l.send(req, lr, cancel)
	took := time.Since(start)
	switch {
	case err != nil && lr.cancel && ctx.Err() != nil:
		res.cancelled.Add(1)
		// What arrived before the cancel must still be this request's.
		l.check(lr, marker, answer, before, doneBefore, true, res)
		return
	case err != nil:
		res.fail(false, err.Error())
		return
	}
	res.completed.Add(1)
	res.mu.Lock()
	res.latencies = append(res.latencies, took)
	res.mu.Unlock()
	if sess != nil {
		sess.done[marker] = true
	}
	l.check(lr, marker, answer, before, doneBefore, false, res)
}

// send makes the request and returns the answer's content. A streamed
// request to cancel is cancelled after its first delta.
func (l *loader) send(req *http.Request, lr loadRequest, cancel func()) (string, error) {
	resp, err := l.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, firstLine(b))
	}
	if !lr.stream {
		var c struct {
			Choices []struct {
				Message struct{ Content string } `json:"message"`
			} `json:"choices"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
			return "", fmt.Errorf("decode answer: %w", err)
		}
		if len(c.Choices) != 1 {
			return "", fmt.Errorf("answer has %d choices", len(c.Choices))
		}
		return c.Choices[0].Message.Content, nil
	}
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			return b.String(), nil
		}
		var c struct {
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
			Error *struct{ Message string } `json:"error"`
		}
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			return b.String(), fmt.Errorf("decode chunk: %w", err)
		}
		if c.Error != nil {
			return b.String(), fmt.Errorf("stream error: %s", c.Error.Message)
		}
		for _, ch := range c.Choices {
			b.WriteString(ch.Delta.Content)
		}
		if lr.cancel && b.Len() > 0 {
			cancel()
		}
	}
	if err := sc.Err(); err != nil {
		return b.String(), err
	}
	return b.String(), errors.New("stream ended without [DONE]")
}

// check reports a mismatch if answer holds anything not this request's:
// another request's marker (other than its session's earlier turns),
// another tenant's name, or a history out of order; and, for a completed
// answer, if it lacks its own marker, tenant or earlier turns.
func (l *loader) check(lr loadRequest, marker, answer string, before []string, doneBefore map[string]bool, partial bool, res *loadResult) {
	bad := func(format string, args ...any) {
		res.fail(true, fmt.Sprintf("request %d (tenant %s): ", lr.n, lr.tenant.id)+fmt.Sprintf(format, args...)+fmt.Sprintf(" in %q", truncate(answer, 300)))
	}
	for _, id := range tenantRE.FindAllString(answer, -1) {
		if id != lr.tenant.id {
			bad("another tenant's name %s", id)
			return
		}
	}
	own := map[string]bool{marker: true}
	for _, m := range before {
		own[m] = true
	}
	for _, m := range markerRE.FindAllString(answer, -1) {
		if !own[m] {
			bad("another request's marker %s", m)
			return
		}
	}
	if partial {
		return
	}
	if lr.tool {
		// The model's answer after the tool: the tenant's own memory.
		if !strings.Contains(answer, "the load fact of "+lr.tenant.id) {
			bad("the tool result lacks the tenant's own memory")
		}
		return
	}
	if !strings.Contains(answer, `You said: "question `+marker+`"`) || !strings.Contains(answer, lr.tenant.id) {
		bad("the answer lacks its own marker or tenant")
		return
	}
	m := earlierRE.FindStringSubmatch(answer)
	if m == nil {
		bad("no history line")
		return
	}
	earlier := markerRE.FindAllString(m[1], -1)
	if !lr.session {
		if len(earlier) > 0 {
			bad("a request without a session has history %v", earlier)
		}
		return
	}
	// The completed turns before this one must be there, in the order they
	// were sent; a turn cancelled in flight may be there or not, and
	// anywhere after it was sent: its request may reach the server after
	// the client's next one, and an answer computed is kept (agent.record).
	var got []string
	seen := map[string]bool{}
	for _, e := range earlier {
		if seen[e] {
			bad("history %v holds %s twice", earlier, e)
			return
		}
		seen[e] = true
		if doneBefore[e] {
			got = append(got, e)
		}
	}
	var want []string
	for _, b := range before {
		if doneBefore[b] {
			want = append(want, b)
		}
	}
	// The model sees the latest messages only (agent.HistoryMessages): the
	// oldest turns of a long session may be cut, never others.
	if len(got) > len(want) || !slices.Equal(got, want[len(want)-len(got):]) || len(got) == 0 && len(want) > 0 {
		bad("history %v: completed turns %v, want the latest of %v (sent %v)", earlier, got, want, before)
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}
