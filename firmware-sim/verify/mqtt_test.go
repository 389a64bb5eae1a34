package verify_test

import (
	"context"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/firmware-sim/internal/mochitest"
	"github.com/outpost-edge/outpost/firmware-sim/mqttc"
	"github.com/outpost-edge/outpost/firmware-sim/verify"
)

// TestMQTTSourceCatchesGapAndDuplicate publishes a device's readings over
// a real broker with seq 42 left out and seq 77 sent twice.
func TestMQTTSourceCatchesGapAndDuplicate(t *testing.T) {
	b := mochitest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := verify.New(verify.Options{})
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- verify.Run(ctx, verify.MQTTSource{Broker: b.URL, Filters: []string{"sensors/#"}, QoS: 1,
			Expect: 100, Ready: func() { close(ready) }}, c)
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	pub := mqttc.New(mqttc.Config{Broker: b.URL, ClientID: "injector", CleanStart: true, InFlight: 10}, mqttc.Handlers{})
	defer pub.Close()
	if _, err := pub.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	for seq := range int64(100) {
		n := 1
		switch seq {
		case 42:
			n = 0
		case 77:
			n = 2
		}
		for range n {
			if err := pub.Publish(ctx, &mqttc.Message{Topic: "sensors/s/dev-9/telemetry", QoS: 1, Payload: reading("dev-9", seq)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := pub.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rep := c.Report()
	if rep.OK || rep.Missing != 1 || rep.Duplicates != 1 || rep.Problems[0].Gaps[0].From != 42 || rep.Problems[0].DupSamples[0] != 77 {
		t.Fatalf("report %+v", rep)
	}
}
