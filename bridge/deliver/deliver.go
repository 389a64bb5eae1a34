package deliver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/wire"
)

// Queue is the node's command queue (sync/downlink's Store satisfies it).
type Queue interface {
	// Devices lists the devices with commands pending.
	Devices() []string
	// Next returns the device's first pending command that has not
	// expired (expired ones are ended by Next).
	Next(ctx context.Context, device string) (wire.Command, bool, error)
	// Finish ends a pending command (delivered, expired, rejected, ...).
	Finish(ctx context.Context, c wire.Command, st wire.CommandStatus, reason string, result []byte) error
	// Answer records a device's answer to a command.
	Answer(ctx context.Context, site, device, id string, st wire.CommandStatus, result []byte) error
	// Changed is closed at the queue's next change.
	Changed() <-chan struct{}
}

// DefaultResponsePrefix is the first levels of response topics: a device
// answers command <id> on <prefix>/<device>/<id>.
const DefaultResponsePrefix = "outpost/commands"

// Config configures a Deliverer.
type Config struct {
	Server *mochi.Server
	Queue  Queue
	// Site is the node's site (answers are recorded under it).
	Site string
	// MaySubscribe tells whether the client may subscribe to topic (the
	// node wires the auth hook's ACL); nil allows everything.
	MaySubscribe func(cl *mochi.Client, topic string) bool
	// ResponsePrefix: see DefaultResponsePrefix.
	ResponsePrefix string
	// Logger receives the component's logs; nil discards.
	Logger *slog.Logger
	// Registerer receives outpost_downlink_deliveries_total; nil none.
	Registerer prometheus.Registerer
}

// flight is the one command in flight to a device.
type flight struct {
	cmd      wire.Command
	cl       *mochi.Client
	packetID uint16
}

// Deliverer delivers queued commands to connected devices, one in flight
// per device, in queue order, and turns PUBACKs and answers into
// statuses. It is a mochi hook (connections, subscriptions, PUBACKs,
// answers) plus one goroutine (Run) that does all delivering.
//
// A device gets a command once it is connected and holds a subscription
// that matches the command's topic (so a clean session that subscribes
// after connecting gets it, and a persistent one at once). A device the
// ACL forbids to subscribe to the topic gets it never: the command ends
// rejected (reason acl). MQTT 5 deliveries carry Message Expiry (the
// remaining time to live, rounded up to a second), Correlation Data (the
// command id) and Response Topic.
//
// At-least-once: a device that disconnects with a command in flight gets
// it again on its next connection (mochi's copy of the in-flight message
// is dropped, so it is resent once, by Run); a session taken over by a new
// connection may see both. Devices drop duplicates by the command id.
// A connected device that never acknowledges a QoS 1 command holds its own
// queue until it reconnects (MQTT forbids resending on the same
// connection); other devices are not affected.
type Deliverer struct {
	mochi.HookBase
	cfg  Config
	log  *slog.Logger
	kick chan struct{}

	deliveries *prometheus.CounterVec

	mu      sync.Mutex
	flights map[string]*flight // by device (client id)
}

// New returns a Deliverer; add it to the server with AddHook before the
// ingest hook (it must see answers first), and run Run.
func New(cfg Config) (*Deliverer, error) {
	if cfg.Server == nil || cfg.Queue == nil {
		return nil, errors.New("deliver: Server and Queue are required")
	}
	if cfg.ResponsePrefix == "" {
		cfg.ResponsePrefix = DefaultResponsePrefix
	}
	if strings.ContainsAny(cfg.ResponsePrefix, "+#") || strings.HasPrefix(cfg.ResponsePrefix, "$") || strings.HasSuffix(cfg.ResponsePrefix, "/") {
		return nil, fmt.Errorf("deliver: response prefix %q: want topic levels without wildcards, not starting with '$' nor ending in '/'", cfg.ResponsePrefix)
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	d := &Deliverer{cfg: cfg, log: lg, kick: make(chan struct{}, 1), flights: map[string]*flight{},
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_downlink_deliveries_total",
			Help: "Command deliveries written to devices, by MQTT protocol version (3, 4, 5).",
		}, []string{"protocol"})}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(d.deliveries); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// ID names the hook.
