package upstream

import (
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
)

// proxy is a TCP proxy on 127.0.0.1 whose connections a test can cut.
type proxy struct {
	ln     net.Listener
	target string

	// delay holds back what clients send by this long (nanoseconds): a
	// slow link, on which a forwarder's publishes reach the server long
	// after it sent them.
	delay atomic.Int64
	// down refuses new connections (closes them at once): the link is
	// down until it is cleared.
	down atomic.Bool

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.cutAll()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.down.Load() {
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[s] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			io.Copy(dst, src)
			dst.Close()
			src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		p.wg.Go(func() { pipe(c, s) })
		if p.delay.Load() > 0 {
			p.wg.Go(func() { p.delayed(s, c) })
		} else {
			p.wg.Go(func() { pipe(s, c) })
		}
	}
}

// delayed copies src to dst, each chunk p.delay after it was read.
func (p *proxy) delayed(dst, src net.Conn) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	ch := make(chan chunk, 4096)
	done := make(chan struct{})
	p.wg.Go(func() {
		defer close(ch)
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				select {
				case ch <- chunk{b[:n], time.Now()}:
				case <-done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	defer func() {
		close(done)
		dst.Close()
		src.Close()
		for range ch {
		}
	}()
	for c := range ch {
		time.Sleep(time.Until(c.at.Add(time.Duration(p.delay.Load()))))
		if _, err := dst.Write(c.b); err != nil {
			return
		}
	}
}

// cutAll closes every proxied connection, both ends, mid-stream.
func (p *proxy) cutAll() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	return len(p.conns) / 2
}

// TestLinkFlaps cuts every connection through a proxy every 200–500 ms
// while records are appended: exactly once, and forwarding completes once
// the link is stable (no stall).
func TestLinkFlaps(t *testing.T) {
	for _, mode := range []Mode{ModeRecord, ModeBatch} {
		t.Run(mode.String(), func(t *testing.T) { testLinkFlaps(t, mode) })
	}
}

func testLinkFlaps(t *testing.T, mode Mode) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d (cut intervals are random)", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	flapFor := 3 * time.Second
	if longTests() {
		flapFor = 60 * time.Second
	}
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	px := startProxy(t, srv.URL()[len("nats://"):])
	dir := t.TempDir()
	l := openLog(t, dir)
	st := openMeta(t, metaPath(dir))
	createTopic(t, l, "t", 3)
	createStream(t, js, "t", wire.TopicConfig{})
	lg, logs := newLogger(t)
	cfg := testConfig(px.url(), lg)
	cfg.AckTimeout = 500 * time.Millisecond
	cfg.Mode = mode
	cfg.MaxBatchRecords = 40
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	f, err := New(t.Context(), cfg, l, st)
	if err != nil {
		t.Fatal(err)
	}
	runForwarder(t, f)

	var wg sync.WaitGroup
	stopAppend := make(chan struct{})
	counts := map[int32]int64{}
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stopAppend:
				return
			default:
			}
			part := int32(i % 3)
			appendN(t, l, "t", part, 25, 100)
			counts[part] += 25
			time.Sleep(time.Millisecond) // producer pace
		}
	})
	cuts := 0
	for start := time.Now(); time.Since(start) < flapFor; {
		time.Sleep(time.Duration(200+rng.IntN(300)) * time.Millisecond) // the flap schedule
		cuts += px.cutAll()
	}
	close(stopAppend)
	wg.Wait()
	stable := time.Now()
	waitForwarded(t, f, 30*time.Second, 3)
	t.Logf("caught up %v after the link became stable", time.Since(stable).Round(time.Millisecond))
	t.Logf("%d connections cut; %v records; reconnects %v; errors by kind: timeout %v disconnected %v other %v",
		cuts, counts, metricValue(t, reg, "outpost_upstream_reconnects_total"),
		metricValue(t, reg, "outpost_upstream_publish_errors_total", "kind", "timeout"),
		metricValue(t, reg, "outpost_upstream_publish_errors_total", "kind", "disconnected"),
		metricValue(t, reg, "outpost_upstream_publish_errors_total", "kind", "other"))
	checkExactlyOnce(t, js, "t", counts)
	if cuts < 5 {
		t.Errorf("only %d connections cut; the test did not flap the link", cuts)
	}
	// After the flapping, new records still flow (the stall bug).
	appendN(t, l, "t", 0, 100, 100)
	counts[0] += 100
	waitForwarded(t, f, 10*time.Second, 3)
	checkExactlyOnce(t, js, "t", counts)
	if n := logs.Count("level=ERROR"); n != 0 {
		t.Errorf("%d error lines:\n%s", n, logs.String())
	}
}
