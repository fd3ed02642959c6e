package cache

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

func mustSet(t *testing.T, m *Memory, key string, val []byte, ttl time.Duration) {
	t.Helper()
	if err := m.Set(t.Context(), key, val, ttl); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

// present reports which of keys m holds.
func present(t *testing.T, m *Memory, keys ...string) []bool {
	t.Helper()
	out := make([]bool, len(keys))
	for i, k := range keys {
		_, ok, err := m.Get(t.Context(), k)
		if err != nil {
			t.Fatalf("Get(%q): %v", k, err)
		}
		out[i] = ok
	}
	return out
}

func TestMemoryTTL(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		ttl     time.Duration
		advance time.Duration
		want    bool
	}{
		{"fresh", time.Minute, 0, true},
		{"just before expiry", time.Minute, time.Minute - time.Nanosecond, true},
		{"at expiry", time.Minute, time.Minute, false},
		{"long after", time.Minute, 24 * time.Hour, false},
		{"no ttl never expires", 0, 365 * 24 * time.Hour, true},
		{"negative ttl never expires", -time.Second, 365 * 24 * time.Hour, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMemory(10, 1<<10)
			clock := now
			m.now = func() time.Time { return clock }
			mustSet(t, m, "acme:k", []byte("v"), tt.ttl)
			clock = clock.Add(tt.advance)
			if got := present(t, m, "acme:k")[0]; got != tt.want {
				t.Errorf("present after %v = %v, want %v", tt.advance, got, tt.want)
			}
			if wantLen := map[bool]int{true: 1, false: 0}[tt.want]; m.Len() != wantLen {
				t.Errorf("Len() = %d, want %d", m.Len(), wantLen)
			}
		})
	}
}

func TestMemoryLRU(t *testing.T) {
	m := NewMemory(3, 1<<20)
	for _, k := range []string{"a:1", "a:2", "a:3"} {
		mustSet(t, m, k, []byte(k), 0)
	}
	present(t, m, "a:1")         // a:2 is now the least recently used
	mustSet(t, m, "a:4", nil, 0) // evicts a:2
	mustSet(t, m, "a:3", nil, 0) // replaces, no eviction; a:1 is now LRU
	mustSet(t, m, "a:5", nil, 0) // evicts a:1
	got := present(t, m, "a:1", "a:2", "a:3", "a:4", "a:5")
	want := []bool{false, false, true, true, true}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("present(a:1..a:5) = %v, want %v", got, want)
	}
	if m.Len() != 3 {
		t.Errorf("Len() = %d, want 3", m.Len())
	}
}

func TestMemoryByteBound(t *testing.T) {
	const maxBytes = 100
	m := NewMemory(1000, maxBytes)
	val := bytes.Repeat([]byte("x"), 27) // 3-byte key + 27 = 30 bytes an entry
	for i := range 10 {
		mustSet(t, m, fmt.Sprintf("a:%d", i), val, 0)
		if m.Bytes() > maxBytes {
			t.Fatalf("after %d sets Bytes() = %d > %d", i+1, m.Bytes(), maxBytes)
		}
	}
	if m.Len() != 3 || m.Bytes() != 90 {
		t.Errorf("Len(), Bytes() = %d, %d; want 3, 90", m.Len(), m.Bytes())
	}
	if got := present(t, m, "a:6", "a:7", "a:8", "a:9"); fmt.Sprint(got) != "[false true true true]" {
		t.Errorf("present(a:6..a:9) = %v, want the 3 newest", got)
	}

	// A value that can never fit is not stored and drops the older one.
	mustSet(t, m, "a:9", bytes.Repeat([]byte("y"), maxBytes), 0)
	if got := present(t, m, "a:9")[0]; got {
		t.Error("oversized value stored, or old value kept")
	}
	if m.Len() != 2 || m.Bytes() != 60 {
		t.Errorf("Len(), Bytes() = %d, %d; want 2, 60", m.Len(), m.Bytes())
	}

	// Replacing accounts for the new size.
	mustSet(t, m, "a:8", []byte("z"), 0)
	if m.Bytes() != 34 {
		t.Errorf("Bytes() after replacing = %d, want 34", m.Bytes())
	}
	if err := m.DeleteTenant(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	if m.Len() != 0 || m.Bytes() != 0 {
		t.Errorf("after DeleteTenant Len(), Bytes() = %d, %d; want 0, 0", m.Len(), m.Bytes())
	}
}

// TestMemoryCopies: neither the caller of Set nor the caller of Get can
// change what the next reader gets.
func TestMemoryCopies(t *testing.T) {
	m := NewMemory(10, 1<<10)
	in := []byte("original")
	mustSet(t, m, "a:k", in, 0)
	in[0] = 'X'
	out, ok, err := m.Get(t.Context(), "a:k")
	if !ok || err != nil {
		t.Fatalf("Get = %v, %v", ok, err)
	}
	out[1] = 'Y'
	if again, ok, err := m.Get(t.Context(), "a:k"); !ok || err != nil || string(again) != "original" {
		t.Errorf("Get = %q, %v, %v; want the original value", again, ok, err)
	}
}