func (d *Deliverer) ID() string { return "outpost-downlink" }

// Provides says which hooks the Deliverer implements.
func (d *Deliverer) Provides(b byte) bool {
	switch b {
	case mochi.OnSessionEstablished, mochi.OnSubscribed, mochi.OnDisconnect, mochi.OnQosComplete, mochi.OnPublish:
		return true
	}
	return false
}

func (d *Deliverer) wake() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// OnSessionEstablished: a device connected; deliver if it has commands.
func (d *Deliverer) OnSessionEstablished(*mochi.Client, packets.Packet) { d.wake() }

// OnSubscribed: a device subscribed; a command waiting for it may match.
func (d *Deliverer) OnSubscribed(*mochi.Client, packets.Packet, []byte) { d.wake() }

// OnDisconnect: a command in flight to cl goes back to be sent again on
// the device's next connection; mochi's own copy is dropped so that a
// persistent session does not get it twice.
func (d *Deliverer) OnDisconnect(cl *mochi.Client, _ error, _ bool) {
	d.mu.Lock()
	f := d.flights[cl.ID]
	if f != nil && f.cl == cl {
		delete(d.flights, cl.ID)
		if f.packetID != 0 && cl.State.Inflight.Delete(f.packetID) {
			atomic.AddInt64(&d.cfg.Server.Info.Inflight, -1)
		}
	}
	d.mu.Unlock()
	d.wake()
}

// OnQosComplete: the device acknowledged a QoS 1 message; if it is the
// command in flight, the command is delivered.
func (d *Deliverer) OnQosComplete(cl *mochi.Client, pk packets.Packet) {
	// mochi also calls this with the PUBACK it builds for a client's own
	// QoS 1 publish (stamped with Created; a PUBACK read from the client
	// is not), whose packet id may equal ours: packet ids of the two
	// directions are independent.
	if pk.Created != 0 {
		return
	}
	d.mu.Lock()
	f := d.flights[cl.ID]
	if f == nil || f.packetID != pk.PacketID {
		d.mu.Unlock()
		return
	}
	d.mu.Unlock()
	d.finishFlight(f, wire.StatusDelivered, "")
}

func (d *Deliverer) finishFlight(f *flight, st wire.CommandStatus, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.cfg.Queue.Finish(ctx, f.cmd, st, reason, nil); err != nil {
		// The command stays first in the queue: it is delivered again.
		d.log.Warn("downlink: cannot record a status; the command will be delivered again", "id", f.cmd.ID, "status", st, "err", err)
	}
	d.mu.Lock()
	if d.flights[f.cmd.Device] == f {
		delete(d.flights, f.cmd.Device)
	}
	d.mu.Unlock()
	d.wake()
}

// OnPublish records answers: a publish on <ResponsePrefix>/<device>/<id>
// by that device becomes the command's result, failed when the payload is
// a JSON object with "ok": false or "status": "failed", succeeded
// otherwise. The publish then goes on to the other hooks (ingest stores
// it like any publish).
func (d *Deliverer) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	rest, ok := strings.CutPrefix(pk.TopicName, d.cfg.ResponsePrefix+"/")
	if !ok {
		return pk, nil
	}
	device, id, ok := strings.Cut(rest, "/")
	if !ok || device != cl.ID || wire.ValidateCommandID(id) != nil || wire.ValidateName("device", device) != nil {
		return pk, nil
	}
	st := wire.StatusSucceeded
	if answerFailed(pk.Payload) {
		st = wire.StatusFailed
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.cfg.Queue.Answer(ctx, d.cfg.Site, device, id, st, pk.Payload); err != nil {
		d.log.Warn("downlink: cannot record an answer", "device", device, "id", id, "err", err)
		return pk, packets.ErrRejectPacket
	}
	return pk, nil
}

// ResponseTopic is where device answers command id.
func (d *Deliverer) ResponseTopic(device, id string) string {
	return d.cfg.ResponsePrefix + "/" + device + "/" + id
}
