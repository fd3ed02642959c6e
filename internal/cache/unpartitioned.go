//go:build !redteamswitch

package cache

// unpartitioned is the red team's broken cache (see unpartitioned_switch.go);
// in this build it does not exist, and nothing calls these.
var unpartitioned noCache

type noCache struct{}

func (noCache) get(Request) (Value, bool, error) { return Value{}, false, nil }
func (noCache) put(Request, Value) error         { return nil }
