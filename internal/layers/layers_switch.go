//go:build redteamswitch

package layers

import (
	"os"
	"slices"
	"strings"
)

// Env names the comma-separated layers to switch off.
const Env = "BULKHEAD_LAYERS_OFF"

// Off reports whether the named layer is listed in BULKHEAD_LAYERS_OFF. It
// exists only in test builds with the tag redteamswitch.
func Off(name string) bool { return slices.Contains(strings.Split(os.Getenv(Env), ","), name) }
