package mochitest

import (
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/internal/mochifix"
)

// Broker is a running mochi server.
type Broker struct {
	// Server is the mochi server, for dropping clients and inline subscriptions.
	Server *mqtt.Server
	// URL is the TCP broker URL, tcp://127.0.0.1:PORT.
	URL string
	// WSURL is the WebSocket URL when StartWS was used.
	WSURL string
}

// Start runs a broker until the test ends. Hooks are added after the
// AllowHook, in order.
func Start(tb testing.TB, hooks ...mqtt.Hook) *Broker {
	tb.Helper()
	b, err := New(false, hooks...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = b.Server.Close() })
	return b
}

// StartWS runs a broker with a WebSocket listener as well.
func StartWS(tb testing.TB) *Broker {
	tb.Helper()
	b, err := New(true)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = b.Server.Close() })
	return b
}

// New starts a broker; the caller closes b.Server.
func New(withWS bool, hooks ...mqtt.Hook) (*Broker, error) {
	s := mqtt.New(&mqtt.Options{
		InlineClient: true,
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, fmt.Errorf("mochitest: %w", err)
	}
	for _, h := range hooks {
		if err := s.AddHook(h, nil); err != nil {
			return nil, fmt.Errorf("mochitest: %w", err)
		}
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: "127.0.0.1:0"})
	// mochifix.Listener: a Close racing with a client leaving hung CI in
	// mochi's own (mochi-mqtt/server#488).
	if err := s.AddListener(mochifix.Listener{Listener: tcp, Server: s}); err != nil {
		return nil, fmt.Errorf("mochitest: %w", err)
	}
	b := &Broker{Server: s, URL: "tcp://" + tcp.Address()}
	if withWS {
		// mochi's websocket listener does not report a port chosen by the
		// kernel, so pick a free one first; the tiny window for a clash is
		// acceptable in tests.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("mochitest: %w", err)
		}
		addr := l.Addr().String()
		_ = l.Close()
		if err := s.AddListener(mochifix.Listener{Listener: listeners.NewWebsocket(listeners.Config{ID: "ws", Address: addr}), Server: s}); err != nil {
			return nil, fmt.Errorf("mochitest: %w", err)
		}
		b.WSURL = "ws://" + addr + "/mqtt"
	}
	if err := s.Serve(); err != nil {
		return nil, fmt.Errorf("mochitest: serve: %w", err)
	}
	if withWS {
		if err := waitDial(b.WSURL[len("ws://") : len(b.WSURL)-len("/mqtt")]); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// waitDial polls until the websocket listener, which mochi starts in a
// goroutine, accepts connections.
func waitDial(addr string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mochitest: websocket listener %s not up: %w", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Ingest is a hook that reports every PUBLISH the broker accepts, in
// OnPublish, before the broker acknowledges it: the point where Outpost's
// bridge appends to the log. Tests that drop connections check delivery
// here rather than at a subscriber, because mochi 2.7.9 can acknowledge a
// message without fanning it out: processPublish stores the PUBACK/PUBREC
// in the session's inflight before writing it, returns early when that
// write fails on a closed connection, and resends the stored ack when the
// session resumes.
type Ingest struct {
	mqtt.HookBase
	// Fn is called for each accepted PUBLISH; it must be safe for
	// concurrent use.
	Fn func(clientID, topic string, payload []byte)
}

// ID implements mqtt.Hook.
func (h *Ingest) ID() string { return "mochitest-ingest" }

// Provides implements mqtt.Hook.
func (h *Ingest) Provides(b byte) bool { return b == mqtt.OnPublish }

// OnPublish implements mqtt.Hook.
func (h *Ingest) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	h.Fn(cl.ID, pk.TopicName, pk.Payload)
	return pk, nil
}
