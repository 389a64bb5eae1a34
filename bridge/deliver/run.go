package deliver

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/core/wire"
)

// recheck bounds how long a waiting command goes unlooked-at without an
// event (its expiry is noticed within it).
const recheck = 250 * time.Millisecond

// Run delivers until ctx ends. It is the only goroutine that writes
// commands to clients.
func (d *Deliverer) Run(ctx context.Context) error {
	tick := time.NewTicker(recheck)
	defer tick.Stop()
	for {
		changed := d.cfg.Queue.Changed()
		d.pass(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-d.kick:
		case <-tick.C:
		}
	}
}

// pass looks at every device with commands and starts a delivery where
// none is in flight.
func (d *Deliverer) pass(ctx context.Context) {
	for _, device := range d.cfg.Queue.Devices() {
		if ctx.Err() != nil {
			return
		}
		d.mu.Lock()
		f := d.flights[device]
		d.mu.Unlock()
		if f != nil {
			continue
		}
		cl, ok := d.cfg.Server.Clients.Get(device)
		if !ok || cl.Closed() {
			continue
		}
		d.tryDevice(ctx, cl)
	}
}

func (d *Deliverer) tryDevice(ctx context.Context, cl *mochi.Client) {
	for {
		c, ok, err := d.cfg.Queue.Next(ctx, cl.ID)
		if err != nil {
			d.log.Warn("downlink: reading the queue", "device", cl.ID, "err", err)
			return
		}
		if !ok {
			return
		}
		if d.cfg.MaySubscribe != nil && !d.cfg.MaySubscribe(cl, c.Topic) {
			if err := d.cfg.Queue.Finish(ctx, c, wire.StatusRejected, wire.ReasonACL, nil); err != nil {
				d.log.Warn("downlink: cannot record a rejection", "id", c.ID, "err", err)
				return
			}
			continue
		}
		if !subscribed(cl, c.Topic) {
			return // waits for a matching subscription
		}
		d.send(ctx, cl, c)
		return
	}
}

// send writes c to cl: QoS 1 into the client's in-flight set (PUBACK ends
// it), QoS 0 as written (delivered at once).
func (d *Deliverer) send(ctx context.Context, cl *mochi.Client, c wire.Command) {
	now := time.Now()
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: c.QoS},
		TopicName:   c.Topic,
		Payload:     c.Payload,
		Created:     now.Unix(),
		Expiry:      c.Expires.Unix(),
		Origin:      "outpost-downlink",
	}
	if cl.Properties.ProtocolVersion == 5 {
		remaining := c.Expires.Sub(now)
		secs := (remaining + time.Second - 1) / time.Second
		pk.Properties.MessageExpiryInterval = uint32(max(secs, 1))
		pk.Properties.CorrelationData = []byte(c.ID)
		pk.Properties.ResponseTopic = d.ResponseTopic(c.Device, c.ID)
	}
	f := &flight{cmd: c, cl: cl}
	if c.QoS > 0 {
		id, err := cl.NextPacketID()
		if err != nil {
			d.log.Warn("downlink: no packet id free for the device; retrying later", "device", cl.ID)
			return
		}
		pk.PacketID = uint16(id)
		f.packetID = pk.PacketID
		d.mu.Lock()
		d.flights[c.Device] = f
		d.mu.Unlock()
		if cl.State.Inflight.Set(pk) {
			atomic.AddInt64(&d.cfg.Server.Info.Inflight, 1)
		}
		cl.State.Inflight.DecreaseSendQuota()
	}
	if err := cl.WritePacket(pk); err != nil {
		// The connection is going away; OnDisconnect puts it back.
		d.log.Debug("downlink: write failed", "device", cl.ID, "id", c.ID, "err", err)
		return
	}
	d.deliveries.WithLabelValues(strconv.Itoa(int(cl.Properties.ProtocolVersion))).Inc()
	if c.QoS == 0 {
		d.finishFlight(f, wire.StatusDelivered, "")
	}
	_ = ctx
}

// subscribed reports whether one of cl's subscriptions matches topic.
func subscribed(cl *mochi.Client, topic string) bool {
	for filter := range cl.State.Subscriptions.GetAll() {
		if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
			if _, f, ok := strings.Cut(rest, "/"); ok {
				filter = f
			}
		}
		if matchFilter(filter, topic) {
			return true
		}
	}
	return false
}

// matchFilter is MQTT topic matching ([MQTT-4.7]) for topics that do not
// start with '$' (commands never do).
func matchFilter(filter, topic string) bool {
	fl := strings.Split(filter, "/")
	tl := strings.Split(topic, "/")
	for i, f := range fl {
		switch {
		case f == "#":
			return true
		case i >= len(tl):
			return false
		case f != "+" && f != tl[i]:
			return false
		}
	}
	return len(fl) == len(tl)
}

// answerFailed: a JSON object answer with "ok": false or "status":
// "failed".
func answerFailed(payload []byte) bool {
	var v struct {
		OK     *bool  `json:"ok"`
		Status string `json:"status"`
	}
	if json.Unmarshal(payload, &v) != nil {
		return false
	}
	return (v.OK != nil && !*v.OK) || v.Status == "failed"
}
