package upstream

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const testKey = "sk-test-SECRET-1234567890"

func TestBaseURL(t *testing.T) {
	tests := []struct {
		raw     string
		want    string
		wantErr string
	}{
		{raw: "http://127.0.0.1:9000/v1", want: "http://127.0.0.1:9000/v1"},
		{raw: "https://api.example.com/v1/", want: "https://api.example.com/v1"},
		{raw: "https://api.example.com//", want: "https://api.example.com"},
		{raw: "", wantErr: "invalid base URL: scheme must be http or https"},
		{raw: "127.0.0.1:9000/v1", wantErr: "invalid base URL: first path segment in URL cannot contain colon"},
		{raw: "ftp://example.com", wantErr: "invalid base URL: scheme must be http or https"},
		{raw: "http:///v1", wantErr: "invalid base URL: missing host"},
		{raw: "http://u:" + testKey + "@example.com/v1", wantErr: "invalid base URL: user info not allowed (use APIKey)"},
		{raw: "http://example.com/v1?key=" + testKey, wantErr: "invalid base URL: query and fragment not allowed"},
		{raw: "http://example.com/v1?", wantErr: "invalid base URL: query and fragment not allowed"},
		{raw: "http://example.com/v1#" + testKey, wantErr: "invalid base URL: query and fragment not allowed"},
		{raw: "http://example.com/%zz" + testKey, wantErr: `invalid base URL: invalid URL escape "%zz"`},
	}
	for _, tt := range tests {
		got, err := BaseURL(tt.raw)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("BaseURL(%q) = %q, %v; want error %q", tt.raw, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("BaseURL(%q) = %q, %v; want %q", tt.raw, got, err, tt.want)
		}
	}
}

func TestNewClient(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			t.Error("redirect followed")
		}
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	c := NewClient(3 * time.Second)
	if tr, ok := c.Transport.(*http.Transport); !ok || tr.ResponseHeaderTimeout != 3*time.Second {
		t.Errorf("Transport = %#v, want an *http.Transport with a 3s ResponseHeaderTimeout", c.Transport)
	}
	if c.Transport == http.DefaultTransport {
		t.Error("client shares http.DefaultTransport")
	}
	resp, err := c.Post(srv.URL, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect {
		t.Errorf("status = %d, want %d", resp.StatusCode, http.StatusTemporaryRedirect)
	}
}
