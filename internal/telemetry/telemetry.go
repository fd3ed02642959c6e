// Package telemetry gives operators Prometheus metrics and OpenTelemetry
// traces of what the server does. It sees route patterns, statuses, stage
// names, durations, decisions and tenant ids, never message content,
// arguments or secrets: labels and attributes are only ever chosen from
// bounded sets of the runtime's own words.
package telemetry

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/bulkhead-ai/bulkhead/internal/agent"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Options configure New.
type Options struct {
	// Tenants are the only tenants with series of their own (a "tenant"
	// label); every other tenant's requests count under tenant="". The list
	// bounds the series however many tenants there are.
	Tenants []tenant.ID
	// OpenTenants, if set, reports how many tenant databases are open.
	OpenTenants func() int
	// Exporter, if set, receives the spans of every request; nil turns
	// tracing off. Sync exports each span as it ends (for tests).
	Exporter sdktrace.SpanExporter
	Sync     bool
	// ServiceName names the service in traces; default "bulkhead".
	ServiceName string
}

// Telemetry holds the metrics and the tracer. Its methods are safe for
// concurrent use; a nil *Telemetry records nothing.
type Telemetry struct {
	reg      *prometheus.Registry
	tenants  map[tenant.ID]bool
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	stages   *prometheus.HistogramVec
	blocks   *prometheus.CounterVec
	tools    *prometheus.CounterVec
	cache    *prometheus.CounterVec
	refusals *prometheus.CounterVec
	upstream *prometheus.CounterVec

	provider *sdktrace.TracerProvider
	tracer   trace.Tracer // nil: tracing off
}

// New returns the server's telemetry, its metrics registered in a registry
// of its own (with the Go runtime's and the process's).
func New(o Options) (*Telemetry, error) {
	t := &Telemetry{reg: prometheus.NewRegistry(), tenants: map[tenant.ID]bool{}}
	for _, id := range o.Tenants {
		t.tenants[id] = true
	}
	stageBuckets := []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	t.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bulkhead_http_requests_total",
		Help: "HTTP requests by route pattern and status (tenant only for the configured tenants)."}, []string{"route", "status", "tenant"})
	t.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "bulkhead_http_request_duration_seconds",
		Help: "HTTP request latency by route pattern.", Buckets: stageBuckets}, []string{"route"})
	t.stages = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "bulkhead_stage_duration_seconds",
		Help:    "Latency of each stage of a request (auth, quota, history, retrieval, cache, model, tools, guard, audit).",
		Buckets: stageBuckets}, []string{"stage"})
	t.blocks = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bulkhead_guard_blocks_total",
		Help: "Answers and tool arguments the output guard withheld, by kind."}, []string{"kind", "tenant"})
	t.tools = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bulkhead_tool_calls_total",
		Help: "Tool calls by catalog tool and decision (allow, deny, error)."}, []string{"tool", "decision", "tenant"})
	t.cache = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bulkhead_response_cache_lookups_total",
		Help: "Response cache lookups by result (hit, miss)."}, []string{"result", "tenant"})
	t.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bulkhead_quota_refusals_total",
		Help: "Turns refused by the tenant's limits."}, []string{"tenant"})
	t.upstream = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bulkhead_upstream_errors_total",
		Help: "Model provider calls that failed, by failure (status code, timeout, unreachable)."}, []string{"failure"})
	cs := []prometheus.Collector{t.requests, t.latency, t.stages, t.blocks, t.tools, t.cache, t.refusals, t.upstream,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})}
	if o.OpenTenants != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "bulkhead_open_tenant_databases",
			Help: "Tenant databases open in this process."}, func() float64 { return float64(o.OpenTenants()) }))
	}
	for _, c := range cs {
		if err := t.reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	if o.Exporter != nil {
		name := o.ServiceName
		if name == "" {
			name = "bulkhead"
		}
		res := sdkresource.NewSchemaless(attribute.String("service.name", name))
		export := sdktrace.WithBatcher(o.Exporter)
		if o.Sync {
			export = sdktrace.WithSyncer(o.Exporter)
		}
		t.provider = sdktrace.NewTracerProvider(export, sdktrace.WithResource(res))
		t.tracer = t.provider.Tracer("github.com/bulkhead-ai/bulkhead")
	}
	return t, nil
}

// Handler serves the metrics in the Prometheus text format; a nil
// *Telemetry's answers 404.
func (t *Telemetry) Handler() http.Handler {
	if t == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(t.reg, promhttp.HandlerOpts{})
}

// Shutdown exports the spans not yet sent and stops the tracer.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil || t.provider == nil {
		return nil
	}
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("shut down tracing: %w", err)
	}
	return nil
}

// request is what telemetry knows of a request in flight, carried in its
// context.
type request struct {
	start  time.Time
	span   trace.Span // nil: tracing off
	tenant atomic.Pointer[tenant.ID]
}

