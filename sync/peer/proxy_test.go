package peer_test

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// faultProxy sits between a follower and its owner on loopback and breaks
// the link on command: cut (close every connection and refuse new ones),
// one-way cut (bytes owner→follower stop flowing, connections stay open),
// delay (every chunk waits before it is forwarded) and heal.
type faultProxy struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu     sync.Mutex
	cut    bool
	oneWay bool
	delay  time.Duration
	conns  map[net.Conn]struct{}
	wake   chan struct{} // closed and replaced when oneWay is lifted
	wg     sync.WaitGroup
}

func newFaultProxy(t testing.TB, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{t: t, ln: ln, target: target, conns: map[net.Conn]struct{}{}, wake: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *faultProxy) Addr() string { return p.ln.Addr().String() }

// setTarget points new connections elsewhere (an owner restarted on a new
// port).
func (p *faultProxy) setTarget(addr string) {
	p.mu.Lock()
	p.target = addr
	p.mu.Unlock()
}

func (p *faultProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut, target := p.cut, p.target
		p.mu.Unlock()
		if cut {
			c.Close()
			continue
		}
		up, err := net.DialTimeout("tcp", target, time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(up, c, false) // follower → owner
		go p.pipe(c, up, true)  // owner → follower
	}
}

func (p *faultProxy) pipe(dst, src net.Conn, toFollower bool) {
	defer p.wg.Done()
	defer func() {
		dst.Close()
		src.Close()
		p.mu.Lock()
		delete(p.conns, dst)
		delete(p.conns, src)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			for {
				p.mu.Lock()
				blocked, wake, d := toFollower && p.oneWay, p.wake, p.delay
				p.mu.Unlock()
				if blocked {
					<-wake
					continue
				}
				if d > 0 {
					time.Sleep(d)
				}
				break
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				p.t.Logf("proxy: %v", err)
			}
			return
		}
	}
}

// Cut closes every connection and refuses new ones until Heal.
func (p *faultProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
}

// OneWay stops bytes from the owner to the follower, leaving connections
// open (the follower's reads time out).
func (p *faultProxy) OneWay() {
	p.mu.Lock()
	p.oneWay = true
	p.mu.Unlock()
}

// Delay makes every chunk wait d before it is forwarded.
func (p *faultProxy) Delay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// Heal lifts every fault.
func (p *faultProxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut, p.delay = false, 0
	if p.oneWay {
		p.oneWay = false
		close(p.wake)
		p.wake = make(chan struct{})
	}
}

func (p *faultProxy) close() {
	p.ln.Close()
	p.Heal()
	p.Cut()
	p.wg.Wait()
}
