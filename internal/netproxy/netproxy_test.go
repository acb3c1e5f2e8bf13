package netproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// guard bounds every wait in these tests, so that a broken proxy fails a
// test instead of hanging it. No test asserts on how long anything takes.
const guard = time.Minute

// echo serves on loopback, sending back what it reads and closing its side
// when the client closes its own.
func echo(t testing.TB) string {
	return serve(t, func(c net.Conn) { io.Copy(c, c) })
}

// sink serves on loopback, discarding what it reads.
func sink(t testing.TB) string {
	return serve(t, func(c net.Conn) { io.Copy(io.Discard, c) })
}

// serve runs handle on every connection to a loopback listener until the
// test ends, and returns the listener's address.
func serve(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	return ln.Addr().String()
}

// startProxy starts a proxy to target, closed when t ends. holds, if not
// nil, receives true for every chunk the rate holds back and false for
// every chunk the delay does; sends that would block are dropped.
func startProxy(t testing.TB, target string, holds chan bool) *Proxy {
	t.Helper()
	var onHold func(bool)
	if holds != nil {
		onHold = func(throttled bool) {
			select {
			case holds <- throttled:
			default:
			}
		}
	}
	p, err := start(context.Background(), target, onHold)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

func dial(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(guard))
	return c.(*net.TCPConn)
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(n)}).Read(b)
	return b
}

// roundTrip sends data through c to the echo server, closes c's sending
// side, and returns all that comes back.
func roundTrip(t testing.TB, c *net.TCPConn, data []byte) []byte {
	t.Helper()
	got, err := exchange(c, data)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func exchange(c *net.TCPConn, data []byte) ([]byte, error) {
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		return got, fmt.Errorf("reading the echo: %v (after %d of %d bytes)", err, len(got), len(data))
	}
	if err := <-werr; err != nil {
		return got, fmt.Errorf("writing: %v", err)
	}
	return got, nil
}

// echoes checks that c, open, carries a message both ways.
func echoes(t testing.TB, c *net.TCPConn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo of %q: %q, %v", msg, got, err)
	}
}

// cut checks that c has been cut: a read fails at once, not by the guard.
func cut(t testing.TB, c *net.TCPConn, what string) {
	t.Helper()
	c.Write([]byte("x")) // may fail already
	_, err := c.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: read got %v, want the connection cut", what, err)
	}
}

// turnedAway checks that a new connection to addr is cut at once: the
// reset may come before the dial returns or after.
func turnedAway(t testing.TB, addr, what string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, guard)
	if err != nil {
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("%s: dial: %v, want success or connection reset", what, err)
		}
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(guard))
	cut(t, c.(*net.TCPConn), what)
}

func TestPassThrough(t *testing.T) {
	target := echo(t)
	for _, tc := range []struct {
		name  string
		rate  int64
		delay time.Duration
		size  int
	}{
		{"empty", 0, 0, 0},
		{"one byte", 0, 0, 1},
		{"4MiB", 0, 0, 4<<20 + 7},
		{"rate/4MiB", 1 << 30, 0, 4<<20 + 7}, // through the shaped copy, never held
		{"rate/odd chunks", 10 << 20, 0, 1<<20 + 3},
		{"delay/256KiB", 0, time.Millisecond, 256<<10 + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, target, nil)
			p.SetRate(tc.rate)
			p.SetDelay(tc.delay)
			data := random(tc.size)
			got := roundTrip(t, dial(t, p.Addr()), data)
			if !bytes.Equal(got, data) {
				t.Errorf("echo through the proxy: %d bytes, differing from the %d sent", len(got), len(data))
			}
		})
	}
}

func TestDownUp(t *testing.T) {
	p := startProxy(t, echo(t), nil)
	open := dial(t, p.Addr())
	echoes(t, open, "before")

	p.Down()
	cut(t, open, "a connection open at Down")
	turnedAway(t, p.Addr(), "a connection made while down")
	if s := p.Stats(); s.Refused != 1 || s.Accepted != 1 {
		t.Errorf("Stats = %+v, want 1 accepted and 1 refused", s)
	}

	p.Up()
	echoes(t, dial(t, p.Addr()), "after")
	if s := p.Stats(); s.Accepted != 2 || s.Refused != 1 {
		t.Errorf("Stats = %+v, want 2 accepted, 1 refused", s)
	}
}

// TestTargetDown: a connection to a target that refuses is reset.
func TestTargetDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	ln.Close()
	p := startProxy(t, target, nil)
	turnedAway(t, p.Addr(), "a connection to a closed target")
}

func TestClose(t *testing.T) {
	p := startProxy(t, echo(t), nil)
	c := dial(t, p.Addr())
	echoes(t, c, "hello")
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	cut(t, c, "a connection open at Close")
	if _, err := net.Dial("tcp", p.Addr()); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after Close: %v, want connection refused", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	p.Up() // no effect after Close
	if s := p.Stats(); s.Open != 0 {
		t.Errorf("after Close, Stats = %+v, want nothing open", s)
	}
}