type requestKey struct{}

func fromContext(ctx context.Context) *request {
	r, _ := ctx.Value(requestKey{}).(*request)
	return r
}

// label is the tenant label of the request in ctx: its tenant if that is
// one of the configured tenants, else "".
func (t *Telemetry) label(ctx context.Context) string {
	if r := fromContext(ctx); r != nil {
		if id := r.tenant.Load(); id != nil && t.tenants[*id] {
			return string(*id)
		}
	}
	return ""
}

// Serve runs next for r, counting it under the mux pattern route (never the
// raw path, which would make a series per id) and tracing it. requestID
// returns the request's id once next has run.
func (t *Telemetry) Serve(w http.ResponseWriter, r *http.Request, route string, next http.Handler, requestID func() string) {
	if t == nil {
		next.ServeHTTP(w, r)
		return
	}
	if route == "" {
		route = "unmatched"
	}
	req := &request{start: time.Now()}
	ctx := context.WithValue(r.Context(), requestKey{}, req)
	if t.tracer != nil {
		ctx, req.span = t.tracer.Start(ctx, route, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.route", route), attribute.String("http.request.method", r.Method)))
	}
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		code := strconv.Itoa(status)
		label := t.label(ctx)
		t.requests.WithLabelValues(route, code, label).Inc()
		t.latency.WithLabelValues(route).Observe(time.Since(req.start).Seconds())
		if req.span != nil {
			attrs := []attribute.KeyValue{attribute.Int("http.response.status_code", status)}
			if id := requestID(); id != "" {
				attrs = append(attrs, attribute.String("bulkhead.request_id", id))
			}
			if id := req.tenant.Load(); id != nil {
				attrs = append(attrs, attribute.String("bulkhead.tenant", string(*id)))
			}
			req.span.SetAttributes(attrs...)
			if status >= 500 {
				req.span.SetStatus(codes.Error, http.StatusText(status))
			}
			req.span.End()
		}
	}()
	next.ServeHTTP(sw, r.WithContext(ctx))
}

// Authenticated records that the request in ctx was authenticated for id,
// and how long that took since it arrived.
func (t *Telemetry) Authenticated(ctx context.Context, id tenant.ID) {
	req := fromContext(ctx)
	if t == nil || req == nil {
		return
	}
	req.tenant.Store(&id)
	t.Stage(ctx, "auth", time.Since(req.start))
}

// Stage records one stage of a request, as a latency and as a child span
// that ended now (agent.Observer).
func (t *Telemetry) Stage(ctx context.Context, name string, d time.Duration) {
	if t == nil {
		return
	}
	t.stages.WithLabelValues(name).Observe(d.Seconds())
	t.span(ctx, name, d)
}

// ToolCall counts one tool call and traces it (agent.Observer).
func (t *Telemetry) ToolCall(ctx context.Context, tool, decision string, d time.Duration) {
	if t == nil {
		return
	}
	t.tools.WithLabelValues(tool, decision, t.label(ctx)).Inc()
	t.span(ctx, "tool", d, attribute.String("bulkhead.tool", tool), attribute.String("bulkhead.decision", decision))
}

// Event counts one event of a turn, and adds it to the request's span
// (agent.Observer).
func (t *Telemetry) Event(ctx context.Context, name, detail string) {
	if t == nil {
		return
	}
	switch name {
	case agent.EventCache:
		t.cache.WithLabelValues(detail, t.label(ctx)).Inc()
	case agent.EventGuardBlock:
		t.blocks.WithLabelValues(detail, t.label(ctx)).Inc()
	case agent.EventQuotaRefused:
		t.refusals.WithLabelValues(t.label(ctx)).Inc()
	case agent.EventUpstreamError:
		t.upstream.WithLabelValues(detail).Inc()
	default:
		return // not a word of ours: never a label
	}
	if req := fromContext(ctx); req != nil && req.span != nil {
		req.span.AddEvent(name, trace.WithAttributes(attribute.String("bulkhead.detail", detail)))
	}
}

// span records a finished child span of the request's span in ctx.
func (t *Telemetry) span(ctx context.Context, name string, d time.Duration, attrs ...attribute.KeyValue) {
	if t.tracer == nil {
		return
	}
	req := fromContext(ctx)
	if req == nil || req.span == nil {
		return
	}
	end := time.Now()
	_, s := t.tracer.Start(trace.ContextWithSpan(ctx, req.span), name,
		trace.WithTimestamp(end.Add(-d)), trace.WithAttributes(attrs...))
	s.End(trace.WithTimestamp(end))
}

// statusWriter remembers the status a handler sent.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets streamed answers through (http.ResponseController).
func (w *statusWriter) Flush() {
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap gives http.ResponseController the writer underneath.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
