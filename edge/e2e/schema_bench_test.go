package e2e_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/firmware-sim/fleet"
)

// BenchmarkIngestSchemaCheck compares ingest with the schema check on (a
// rule naming a subject that holds firmware-sim's JSON Schema) and off
// (the same rule without a subject), same process, same fleet: QoS 1, 100
// clients, ~150-byte JSON readings, runs alternating. The bar is
// with/without ≥ 0.8. Run it with
//
//	OUTPOST_BENCH_SECONDS=5 go test -run '^$' -bench IngestSchemaCheck -benchtime 3x ./edge/e2e/
func BenchmarkIngestSchemaCheck(b *testing.B) {
	secs := envInt("OUTPOST_BENCH_SECONDS", 5)
	var with, without, withCPU, withoutCPU []float64
	for i := 0; i < b.N; i++ {
		for _, check := range []bool{false, true} {
			br, _ := schemaNode(b, check)
			cpu := processCPU()
			s := runSchemaFleet(b, br, secs)
			perMsgCPU := perMsg(processCPU()-cpu, s.Sent)
			if check {
				with, withCPU = append(with, s.MsgsPerSec), append(withCPU, perMsgCPU)
			} else {
				without, withoutCPU = append(without, s.MsgsPerSec), append(withoutCPU, perMsgCPU)
			}
		}
	}
	mw, mo := median(with), median(without)
	b.ReportMetric(mw, "checked-msg/s")
	b.ReportMetric(mo, "unchecked-msg/s")
	b.ReportMetric(mw/mo, "checked/unchecked")
	b.ReportMetric(median(withCPU), "checked-cpu-us/msg")
	b.ReportMetric(median(withoutCPU), "unchecked-cpu-us/msg")
	b.Logf("with check %v msg/s, without %v msg/s", round(with), round(without))
}

func runSchemaFleet(t testing.TB, b broker, secs int) fleet.Summary {
	t.Helper()
	defer b.stop()
	cfg := fleet.DefaultConfig()
	cfg.Broker = "tcp://" + b.addr
	cfg.Duration = time.Duration(secs) * time.Second
	cfg.DrainTimeout = 10 * time.Second
	cfg.Seed = 1
	g := fleet.DefaultGroup()
	g.Devices = 100
	g.QoS = 1
	g.InFlight = 100
	g.Rate = 0
	g.CleanStart = true
	g.Payload = fleet.PayloadConfig{Format: "json", Size: 150}
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
		t.Errorf("%d refused, %d missing: %+v", s.Refused, s.Missing, s)
	}
	return s
}
