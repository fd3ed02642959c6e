package llm

import (
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func TestRegistryAdd(t *testing.T) {
	tests := []struct {
		name    string
		add     string
		p       Provider
		wantErr bool
	}{
		{name: "ok", add: "upstream", p: NewScripted()},
		{name: "empty", add: "", p: NewScripted(), wantErr: true},
		{name: "slash", add: "a/b", p: NewScripted(), wantErr: true},
		{name: "duplicate", add: "offline", p: NewScripted(), wantErr: true},
		{name: "nil provider", add: "nil", p: nil, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Registry // zero value is usable
			if err := r.Add("offline", NewScripted()); err != nil {
				t.Fatal(err)
			}
			err := r.Add(tt.add, tt.p)
			if (err != nil) != tt.wantErr {
				t.Errorf("Add(%q) error = %v, want error %v", tt.add, err, tt.wantErr)
			}
		})
	}
}

func TestRegistryResolve(t *testing.T) {
	offline := NewScripted()
	up, err := NewOpenAI(OpenAIOptions{BaseURL: "http://127.0.0.1:9000/v1"})
	if err != nil {
		t.Fatal(err)
	}
	r := NewRegistry()
	for name, p := range map[string]Provider{"offline": offline, "upstream": up} {
		if err := r.Add(name, p); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		model     string
		wantP     Provider
		wantModel string
		wantErr   bool
	}{
		{model: "offline/demo", wantP: offline, wantModel: "demo"},
		{model: "upstream/gpt-4o-mini", wantP: up, wantModel: "gpt-4o-mini"},
		{model: "upstream/meta-llama/Llama-3-8B", wantP: up, wantModel: "meta-llama/Llama-3-8B"},
		{model: "gpt-4o", wantErr: true},
		{model: "", wantErr: true},
		{model: "/demo", wantErr: true},
		{model: "offline/", wantErr: true},
		{model: "other/demo", wantErr: true},
		{model: "Offline/demo", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			route, err := r.Resolve(tt.model)
			p, m := route.Provider, route.Model
			if tt.wantErr {
				if !errors.Is(err, ErrUnknownModel) {
					t.Fatalf("Resolve(%q) error = %v, want ErrUnknownModel", tt.model, err)
				}
				if !strings.Contains(err.Error(), `"`+tt.model+`"`) {
					t.Errorf("error %q does not name the model", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve(%q): %v", tt.model, err)
			}
			if p != tt.wantP || m != tt.wantModel {
				t.Errorf("Resolve(%q) = %v, %q; want %v, %q", tt.model, p, m, tt.wantP, tt.wantModel)
			}
		})
	}
	if got, want := r.Names(), []string{"offline", "upstream"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Names() = %q, want %q", got, want)
	}
	if got := new(Registry).Names(); len(got) != 0 {
		t.Errorf("zero Registry Names() = %q, want empty", got)
	}
	if _, err := new(Registry).Resolve("a/b"); !errors.Is(err, ErrUnknownModel) {
		t.Errorf("zero Registry Resolve error = %v, want ErrUnknownModel", err)
	}
}

func TestRegistryConcurrent(t *testing.T) {
	r := NewRegistry()
	if err := r.Add("offline", NewScripted()); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 200 {
				if _, err := r.Resolve("offline/x"); err != nil {
					t.Error(err)
					return
				}
				r.Names()
			}
			if i == 0 {
				if err := r.Add("late", NewScripted()); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}

func TestRegistryBYOK(t *testing.T) {
	r := NewRegistry()
	if err := r.AddBYOK("byok", NewScripted(), "openai_key"); err != nil {
		t.Fatal(err)
	}
	if err := r.Add("shared", NewScripted()); err != nil {
		t.Fatal(err)
	}
	for model, want := range map[string]string{"byok/gpt": "openai_key", "shared/gpt": ""} {
		route, err := r.Resolve(model)
		if err != nil || string(route.KeySecret) != want {
			t.Errorf("Resolve(%q) key secret = %q, %v; want %q", model, route.KeySecret, err, want)
		}
	}
}
