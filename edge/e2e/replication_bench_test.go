package e2e_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/edge/node"
	"github.com/outpost-edge/outpost/firmware-sim/fleet"
)

// BenchmarkReplication measures site replication (acks: all, the default) on
// loopback, both nodes in this process on the same disk:
//
//   - qos1_100x100: 100 QoS 1 clients × 100 in flight against a node that
//     replicates to a peer, and against a single node, alternately in the
//     same run; medians of throughput and ack latency.
//
//   - lag_5000: 100 devices × 50 msg/s (5,000 msg/s sustained, QoS 1,
//     10 in flight) into the replicating node; the replica's lag in records
//     is sampled every 10 ms (median, p99, max), and the time from the
//     fleet's last ack to the replica holding everything.
//
//     go test -run '^$' -bench Replication -benchtime 5x ./edge/e2e/
//
// OUTPOST_BENCH_SECONDS (default 5) sets the length of each run;
// OUTPOST_BENCH_PEER_TMPFS=1 puts the peer's data on /dev/shm (a second
// disk's stand-in).
func BenchmarkReplication(b *testing.B) {
	secs := envInt("OUTPOST_BENCH_SECONDS", 5)
	b.Run("qos1_100x100", func(b *testing.B) {
		c := benchCase{"qos1_100x100", 100, 100, 1}
		var single, repl, singleP50, replP50, singleP99, replP99, singleCPU, replCPU []float64
		for i := 0; i < b.N; i++ {
			cpu := processCPU()
			s := runFleet(b, c, secs, startNode(b, true))
			single, singleP50, singleP99 = append(single, s.MsgsPerSec), append(singleP50, s.Latency.P50), append(singleP99, s.Latency.P99)
			singleCPU = append(singleCPU, perMsg(processCPU()-cpu, s.Sent))
			cpu = processCPU()
			p := startPair(b)
			s = runFleet(b, c, secs, p.broker)
			repl, replP50, replP99 = append(repl, s.MsgsPerSec), append(replP50, s.Latency.P50), append(replP99, s.Latency.P99)
			replCPU = append(replCPU, perMsg(processCPU()-cpu, s.Sent))
		}
		// Both nodes and the fleet share this process and the machine's
		// cores: where the single node already uses them all, the pair's
		// throughput is bounded by its CPU per message.
		b.Logf("CPU per message (process: fleet and nodes) single %.1f µs, pair %.1f µs (%.2fx)",
			median(singleCPU), median(replCPU), median(replCPU)/median(singleCPU))
		b.ReportMetric(median(repl), "repl-msg/s")
		b.ReportMetric(median(single), "single-msg/s")
		b.ReportMetric(median(repl)/median(single), "repl/single")
		b.Logf("single %8.0f msg/s p50 %.2f ms p99 %.2f ms | replicating %8.0f msg/s p50 %.2f ms p99 %.2f ms | runs single=%v repl=%v",
			median(single), median(singleP50), median(singleP99), median(repl), median(replP50), median(replP99), round(single), round(repl))
	})
	b.Run("lag_5000", func(b *testing.B) {
		var p50s, p99s, maxs, drains []float64
		for i := 0; i < b.N; i++ {
			p := startPair(b)
			stop := make(chan struct{})
			var samples []float64
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				t := time.NewTicker(10 * time.Millisecond)
				defer t.Stop()
				for {
					select {
					case <-stop:
						return
					case <-t.C:
						samples = append(samples, float64(p.lag()))
					}
				}
			}()
			s := runRateFleet(b, secs, p.addr)
			close(stop)
			wg.Wait()
			t0 := time.Now()
			for p.lag() > 0 && time.Since(t0) < 30*time.Second {
				time.Sleep(time.Millisecond)
			}
			drains = append(drains, float64(time.Since(t0).Microseconds())/1000)
			p.stop()
			sort.Float64s(samples)
			p50s = append(p50s, samples[len(samples)/2])
			p99s = append(p99s, samples[len(samples)*99/100])
			maxs = append(maxs, samples[len(samples)-1])
			b.Logf("run %d: %.0f msg/s acked, lag records p50 %.0f p99 %.0f max %.0f, replica complete %.1f ms after the last ack",
				i, s.MsgsPerSec, p50s[i], p99s[i], maxs[i], drains[i])
		}
		b.ReportMetric(median(p50s), "lag-p50-records")
		b.ReportMetric(median(p99s), "lag-p99-records")
		b.ReportMetric(median(maxs), "lag-max-records")
		b.ReportMetric(median(drains), "catchup-ms")
	})
}

