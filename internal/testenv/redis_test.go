package testenv

import "testing"

// TestRedisServer drives a throwaway server through every state a fault
// test uses and checks each with a PING.
func TestRedisServer(t *testing.T) {
	s := StartRedis(t)
	steps := []struct {
		name   string
		do     func()
		answer bool
	}{
		{"started", func() {}, true},
		{"paused", s.Pause, false},
		{"resumed", s.Resume, true},
		{"stopped", s.Stop, false},
		{"started again", s.Start, true},
	}
	for _, st := range steps {
		st.do()
		if err := ping(s.Addr); (err == nil) != st.answer {
			t.Errorf("%s: PING error %v; want answered %v", st.name, err, st.answer)
		}
	}
}
