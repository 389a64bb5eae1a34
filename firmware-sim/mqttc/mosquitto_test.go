package mqttc_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/firmware-sim/internal/mochitest"
	"github.com/outpost-edge/outpost/firmware-sim/mqttc"
)

// TestMosquittoDropsNoLoss pipelines QoS 1 and 2 publishes while the client
// drops its own connection every few milliseconds, against mosquitto,
// which (unlike mochi 2.7.9, see mochitest.Ingest) never acknowledges a
// message it did not deliver. Every message must reach the subscriber;
// at QoS 2 exactly once.
func TestMosquittoDropsNoLoss(t *testing.T) {
	url := mochitest.StartMosquitto(t)
	for _, version := range []int{3, 5} {
		for _, qos := range []byte{1, 2} {
			t.Run(fmt.Sprintf("v%d/qos%d", version, qos), func(t *testing.T) {
				topic := fmt.Sprintf("drop/v%d/q%d", version, qos)
				var mu sync.Mutex
				got := map[int]int{}
				sub := mqttc.New(mqttc.Config{Broker: url, ClientID: "sub-" + topic, CleanStart: true, Version: version},
					mqttc.Handlers{OnMessage: func(_ string, p []byte, _ byte) {
						n, _ := strconv.Atoi(string(p))
						mu.Lock()
						got[n]++
						mu.Unlock()
					}})
				defer sub.Close()
				ctx := context.Background()
				if _, err := sub.Connect(ctx); err != nil {
					t.Fatal(err)
				}
				if _, err := sub.Subscribe(ctx, 2, topic); err != nil {
					t.Fatal(err)
				}
				c := mqttc.New(mqttc.Config{Broker: url, ClientID: "pub-" + topic, Version: version, InFlight: 50, SessionExpiry: time.Hour}, mqttc.Handlers{})
				defer c.Close()
				if _, err := c.Connect(ctx); err != nil {
					t.Fatal(err)
				}
				const n = 10000
				for i := 0; i < n; {
					if err := c.Publish(ctx, &mqttc.Message{Topic: topic, QoS: qos, Payload: []byte(strconv.Itoa(i))}); err != nil {
						if _, err := c.Connect(ctx); err != nil {
							t.Fatal(err)
						}
						continue
					}
					i++
					if i%300 == 0 {
						c.Drop() // with up to 50 messages in flight
					}
				}
				for c.InFlight() > 0 {
					if err := c.WaitIdle(ctx); err != nil {
						if _, err := c.Connect(ctx); err != nil {
							t.Fatal(err)
						}
					}
				}
				waitFor(t, 10*time.Second, func() error {
					mu.Lock()
					defer mu.Unlock()
					if len(got) != n {
						return fmt.Errorf("subscriber has %d distinct of %d", len(got), n)
					}
					return nil
				})
				dups := 0
				mu.Lock()
				for _, k := range got {
					dups += k - 1
				}
				mu.Unlock()
				t.Logf("resent %d, duplicates %d", c.Resent(), dups)
				if c.Resent() == 0 {
					t.Fatal("nothing was resent: the drops did not hit in-flight messages")
				}
				if qos == 2 && dups != 0 {
					t.Fatalf("QoS 2: %d duplicates", dups)
				}
			})
		}
	}
}
