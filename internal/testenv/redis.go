package testenv

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RedisServer is a throwaway redis-server of one test, on a free port,
// without persistence, that the test may pause, resume, stop and start
// again: fault tests must never pause the shared server of
// BULKHEAD_TEST_REDIS.
type RedisServer struct {
	// Addr is host:port; it stays the same across Stop and Start.
	Addr string
	t    testing.TB
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// StartRedis starts a redis-server for t (found on PATH, see Require) and
// stops it when t ends.
func StartRedis(t testing.TB) *RedisServer {
	t.Helper()
	_, err := exec.LookPath("redis-server")
	Require(t, "redis-server", err == nil, "install redis-server (Debian package redis-server)")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := &RedisServer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), t: t, port: port}
	s.Start()
	t.Cleanup(func() {
		if s.cmd != nil {
			s.Stop()
		}
	})
	return s
}

// Start starts the server again after Stop, empty, on the same port, and
// waits until it answers.
func (s *RedisServer) Start() {
	s.t.Helper()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.t.TempDir(), "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := ping(s.Addr)
		if err == nil {
			return
		}
		select {
		case <-s.done:
			s.t.Fatalf("redis-server on port %d exited at start: %v", s.port, err)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on port %d does not answer: %v", s.port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Pause freezes the server (SIGSTOP): connections stay open, nothing
// answers, like a server stuck on a slow disk or in a long GC.
func (s *RedisServer) Pause() { s.signal(syscall.SIGSTOP) }

// Resume lets a paused server go on (SIGCONT).
func (s *RedisServer) Resume() { s.signal(syscall.SIGCONT) }

// Stop kills the server (SIGKILL, no chance to clean up) and waits for it to
// exit. Its data is gone: it has no persistence.
func (s *RedisServer) Stop() {
	s.t.Helper()
	s.signal(syscall.SIGKILL)
	<-s.done
	s.cmd = nil
}

func (s *RedisServer) signal(sig syscall.Signal) {
	s.t.Helper()
	if s.cmd == nil {
		s.t.Fatalf("redis-server on port %d is not running", s.port)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal redis-server: %v", err)
	}
}

// ping sends PING in the Redis protocol and expects PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}
