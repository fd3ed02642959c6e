package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// closers is a cleanup stack. Open pushes each resource's release right after
// the resource is opened, so whatever was opened when construction stops,
// complete or not, is released by one closeAll, newest first: nothing is
// released while something opened after it may still use it.
type closers struct {
	mu    sync.Mutex
	stack []closer
	// ran, if set, hears each release's name as it runs (for tests).
	ran func(name string)
}

// closer is one release function, named for errors.
type closer struct {
	name  string
	close func() error
}

// push adds release for the resource called name.
func (c *closers) push(name string, release func() error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stack = append(c.stack, closer{name, release})
}

// goRun runs run in a goroutine until closeAll, which cancels its context
// and waits for it to return. The goroutine's context keeps ctx's values but
// not its cancellation: background work outlives the request or signal that
// started the server and stops only when the server does.
func (c *closers) goRun(ctx context.Context, name string, run func(context.Context) error) {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- run(runCtx) }()
	c.push(name, func() error {
		cancel()
		return <-done
	})
}

// closeAll runs every release, newest first, each once, and returns their
// errors joined. Calling it again does nothing.
func (c *closers) closeAll() error {
	var errs []error
	for {
		c.mu.Lock()
		if len(c.stack) == 0 {
			c.mu.Unlock()
			return errors.Join(errs...)
		}
		top := c.stack[len(c.stack)-1]
		c.stack = c.stack[:len(c.stack)-1]
		ran := c.ran
		c.mu.Unlock()
		if ran != nil {
			ran(top.name)
		}
		if err := top.close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", top.name, err))
		}
	}
}
