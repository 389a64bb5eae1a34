package e2e_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"sort"
	"syscall"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/outpost-edge/outpost/edge/node"
	"github.com/outpost-edge/outpost/firmware-sim/fleet"
	"github.com/outpost-edge/outpost/internal/mochifix"
)

type benchCase struct {
	name     string
	clients  int
	inflight int
	qos      int
}

// BenchmarkIngestVsMochi compares the edge node (sync: always, a real disk)
// with an in-memory mochi broker under the same firmware-sim fleet, both in
// this process. Each iteration is one run of each: mochi, the edge with its
// journal (the default) and the edge without it (log.journal: false);
// medians are reported. Run it with
//
//	go test -run '^$' -bench IngestVsMochi -benchtime 3x ./edge/e2e/
//
// OUTPOST_BENCH_SECONDS (default 5) sets the length of each run.
func BenchmarkIngestVsMochi(b *testing.B) {
	secs := envInt("OUTPOST_BENCH_SECONDS", 5)
	cases := []benchCase{
		{"qos1_100x100", 100, 100, 1},
		{"qos1_1x100", 1, 100, 1},
		{"qos0_100", 100, 1, 0},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var mem, edge, nj runs
			for i := 0; i < b.N; i++ {
				mem.measure(b, c, secs, "mochi", func() broker { return startMochi(b) })
				edge.measure(b, c, secs, "edge", func() broker { return startNode(b, true) })
				nj.measure(b, c, secs, "edge-nojournal", func() broker { return startNode(b, false) })
			}
			me, mm := median(edge.rate), median(mem.rate)
			b.ReportMetric(me, "edge-msg/s")
			b.ReportMetric(mm, "mochi-msg/s")
			b.ReportMetric(me/mm, "edge/mochi")
			b.ReportMetric(median(edge.perSync), "records/fdatasync")
			b.ReportMetric(median(edge.cpu), "edge-cpu-us/msg")
			b.ReportMetric(median(mem.cpu), "mochi-cpu-us/msg")
			b.ReportMetric(median(nj.rate), "nojournal-msg/s")
			b.ReportMetric(median(nj.perSync), "nojournal-records/fdatasync")
			b.ReportMetric(median(nj.cpu), "nojournal-cpu-us/msg")
			b.Logf("%-14s edge %8.0f msg/s (p50 %.2f ms, %.2f cpu-us/msg)  edge-nojournal %8.0f msg/s (p50 %.2f ms, %.2f cpu-us/msg)  mochi-mem %8.0f msg/s (p50 %.2f ms, %.2f cpu-us/msg)  runs edge=%v nojournal=%v mochi=%v",
				c.name, me, median(edge.p50), median(edge.cpu), median(nj.rate), median(nj.p50), median(nj.cpu), mm, median(mem.p50), median(mem.cpu), round(edge.rate), round(nj.rate), round(mem.rate))
		})
	}
}

// runs collects one broker's figures over a benchmark's iterations.
type runs struct{ rate, p50, cpu, perSync []float64 }

// measure runs the fleet once against the broker start returns. The pprof
// label lets a CPU profile tell the brokers apart (goroutines inherit it):
// go tool pprof -tagfocus broker=edge.
func (r *runs) measure(b *testing.B, c benchCase, secs int, name string, start func() broker) {
	var s fleet.Summary
	var nb broker
	cpu, wall := processCPU(), time.Now()
	pprof.Do(context.Background(), pprof.Labels("broker", name), func(context.Context) {
		nb = start()
		s = runFleet(b, c, secs, nb)
	})
	r.cpu = append(r.cpu, perMsg(processCPU()-cpu, s.Sent))
	logRun(b, name, s, cpu, wall)
	r.rate = append(r.rate, s.MsgsPerSec)
	r.p50 = append(r.p50, s.Latency.P50)
	if nb.perSync != nil {
		r.perSync = append(r.perSync, nb.perSync())
	}
}

// processCPU returns the CPU time (user and system) this process used so
// far: per message, it is the cost of broker and fleet together, which
// other processes on the machine do not distort the way they distort
// throughput.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// logRun logs a run's messages, time and the process's CPU use during it.
func logRun(b *testing.B, name string, s fleet.Summary, cpu time.Duration, wall time.Time) {
	d := time.Since(wall)
	b.Logf("%-5s run: %d msgs in %.2fs (fleet: start to last completion), process used %.2f cores over the %.2fs run",
		name, s.Sent, s.ElapsedSeconds, (processCPU()-cpu).Seconds()/d.Seconds(), d.Seconds())
}

func perMsg(d time.Duration, msgs int64) float64 {
	if msgs == 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(msgs)
}

func round(xs []float64) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = int(x)
	}
	return out
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

type broker struct {
	addr string
	stop func()
	// perSync reports records appended per fdatasync so far (edge only).
	perSync func() float64
}

func startMochi(t testing.TB) broker {
	srv := mochi.New(&mochi.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	srv.AddHook(new(auth.AllowHook), nil)
	tcp := listeners.NewTCP(listeners.Config{ID: "t", Address: "127.0.0.1:0"})
	if err := srv.AddListener(mochifix.Listener{Listener: tcp, Server: srv}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	return broker{addr: tcp.Address(), stop: func() { srv.Close() }}
}

func startNode(t testing.TB, journal bool) broker {
	cfg := node.DefaultConfig()
	cfg.Log.Journal = journal
	cfg.DataDir = t.TempDir()
	cfg.MQTT.Address = "127.0.0.1:0"
	cfg.HTTP.Address = "127.0.0.1:0"
	if d := os.Getenv("OUTPOST_BENCH_COMMIT_DELAY"); d != "" {
		v, err := time.ParseDuration(d)
		if err != nil {
			t.Fatalf("OUTPOST_BENCH_COMMIT_DELAY: %v", err)
		}
		cfg.Log.CommitDelayMax = v
	}
	n, err := node.Open(context.Background(), cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	perSync := func() float64 {
		var recs, syncs float64
		mfs, _ := n.Registry().Gather()
		for _, mf := range mfs {
			switch mf.GetName() {
			case "outpost_log_appended_records_total":
				recs = mf.GetMetric()[0].GetCounter().GetValue()
			case "outpost_log_fsync_seconds":
				syncs = float64(mf.GetMetric()[0].GetHistogram().GetSampleCount())
			}
		}
		if syncs == 0 {
			return 0
		}
		return recs / syncs
	}
	return broker{addr: n.MQTTAddrs()[0], perSync: perSync, stop: func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node: %v", err)
		}
	}}
}

func runFleet(t testing.TB, c benchCase, secs int, b broker) fleet.Summary {
	t.Helper()
	defer b.stop()
	cfg := fleet.DefaultConfig()
	cfg.Broker = "tcp://" + b.addr
	cfg.Duration = time.Duration(secs) * time.Second
	cfg.DrainTimeout = 10 * time.Second
	cfg.Seed = 1
	g := fleet.DefaultGroup()
	g.Name = "gw"
	g.Devices = c.clients
	g.QoS = c.qos
	g.InFlight = c.inflight
	g.Rate = 0
	g.CleanStart = true
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
	if c.qos > 0 && (s.Refused > 0 || s.Missing > 0) {
		t.Errorf("%s: %d refused, %d missing: %+v", c.name, s.Refused, s.Missing, s)
	}
	fmt.Fprint(os.Stderr)
	return s
}
