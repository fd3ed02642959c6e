// Package redteam is Bulkhead's attack suite: named scenarios, each an attack
// a hostile model (package hostile) or a hostile tenant backend makes through
// the HTTP API, the enforcement point that must stop it, and a check that
// either finds what got out (a leak) or the evidence that it was stopped (the
// audit entries, or the response, that show the block).
//
// Run talks to Bulkhead only over HTTP, admin and tenant API, so the same
// suite runs against a server in this process and a remote deployment. It
// creates its own tenants and tools under a random prefix and deletes them
// afterwards, whatever happened.
package redteam

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// Layer names an enforcement point: the part of Bulkhead that must stop an
// attack. The names are those of package layers' switches.
type Layer string

// The enforcement points.
const (
	LayerStore     Layer = "store"     // storage scoping: every read and write is the caller's tenant's
	LayerPolicy    Layer = "policy"    // Cedar tool authorization
	LayerBinding   Layer = "binding"   // tenant-bound tool parameters
	LayerRedaction Layer = "redaction" // secrets removed from tool results, model input and output
	LayerAnswer    Layer = "guard.answer"
	LayerStream    Layer = "guard.stream"
	LayerToolArgs  Layer = "guard.toolargs"
	LayerToolRes   Layer = "guard.toolresults"
	LayerCache     Layer = "cache"     // cache partitioning
	LayerQuota     Layer = "quota"     // per-tenant limits
	LayerLifecycle Layer = "lifecycle" // delete, suspend, revoke cancel in-flight work
	LayerAuth      Layer = "auth"      // identity from credentials only
)

// Scenario is one named attack.
type Scenario struct {
	Name   string `json:"name"`
	Threat string `json:"threat"` // the DESIGN.md threat-model row or HARDENING.md class
	Layer  Layer  `json:"layer"`  // the enforcement point that must stop it
	Setup  string `json:"setup"`
	Attack string `json:"attack"`
	Check  string `json:"check"`
	run    func(ctx context.Context, w *world, t *trial) error
}

// Options configure Run.
type Options struct {
	// Target is the deployment's base URL, e.g. http://127.0.0.1:8080.
	Target string
	// AdminToken is its admin bearer token.
	AdminToken string
	// Model is the tenants' model; it must name a provider of type redteam.
	// Empty means "redteam/hostile".
	Model string
	// ToolListen is where the suite's tool server listens (default
	// 127.0.0.1:0); ToolURL is how the deployment reaches it (default
	// http://<the listening address>).
	ToolListen string
	ToolURL    string
	// Only, if set, runs only the scenarios it reports true for.
	Only func(Scenario) bool
	// HTTP is the client to use; nil means a client with a 60 s timeout.
	HTTP *http.Client
}

// Evidence is what shows an attempt was blocked: audit entries, or failing
// that the HTTP response that refused it.
type Evidence struct {
	Source string `json:"source"` // "audit" or "http"
	Text   string `json:"text"`
}

// Attempt is one try within a scenario.
type Attempt struct {
	What     string     `json:"what"`
	Leaked   bool       `json:"leaked"`
	Detail   string     `json:"detail,omitempty"` // what got out, for a leak
	Evidence []Evidence `json:"evidence,omitempty"`
}

// Result is one scenario's outcome.
type Result struct {
	Scenario
	Attempts []Attempt     `json:"attempts"`
	Error    string        `json:"error,omitempty"` // the scenario could not run: counted as a leak
	Duration time.Duration `json:"duration_ns"`
}

// Leaked reports whether anything got out, or the scenario could not show
// that nothing did.
func (r Result) Leaked() bool {
	if r.Error != "" {
		return true
	}
	for _, a := range r.Attempts {
		if a.Leaked {
			return true
		}
	}
	return false
}

// Report is the whole run.
type Report struct {
	Target    string        `json:"target"`
	Prefix    string        `json:"prefix"`
	Started   time.Time     `json:"started"`
	Duration  time.Duration `json:"duration_ns"`
	Scenarios int           `json:"scenarios"`
	Attempts  int           `json:"attempts"`
	Blocked   int           `json:"blocked"`
	Leaked    int           `json:"leaked"`
	Results   []Result      `json:"results"`
}

// Scenarios returns the suite's scenarios, in order.
func Scenarios() []Scenario { return scenarios() }

