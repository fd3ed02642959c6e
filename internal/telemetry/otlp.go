package telemetry

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Environment variables of the OpenTelemetry specification that locate the
// collector when the configuration does not.
const (
	EnvEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
)

// Endpoint returns the OTLP/HTTP traces URL: the configured endpoint, else
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as it is, else
// OTEL_EXPORTER_OTLP_ENDPOINT; a base URL (configured or the latter) gets
// the spec's "/v1/traces" path. Empty means tracing is off.
func Endpoint(configured string, getenv func(string) string) string {
	if configured == "" {
		if u := getenv(EnvTracesEndpoint); u != "" {
			return u
		}
		configured = getenv(EnvEndpoint)
	}
	if configured == "" || strings.HasSuffix(configured, "/v1/traces") {
		return configured
	}
	return strings.TrimSuffix(configured, "/") + "/v1/traces"
}

// Exporter returns an OTLP/HTTP (protobuf) span exporter sending to url.
// Nothing is sent until spans are exported.
func Exporter(ctx context.Context, url string) (sdktrace.SpanExporter, error) {
	e, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(url))
	if err != nil {
		return nil, fmt.Errorf("create OTLP trace exporter for %s: %w", url, err)
	}
	return e, nil
}
