package redteam

import (
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/redteam/hostile"
)

// TestScenarioTable checks the table itself: at least 40 scenarios, unique
// names, every field filled, every enforcement point covered.
func TestScenarioTable(t *testing.T) {
	all := Scenarios()
	if len(all) < 40 {
		t.Fatalf("%d scenarios, want at least 40", len(all))
	}
	names := map[string]bool{}
	layers := map[Layer]int{}
	for _, s := range all {
		if names[s.Name] {
			t.Errorf("duplicate scenario %q", s.Name)
		}
		names[s.Name] = true
		layers[s.Layer]++
		if s.Name == "" || s.Threat == "" || s.Layer == "" || s.Setup == "" || s.Attack == "" || s.Check == "" || s.run == nil {
			t.Errorf("scenario %q has an empty field: %+v", s.Name, s)
		}
	}
	for _, l := range []Layer{LayerStore, LayerPolicy, LayerBinding, LayerRedaction, LayerAnswer, LayerStream, LayerToolArgs,
		LayerToolRes, LayerCache, LayerQuota, LayerLifecycle, LayerAuth} {
		if layers[l] == 0 {
			t.Errorf("no scenario for enforcement point %s", l)
		}
	}
}

// TestFind checks the suite's own leak detector on the forms the hostile
// model writes: a detector blind to one would pass a leak.
func TestFind(t *testing.T) {
	const v = "Canary-7f3a9c21e4"
	n := needle{"v", v}
	// Encodings are found when named; look-alike spellings always, by fold.
	for _, enc := range []string{"plain", "base64", "hex", "url", "reversed", "shift"} {
		hay := "x " + hostile.Encode(enc, v) + " y"
		if _, ok := find(hay, n, enc); !ok {
			t.Errorf("find misses %s in %q", enc, hay)
		}
	}
	for _, enc := range []string{"fullwidth", "cyrillic", "zwj", "spaced", "tags", "upper"} {
		hay := "x " + hostile.Encode(enc, v) + " y"
		if _, ok := find(hay, n); !ok {
			t.Errorf("find misses the look-alike spelling %s in %q", enc, hay)
		}
	}
	if _, ok := find("nothing here [REDACTED:x]", n, "base64"); ok {
		t.Error("find reports a value that is not there")
	}
	if got := fold("ＡｂＣ\u200dd e"); got != strings.ToLower("abcde") {
		t.Errorf("fold = %q", got)
	}
}
