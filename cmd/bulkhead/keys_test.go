package main

import (
	"reflect"
	"testing"
	"time"
)

func TestKeyBody(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name, expires string
		want          map[string]any
		wantErr       bool
	}{
		{"", "", nil, false},
		{"ci", "", map[string]any{"name": "ci"}, false},
		{"", "48h", map[string]any{"expires_at": "2026-12-05T12:00:00Z"}, false},
		{"ci", "2027-01-01T00:00:00+01:00", map[string]any{"name": "ci", "expires_at": "2026-12-31T23:00:00Z"}, false},
		{"", "-1h", nil, true},
		{"", "tomorrow", nil, true},
	}
	for _, tt := range tests {
		got, err := keyBody(tt.name, tt.expires, now)
		if (err != nil) != tt.wantErr || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("keyBody(%q, %q) = %v, %v; want %v (error %v)", tt.name, tt.expires, got, err, tt.want, tt.wantErr)
		}
	}
}
