package e2e_test

import (
	"context"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/outpost-edge/outpost/edge/node"
)

// BenchmarkIngestDashboardOpen: QoS 1 ingest (100 clients × 100 in flight)
// into the edge node with no dashboard open and with three dashboards
// reading its event stream, alternating in one process; medians of
// throughput and CPU per message. The dashboard's bar is no regression.
//
//	OUTPOST_BENCH_SECONDS=5 go test -run '^$' -bench IngestDashboardOpen -benchtime 3x ./edge/e2e/
func BenchmarkIngestDashboardOpen(b *testing.B) {
	secs := envInt("OUTPOST_BENCH_SECONDS", 5)
	c := benchCase{"qos1_100x100", 100, 100, 1}
	var closed, open, closedCPU, openCPU []float64
	for i := 0; i < b.N; i++ {
		for _, viewers := range []int{0, 3} {
			br, httpAddr := startNodeHTTP(b)
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for v := 0; v < viewers; v++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/ui/events", nil)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						return
					}
					defer resp.Body.Close()
					_, _ = io.Copy(io.Discard, resp.Body)
				}()
			}
			cpu := processCPU()
			s := runFleet(b, c, secs, br)
			perMsgCPU := perMsg(processCPU()-cpu, s.Sent)
			cancel()
			wg.Wait()
			if viewers == 0 {
				closed, closedCPU = append(closed, s.MsgsPerSec), append(closedCPU, perMsgCPU)
			} else {
				open, openCPU = append(open, s.MsgsPerSec), append(openCPU, perMsgCPU)
			}
		}
	}
	b.ReportMetric(median(open), "open-msg/s")
	b.ReportMetric(median(closed), "closed-msg/s")
	b.ReportMetric(median(open)/median(closed), "open/closed")
	b.ReportMetric(median(openCPU), "open-cpu-us/msg")
	b.ReportMetric(median(closedCPU), "closed-cpu-us/msg")
	b.Logf("dashboard open %v msg/s, closed %v msg/s", round(open), round(closed))
}

// startNodeHTTP is startNode that also returns the node's HTTP address.
func startNodeHTTP(t testing.TB) (broker, string) {
	cfg := node.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.MQTT.Address = "127.0.0.1:0"
	cfg.HTTP.Address = "127.0.0.1:0"
	n, err := node.Open(context.Background(), cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	return broker{addr: n.MQTTAddrs()[0], stop: func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node: %v", err)
		}
	}}, n.HTTPAddr()
}