// TestRate: a rate holds chunks back once the burst is spent.
func TestRate(t *testing.T) {
	holds := make(chan bool, 1000)
	p := startProxy(t, echo(t), holds)
	p.SetRate(1 << 20)
	// 256 KiB is more than the burst of a tenth of a second (about 102 KiB)
	// in each direction.
	data := random(256 << 10)
	if got := roundTrip(t, dial(t, p.Addr()), data); !bytes.Equal(got, data) {
		t.Fatalf("echo through a limited proxy differs")
	}
	s := p.Stats()
	if s.Throttled == 0 || s.Delayed != 0 {
		t.Errorf("Stats = %+v, want chunks throttled and none delayed", s)
	}
}

// TestReshapeOpen changes the rate and the delay of an open connection
// held back by them: to limits so tight that the transfer could not end
// within the guard, then to none, which must release it.
func TestReshapeOpen(t *testing.T) {
	for _, tc := range []struct {
		name           string
		shape, release func(*Proxy)
		throttled      bool
	}{
		{"rate", func(p *Proxy) { p.SetRate(1) }, func(p *Proxy) { p.SetRate(0) }, true},
		{"delay", func(p *Proxy) { p.SetDelay(time.Hour) }, func(p *Proxy) { p.SetDelay(0) }, false},
		{"rate to a high rate", func(p *Proxy) { p.SetRate(1) }, func(p *Proxy) { p.SetRate(1 << 30) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			holds := make(chan bool, 1)
			p := startProxy(t, echo(t), holds)
			c := dial(t, p.Addr())
			echoes(t, c, "unshaped first") // the copiers are in splice now

			tc.shape(p)
			// A copier that had read past the deadline check when the shape
			// changed still moves one read (up to 1 MiB with splice) the old
			// way: send more than that.
			data := random(4 << 20)
			type result struct {
				got []byte
				err error
			}
			done := make(chan result, 1)
			go func() {
				got, err := exchange(c, data)
				done <- result{got, err}
			}()
			select {
			case throttled := <-holds:
				if throttled != tc.throttled {
					t.Errorf("held back by the rate: %t, want %t", throttled, tc.throttled)
				}
			case r := <-done:
				t.Fatalf("the transfer ended (%d bytes, %v) without being held back", len(r.got), r.err)
			case <-time.After(guard):
				t.Fatal("nothing was held back")
			}
			tc.release(p)
			if r := <-done; r.err != nil {
				t.Fatal(r.err)
			} else if !bytes.Equal(r.got, data) {
				t.Errorf("echo differs after the shape changed")
			}
		})
	}
}

// TestBucket checks the rate arithmetic on a clock of our own: at 64 KiB/s
// a transfer of 1 MiB must wait about 16 s in all, the burst aside.
func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const rate, burst = 64 << 10, 6 << 10
	for _, tc := range []struct {
		name  string
		takes []int           // bytes, taken one after another
		at    []time.Duration // when, after t0
		want  time.Duration   // the wait after the last take
	}{
		{"within the burst", []int{4 << 10, 2 << 10}, []time.Duration{0, 0}, 0},
		{"past the burst", []int{6 << 10, 32 << 10}, []time.Duration{0, 0}, 500 * time.Millisecond},
		{"refilled", []int{6 << 10, 4 << 10}, []time.Duration{0, 62500 * time.Microsecond}, 0},
		{"half refilled", []int{6 << 10, 4 << 10}, []time.Duration{0, 31250 * time.Microsecond}, 31250 * time.Microsecond},
		{"debt carried", []int{6 << 10, 32 << 10, 32 << 10}, []time.Duration{0, 0, 500 * time.Millisecond}, 500 * time.Millisecond},
		{"refill capped at the burst", []int{6 << 10, 12 << 10}, []time.Duration{0, time.Hour}, 93750 * time.Microsecond},
		{"1MiB at once", []int{1 << 20}, []time.Duration{0}, 16*time.Second - 93750*time.Microsecond},
		{"clock read out of order", []int{6 << 10, 32 << 10}, []time.Duration{time.Second, 0}, 500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBucket(rate, burst)
			var got time.Duration
			for i, n := range tc.takes {
				got = b.take(t0.Add(tc.at[i]), n)
			}
			if d := got - tc.want; d < -time.Microsecond || d > time.Microsecond {
				t.Errorf("wait = %v, want %v", got, tc.want)
			}
		})
	}
}

// BenchmarkThroughput sends 1 MiB writes to a sink directly and through
// the proxy, unshaped (splice) and with a rate too high to hold anything
// back (copies through the process). It also reports the CPU time of the
// whole process (client, proxy and sink) per MiB.
func BenchmarkThroughput(b *testing.B) {
	target := sink(b)
	buf := random(1 << 20)
	for _, bc := range []struct {
		name string
		addr func(b *testing.B) string
	}{
		{"direct", func(*testing.B) string { return target }},
		{"proxy", func(b *testing.B) string { return startProxy(b, target, nil).Addr() }},
		{"proxy-rate", func(b *testing.B) string {
			p := startProxy(b, target, nil)
			p.SetRate(1 << 40)
			return p.Addr()
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := dial(b, bc.addr(b))
			b.SetBytes(int64(len(buf)))
			cpu0 := cpuTime(b)
			for b.Loop() {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			// Wait until the sink has read it all and closed.
			c.CloseWrite()
			io.Copy(io.Discard, c)
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime returns the user and system time the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