type pair struct {
	broker
	lag func() int64 // records the replica lacks, all partitions
}

// startPair starts two nodes replicating each other; devices publish to
// the first (pi-a). stop stops both.
func startPair(t testing.TB) pair {
	reserve := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	addrA, addrB := reserve(), reserve()
	cfg := func(name, listen, peerName, peerAddr string) node.Config {
		c := node.DefaultConfig()
		c.DataDir = t.TempDir()
		c.MQTT.Address, c.HTTP.Address = "127.0.0.1:0", "127.0.0.1:0"
		c.Upstream.Site, c.Upstream.Node = "bench", name
		c.Replication.Listen = listen
		c.Replication.Peers = []node.PeerConfig{{Name: peerName, Address: peerAddr}}
		c.Replication.Secret = "bench-site-secret-0123456789"
		return c
	}
	run := func(c node.Config) (*node.Node, func()) {
		n, err := node.Open(context.Background(), c, node.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- n.Run(ctx) }()
		return n, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("node: %v", err)
			}
		}
	}
	a, stopA := run(cfg("pi-a", addrA, "pi-b", addrB))
	cb := cfg("pi-b", addrB, "pi-a", addrA)
	if os.Getenv("OUTPOST_BENCH_PEER_TMPFS") != "" {
		// Both nodes share this machine's one disk, so each acks: all
		// round waits for two fdatasyncs on it in series; a peer on tmpfs
		// stands in for the second Pi's own SD card.
		dir, err := os.MkdirTemp("/dev/shm", "outpost-bench-peer-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		cb.DataDir = dir
	}
	bn, stopB := run(cb)
	lag := func() int64 {
		var n int64
		for _, ti := range a.Log().Topics() {
			for _, pi := range ti.Partitions {
				op, _ := a.Log().Partition(ti.Name, pi.Partition)
				end := int64(0)
				if rp, err := bn.ReplicaLog("pi-a").Partition(ti.Name, pi.Partition); err == nil {
					end = rp.EndOffset()
				}
				n += op.EndOffset() - end
			}
		}
		return n
	}
	var once sync.Once
	stop := func() { once.Do(func() { stopA(); stopB() }) }
	return pair{broker: broker{addr: a.MQTTAddrs()[0], stop: stop}, lag: lag}
}

// runRateFleet publishes 5,000 msg/s (100 devices × 50/s, QoS 1, 10 in
// flight) for secs seconds.
func runRateFleet(t testing.TB, secs int, addr string) fleet.Summary {
	t.Helper()
	cfg := fleet.DefaultConfig()
	cfg.Broker = "tcp://" + addr
	cfg.Duration = time.Duration(secs) * time.Second
	cfg.DrainTimeout = 10 * time.Second
	cfg.Seed = 1
	g := fleet.DefaultGroup()
	g.Name, g.Devices, g.QoS, g.InFlight, g.Rate, g.CleanStart = "dev", 100, 1, 10, 50, true
	g.Payload = fleet.PayloadConfig{Format: "raw", Size: 100}
	cfg.Groups = []fleet.Group{g}
	f, err := fleet.New(cfg, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Refused > 0 || s.Missing > 0 {
		t.Errorf("%d refused, %d missing", s.Refused, s.Missing)
	}
	return s
}