// Run sets up the tenants, runs every scenario and removes what it created,
// even when ctx is cancelled. An error means the suite could not run at all;
// a scenario's own failure is in its Result.
func Run(ctx context.Context, opts Options) (rep Report, err error) {
	if opts.Target == "" || opts.AdminToken == "" {
		return Report{}, errors.New("redteam: a target URL and an admin token are required")
	}
	if opts.Model == "" {
		opts.Model = "redteam/hostile"
	}
	hc := opts.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 60 * time.Second}
	}
	var raw [4]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return Report{}, fmt.Errorf("redteam: random prefix: %w", err)
	}
	prefix := "rt" + hex.EncodeToString(raw[:])

	listen := opts.ToolListen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return Report{}, fmt.Errorf("redteam: tool server: %w", err)
	}
	tools := &toolServer{}
	hs := &http.Server{Handler: tools, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln) //nolint:errcheck // ErrServerClosed after Close below.
	defer hs.Close()
	toolURL := opts.ToolURL
	if toolURL == "" {
		toolURL = "http://" + ln.Addr().String()
	}

	w := &world{c: &client{base: opts.Target, admin: opts.AdminToken, http: hc}, prefix: prefix,
		model: opts.Model, tools: tools, toolURL: toolURL}
	// Cleanup runs on a context that outlives ctx: an interrupted run still
	// deletes its tenants and tools.
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
		defer cancel()
		err = errors.Join(err, w.cleanup(cctx))
	}()

	rep = Report{Target: opts.Target, Prefix: prefix, Started: time.Now().UTC()}
	if err := w.setup(ctx); err != nil {
		return rep, fmt.Errorf("redteam: set up tenants: %w", err)
	}
	for _, s := range scenarios() {
		if opts.Only != nil && !opts.Only(s) {
			continue
		}
		if ctx.Err() != nil {
			return rep, fmt.Errorf("redteam: %w", ctx.Err())
		}
		rep.Results = append(rep.Results, runOne(ctx, w, s))
	}
	rep.Duration = time.Since(rep.Started)
	rep.tally()
	return rep, nil
}

func (rep *Report) tally() {
	rep.Scenarios = len(rep.Results)
	rep.Attempts, rep.Blocked, rep.Leaked = 0, 0, 0
	for _, r := range rep.Results {
		if r.Error != "" {
			rep.Attempts++
			rep.Leaked++
		}
		for _, a := range r.Attempts {
			rep.Attempts++
			if a.Leaked {
				rep.Leaked++
			} else {
				rep.Blocked++
			}
		}
	}
}

func runOne(ctx context.Context, w *world, s Scenario) Result {
	start := time.Now()
	t := &trial{w: w}
	err := s.run(ctx, w, t)
	res := Result{Scenario: s, Duration: time.Since(start)}
	for _, a := range t.attempts {
		res.Attempts = append(res.Attempts, *a)
	}
	switch {
	case err != nil:
		res.Error = err.Error()
	case len(t.attempts) == 0:
		res.Error = "the scenario made no attempt"
	}
	for _, a := range res.Attempts {
		if !a.Leaked && len(a.Evidence) == 0 {
			res.Error = fmt.Sprintf("attempt %q: no evidence of a block", a.What)
		}
	}
	return res
}

// trial collects a scenario's attempts.
type trial struct {
	w        *world
	attempts []*Attempt
}

// attempt starts a try; the scenario then calls leak or prove on it.
func (t *trial) attempt(what string) *Attempt {
	a := &Attempt{What: what}
	t.attempts = append(t.attempts, a)
	return a
}

// leak records that something got out.
func (a *Attempt) leak(format string, args ...any) {
	a.Leaked = true
	d := fmt.Sprintf(format, args...)
	if len(d) > 400 {
		d = d[:400] + "…"
	}
	if a.Detail != "" {
		a.Detail += "; "
	}
	a.Detail += d
}

// http records a refusing response as evidence.
func (a *Attempt) http(format string, args ...any) {
	a.Evidence = append(a.Evidence, Evidence{Source: "http", Text: oneLine(fmt.Sprintf(format, args...))})
}

// entries records audit entries as evidence.
func (a *Attempt) entries(es []Entry) {
	for _, e := range es {
		a.Evidence = append(a.Evidence, Evidence{Source: "audit", Text: e.String()})
	}
}

// oneLine folds runs of white space, so evidence prints one line each.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
