//go:build redteamswitch

package cache

import (
	"strings"
	"sync"
)

// unpartitioned is the cache a careless implementation would have, for the
// red team's layer switch "cache": keyed by the profile, the end user and
// the last user message only, shared by every tenant, sealed by no one.
var unpartitioned = &naiveCache{m: map[string]Value{}}

type naiveCache struct {
	mu sync.Mutex
	m  map[string]Value
}

func naiveKey(r Request) string {
	last := ""
	for _, m := range r.Messages {
		if m.Role == "user" {
			last = m.Content
		}
	}
	return strings.Join([]string{r.Profile, last}, "\x00")
}

func (n *naiveCache) get(r Request) (Value, bool, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	v, ok := n.m[naiveKey(r)]
	return v, ok, nil
}

func (n *naiveCache) put(r Request, v Value) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.m[naiveKey(r)] = v
	return nil
}
