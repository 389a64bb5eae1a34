package mqtt_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/bridge/mqtt"
)

// syncBuffer is a bytes.Buffer safe for the broker's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A client's protocol violation (here a second CONNECT) is one concise WARN
// line naming the client, the listener and the error; the packet is logged
// only at debug.
func TestProtocolViolationLogLine(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		t.Run(level.String(), func(t *testing.T) {
			var out syncBuffer
			logger := mqtt.BrokerLogger(slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: level})))
			e := newEnv(t, envOpts{brokerLog: logger})
			c := dialRaw(t, e.addr, "violator", 5)
			c.send(packets.Packet{
				FixedHeader: packets.FixedHeader{Type: packets.Connect},
				Connect:     packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 60, ClientIdentifier: "violator"},
			})
			c.closed(5 * time.Second)
			var warn, debug []string
			waitFor(t, 5*time.Second, func() error {
				warn, debug = nil, nil
				for _, l := range strings.Split(out.String(), "\n") {
					if !strings.Contains(l, "error processing packet") {
						continue
					}
					if strings.Contains(l, "level=WARN") {
						warn = append(warn, l)
					} else if strings.Contains(l, "level=DEBUG") {
						debug = append(debug, l)
					}
				}
				// The packet's DEBUG line follows its WARN line.
				if len(warn) == 0 || (level == slog.LevelDebug && len(debug) == 0) {
					return errNotYet
				}
				return nil
			})
			w := warn[0]
			if len(warn) != 1 || strings.Contains(w, "pk=") || len(w) > 400 ||
				!strings.Contains(w, "client=violator") || !strings.Contains(w, "listener=t1") || !strings.Contains(w, "error=") {
				t.Fatalf("WARN lines %q: want one line with client, listener and error, without the packet", warn)
			}
			if level == slog.LevelDebug && (len(debug) != 1 || !strings.Contains(debug[0], "pk=")) {
				t.Fatalf("DEBUG lines %q: want the packet", debug)
			}
			if level == slog.LevelInfo && len(debug) != 0 {
				t.Fatalf("DEBUG lines at info level: %q", debug)
			}
		})
	}
}
