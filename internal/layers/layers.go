//go:build !redteamswitch

// Package layers names Bulkhead's isolation layers for the red team's proof
// that its suite can fail. In a normal build Off is the constant false: the
// calls at each enforcement point compile to nothing and production has no
// switch. Built with the tag redteamswitch (tests only, see layers_switch.go),
// Off reads BULKHEAD_LAYERS_OFF so a test can turn one layer off and watch
// `bulkhead redteam` catch the leak.
package layers

// Off reports whether the named layer is switched off: never, in this build.
func Off(string) bool { return false }
