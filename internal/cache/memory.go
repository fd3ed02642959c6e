package cache

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Defaults of NewMemory(0, 0).
const (
	DefaultMaxEntries       = 10_000
	DefaultMaxBytes   int64 = 64 << 20
)

// Memory is an in-process Backend: least recently used entries are evicted
// beyond maxEntries entries or maxBytes bytes (keys plus values), and expired
// entries are never returned. Values are copied in and out. It is safe for
// concurrent use.
//
// Capacity is shared: one busy tenant can evict others' entries, costing
// them a call to the model, never a wrong answer.
type Memory struct {
	maxEntries int
	maxBytes   int64
	now        func() time.Time // tests replace it

	mu      sync.Mutex
	entries map[string]*memEntry
	head    memEntry // sentinel of the recency list; head.next is the newest
	bytes   int64
}

type memEntry struct {
	key        string
	val        []byte
	expires    time.Time // zero: never
	prev, next *memEntry
}

func (e *memEntry) size() int64 { return int64(len(e.key) + len(e.val)) }

// NewMemory returns a Memory backend. maxEntries <= 0 means
// DefaultMaxEntries, maxBytes <= 0 means DefaultMaxBytes.
func NewMemory(maxEntries int, maxBytes int64) *Memory {
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	m := &Memory{maxEntries: maxEntries, maxBytes: maxBytes, now: time.Now, entries: map[string]*memEntry{}}
	m.head.prev, m.head.next = &m.head, &m.head
	return m
}

// Get implements Backend.
func (m *Memory) Get(_ context.Context, key string) ([]byte, bool, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[key]
	if !ok {
		return nil, false, nil
	}
	if !e.expires.IsZero() && !now.Before(e.expires) {
		m.remove(e)
		return nil, false, nil
	}
	m.unlink(e)
	m.pushFront(e)
	return append([]byte(nil), e.val...), true, nil
}

// Set implements Backend. A value too large ever to fit is not stored, and
// any older value under key is dropped.
func (m *Memory) Set(_ context.Context, key string, val []byte, ttl time.Duration) error {
	e := &memEntry{key: key, val: append([]byte(nil), val...)}
	if ttl > 0 {
		e.expires = m.now().Add(ttl)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.entries[key]; ok {
		m.remove(old)
	}
	if e.size() > m.maxBytes {
		return nil
	}
	m.entries[key] = e
	m.bytes += e.size()
	m.pushFront(e)
	for (len(m.entries) > m.maxEntries || m.bytes > m.maxBytes) && m.head.prev != &m.head {
		m.remove(m.head.prev)
	}
	return nil
}

// DeleteTenant implements Backend.
func (m *Memory) DeleteTenant(_ context.Context, id tenant.Incarnation) error {
	if err := tenant.CheckIncarnation(id); err != nil {
		return fmt.Errorf("memory cache: %w", err)
	}
	prefix := string(id) + ":"
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, e := range m.entries {
		if strings.HasPrefix(k, prefix) {
			m.remove(e)
		}
	}
	return nil
}

// Len returns the number of entries held, expired or not, over all tenants.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

// Bytes returns the bytes held (keys plus values).
func (m *Memory) Bytes() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bytes
}

// remove drops e; m.mu must be held.
func (m *Memory) remove(e *memEntry) {
	m.unlink(e)
	delete(m.entries, e.key)
	m.bytes -= e.size()
}

func (m *Memory) unlink(e *memEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (m *Memory) pushFront(e *memEntry) {
	e.prev, e.next = &m.head, m.head.next
	m.head.next.prev = e
	m.head.next = e
}
