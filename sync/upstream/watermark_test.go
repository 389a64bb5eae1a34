package upstream

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
)

// hwStub is a high watermark a test moves (sync/peer's Owner in the node).
type hwStub struct {
	mu      sync.Mutex
	hw      int64
	changed chan struct{}
}

func (h *hwStub) HighWatermark(topic string, partition int32) (int64, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hw, topic == "t" && partition == 0
}

func (h *hwStub) HighWatermarkChanged() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.changed
}

func (h *hwStub) set(hw int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hw = hw
	close(h.changed)
	h.changed = make(chan struct{})
}

// TestForwardsOnlyBelowTheHighWatermark: with a Watermark the forwarder
// sends a replicated partition only up to its high watermark (partition 1,
// which the watermark does not cover, goes whole), and goes on as it
// moves — in both pump modes.
func TestForwardsOnlyBelowTheHighWatermark(t *testing.T) {
	for _, fenced := range []bool{false, true} {
		t.Run(fmt.Sprint("fenced=", fenced), func(t *testing.T) {
			srv := natstest.RunServer(t)
			_, js := srv.Connect()
			createStream(t, js, "t", wire.TopicConfig{})
			dir := t.TempDir()
			l := openLog(t, dir)
			createTopic(t, l, "t", 2)
			appendN(t, l, "t", 0, 100, 50)
			appendN(t, l, "t", 1, 30, 50)
			hw := &hwStub{hw: 40, changed: make(chan struct{})}
			lg, _ := newLogger(t)
			cfg := testConfig(srv.URL(), lg)
			cfg.Fenced, cfg.Watermark = fenced, hw
			f, err := New(t.Context(), cfg, l, openMeta(t, metaPath(dir)))
			if err != nil {
				t.Fatal(err)
			}
			runForwarder(t, f)
			forwarded := func(part int32) int64 {
				for _, lag := range f.Lag() {
					if lag.Partition == part {
						return lag.ForwardedOffset
					}
				}
				return -1
			}
			natstest.WaitFor(t, 10*time.Second, func() error {
				if a, b := forwarded(0), forwarded(1); a != 40 || b != 30 {
					return fmt.Errorf("forwarded to %d and %d, want 40 and 30", a, b)
				}
				return nil
			})
			time.Sleep(300 * time.Millisecond) // nothing more goes while the watermark stands
			if got := forwarded(0); got != 40 {
				t.Fatalf("forwarded to %d past the high watermark 40", got)
			}
			hw.set(75)
			natstest.WaitFor(t, 10*time.Second, func() error {
				if got := forwarded(0); got != 75 {
					return fmt.Errorf("forwarded to %d, want 75", got)
				}
				return nil
			})
			hw.set(100)
			waitForwarded(t, f, 10*time.Second, 2)
			checkExactlyOnce(t, js, "t", map[int32]int64{0: 100, 1: 30})
		})
	}
}
