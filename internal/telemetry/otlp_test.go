package telemetry

import "testing"

func TestEndpoint(t *testing.T) {
	tests := []struct {
		name, configured string
		env              map[string]string
		want             string
	}{
		{"off", "", nil, ""},
		{"configured base", "http://c:4318", nil, "http://c:4318/v1/traces"},
		{"configured base with slash", "http://c:4318/", nil, "http://c:4318/v1/traces"},
		{"configured full", "http://c:4318/v1/traces", nil, "http://c:4318/v1/traces"},
		{"configured wins", "http://a:4318", map[string]string{EnvEndpoint: "http://b:4318"}, "http://a:4318/v1/traces"},
		{"env base", "", map[string]string{EnvEndpoint: "http://b:4318"}, "http://b:4318/v1/traces"},
		{"env traces as is", "", map[string]string{EnvEndpoint: "http://b:4318", EnvTracesEndpoint: "http://t:1/x"}, "http://t:1/x"},
	}
	for _, tt := range tests {
		if got := Endpoint(tt.configured, func(k string) string { return tt.env[k] }); got != tt.want {
			t.Errorf("%s: Endpoint = %q, want %q", tt.name, got, tt.want)
		}
	}
}
