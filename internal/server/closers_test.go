package server

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestClosersRunNewestFirstOnce(t *testing.T) {
	tests := []struct {
		name     string
		push     []string
		fail     map[string]error
		wantRun  []string
		wantErrs []string // substrings of the joined error; none: nil
	}{
		{name: "empty"},
		{name: "one", push: []string{"a"}, wantRun: []string{"a"}},
		{name: "reverse", push: []string{"a", "b", "c"}, wantRun: []string{"c", "b", "a"}},
		{name: "an error does not stop the rest", push: []string{"a", "b", "c"}, fail: map[string]error{"b": errors.New("b failed")},
			wantRun: []string{"c", "b", "a"}, wantErrs: []string{"close b: b failed"}},
		{name: "errors joined", push: []string{"a", "b"}, fail: map[string]error{"a": errors.New("x"), "b": errors.New("y")},
			wantRun: []string{"b", "a"}, wantErrs: []string{"close a: x", "close b: y"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ran, heard []string
			c := &closers{ran: func(name string) { heard = append(heard, name) }}
			for _, name := range tt.push {
				c.push(name, func() error {
					ran = append(ran, name)
					return tt.fail[name]
				})
			}
			err := c.closeAll()
			if !slices.Equal(ran, tt.wantRun) {
				t.Errorf("ran %q, want %q", ran, tt.wantRun)
			}
			if !slices.Equal(heard, tt.wantRun) {
				t.Errorf("observer heard %q, want %q", heard, tt.wantRun)
			}
			switch {
			case len(tt.wantErrs) == 0 && err != nil:
				t.Errorf("closeAll: got %v, want nil", err)
			case len(tt.wantErrs) > 0 && err == nil:
				t.Errorf("closeAll: got nil, want %q", tt.wantErrs)
			}
			for _, want := range tt.wantErrs {
				if err != nil && !strings.Contains(err.Error(), want) {
					t.Errorf("closeAll: got %q, want it to hold %q", err, want)
				}
			}
			for name, cause := range tt.fail {
				if !errors.Is(err, cause) {
					t.Errorf("closeAll: got %v, want it to wrap %s's error %v", err, name, cause)
				}
			}
			ran = nil
			if err := c.closeAll(); err != nil || len(ran) != 0 {
				t.Errorf("second closeAll: ran %q, err %v; want nothing run, nil", ran, err)
			}
		})
	}
}

// TestClosersGoRun checks background work outlives the context that started
// it and is stopped, and waited for, by closeAll.
func TestClosersGoRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
	started := make(chan context.Context, 1)
	var returned bool
	errStopped := errors.New("stopped")
	c := &closers{}
	c.goRun(ctx, "worker", func(ctx context.Context) error {
		started <- ctx
		<-ctx.Done()
		returned = true // read after closeAll: closeAll must wait for this
		return errStopped
	})
	runCtx := <-started
	cancel()
	if runCtx.Err() != nil {
		t.Fatal("the worker's context ended with its parent's; want it to last until closeAll")
	}
	if got := runCtx.Value(ctxKey{}); got != "v" {
		t.Errorf("worker's context value: got %v, want the parent's %q", got, "v")
	}
	err := c.closeAll()
	if !errors.Is(err, errStopped) || !strings.Contains(err.Error(), "close worker") {
		t.Errorf("closeAll: got %v, want the worker's error, named", err)
	}
	if !returned {
		t.Error("closeAll returned before the worker did")
	}
}

type ctxKey struct{}
