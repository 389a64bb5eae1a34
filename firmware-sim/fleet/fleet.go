package fleet

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/firmware-sim/mqttc"
	"github.com/outpost-edge/outpost/firmware-sim/payload"
)

// Fleet is a set of simulated devices.
type Fleet struct {
	cfg     Config
	tls     *tls.Config
	log     *slog.Logger
	st      stats
	devices []*device
	started atomic.Int64 // unix nanos of Run's start
	ran     atomic.Bool
}

// New validates cfg and builds the devices without connecting them. tc is
// used for ssl:// and wss:// brokers (nil: system roots); log may be nil.
func New(cfg Config, tc *tls.Config, log *slog.Logger) (*Fleet, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64()
	}
	f := &Fleet{cfg: cfg, tls: tc, log: log}
	seen := make(map[string]string)
	idx := 0
	for gi := range f.cfg.Groups {
		g := &f.cfg.Groups[gi]
		format, _ := payload.ParseFormat(g.Payload.Format) // checked by Validate
		for n := range g.Devices {
			d, err := f.newDevice(g, n, idx, format)
			if err != nil {
				return nil, err
			}
			if other, dup := seen[d.clientID]; dup {
				return nil, fmt.Errorf("fleet: groups[%d] (%s): client id %q is also used by %s; make client_id templates unique", gi, g.Name, d.clientID, other)
			}
			seen[d.clientID] = g.Name
			f.devices = append(f.devices, d)
			idx++
		}
	}
	return f, nil
}

// Seed returns the seed in use, so a run can be repeated.
func (f *Fleet) Seed() uint64 { return f.cfg.Seed }

// Devices returns the ids of all devices in start order.
func (f *Fleet) Devices() []string {
	ids := make([]string, len(f.devices))
	for i, d := range f.devices {
		ids[i] = d.id
	}
	return ids
}

// Run starts every device and blocks until all are done: sampling ended
// (Count reached or Duration over), then outstanding acks drained or
// DrainTimeout passed. It returns the final Summary; cancelling ctx stops
// all devices at once.
func (f *Fleet) Run(ctx context.Context) (Summary, error) {
	if !f.ran.CompareAndSwap(false, true) {
		return Summary{}, fmt.Errorf("fleet: Run called twice")
	}
	start := time.Now()
	f.started.Store(start.UnixNano())
	genCtx, cancel := ctx, context.CancelFunc(func() {})
	if f.cfg.Duration > 0 {
		genCtx, cancel = context.WithTimeout(ctx, f.cfg.Duration)
	}
	defer cancel()
	f.log.Info("fleet starting", "broker", f.cfg.Broker, "devices", len(f.devices), "seed", f.cfg.Seed)
	var wg sync.WaitGroup
	for i, d := range f.devices {
		var delay time.Duration
		if f.cfg.RampUp > 0 && len(f.devices) > 1 {
			delay = f.cfg.RampUp * time.Duration(i) / time.Duration(len(f.devices)-1)
		}
		wg.Go(func() { d.run(ctx, genCtx, delay) })
	}
	wg.Wait()
	sum := f.Snapshot()
	f.log.Info("fleet done", "sent", sum.Sent, "acked", sum.Acked, "missing", sum.Missing)
	return sum, ctx.Err()
}

// Snapshot returns the counters so far; safe while Run runs.
func (f *Fleet) Snapshot() Summary {
	var inFlight, resent int64
	for _, d := range f.devices {
		inFlight += int64(d.client.InFlight())
		resent += d.client.Resent()
	}
	start := time.Unix(0, f.started.Load())
	s := f.st.summary(start, inFlight, resent)
	s.Broker = f.cfg.Broker
	s.Devices = len(f.devices)
	return s
}

// device is one simulated sensor; only its own goroutine touches it.
type device struct {
	f        *Fleet
	g        *Group
	id       string
	clientID string
	topic    string
	format   payload.Format
	rng      *rand.Rand
	model    *payload.Model
	client   *mqttc.Client
	skew     time.Duration
	drift    float64 // fraction, e.g. 20e-6
	born     time.Time

	seq     int64
	backlog []*mqttc.Message
	head    int

	commands   string              // command topic filter; "" takes none
	answers    chan *mqttc.Message // answers to commands, sent by run
	answerKick chan struct{}       // wakes run when an answer is queued
}

func (f *Fleet) newDevice(g *Group, n, idx int, format payload.Format) (*device, error) {
	rng := rand.New(rand.NewPCG(f.cfg.Seed, uint64(idx)))
	vars := map[string]string{"site": f.cfg.Site, "group": g.Name, "n": fmt.Sprintf("%05d", n)}
	d := &device{f: f, g: g, format: format, rng: rng, model: payload.NewModel(rng)}
	d.id = expand(g.DeviceID, vars)
	vars["device"] = d.id
	d.clientID = expand(g.ClientID, vars)
	vars["client"] = d.clientID
	d.topic = expand(g.Topic, vars)
	if g.ClockSkew > 0 {
		d.skew = time.Duration((rng.Float64()*2 - 1) * float64(g.ClockSkew))
	}
	if g.ClockDriftPPM > 0 {
		d.drift = (rng.Float64()*2 - 1) * g.ClockDriftPPM / 1e6
	}
	version := 5
	if g.MQTTVersion == "3" || (g.MQTTVersion == "mixed" && n%2 == 1) {
		version = 3
	}
	mc := mqttc.Config{
		Broker:        f.cfg.Broker,
		ClientID:      d.clientID,
		Version:       version,
		Username:      expand(g.Username, vars),
		Password:      g.Password,
		KeepAlive:     g.KeepAlive,
		CleanStart:    g.CleanStart,
		SessionExpiry: g.SessionExpiry,
		TLS:           f.tls,
		InFlight:      g.InFlight,
	}
	if g.Will.Topic != "" {
		mc.Will = &mqttc.Message{
			Topic:   expand(g.Will.Topic, vars),
			Payload: []byte(expand(g.Will.Payload, vars)),
			QoS:     byte(g.Will.QoS),
			Retain:  g.Will.Retain,
		}
	}
	h := mqttc.Handlers{OnAck: f.st.onAck}
	if g.Commands != "" {
		d.commands = expand(g.Commands, vars)
		d.answers = make(chan *mqttc.Message, maxAnswers)
		d.answerKick = make(chan struct{}, 1)
		h.OnPublish = d.onCommand
	}
	d.client = mqttc.New(mc, h)
	return d, nil
}

// clock is the device's idea of the time at true time t.
func (d *device) clock(t time.Time) int64 {
	elapsed := t.Sub(d.born)
	return t.Add(d.skew + time.Duration(float64(elapsed)*d.drift)).UnixMilli()
}

// sample takes one reading at true time t into the backlog, possibly
// followed by a deliberately bad payload.
func (d *device) sample(t time.Time) {
	size := d.g.Payload.Size
	r := payload.Reading{Device: d.id, Seq: d.seq, TS: d.clock(t)}
	d.model.Next(&r)
	d.seq++
	d.push(&mqttc.Message{Topic: d.topic, QoS: byte(d.g.QoS), Retain: d.g.Retain, Tag: r.Seq,
		Payload: payload.Append(make([]byte, 0, max(size, 160)), d.format, &r, size)})
	pm, ps := d.g.Payload.MalformedShare, d.g.Payload.SchemaViolationShare
	if pm+ps == 0 {
		return
	}
	var b []byte
	switch x := d.rng.Float64(); {
	case x < pm:
		b = payload.AppendMalformed(nil, d.format, &r, size)
	case x < pm+ps:
		b = payload.AppendSchemaViolation(nil, d.format, &r, size)
	default:
		return
	}
	d.push(&mqttc.Message{Topic: d.topic, QoS: byte(d.g.QoS), Tag: -1, Payload: b})
}

func (d *device) push(m *mqttc.Message) {
	if len(d.backlog)-d.head >= d.g.Backlog {
		d.backlog[d.head] = nil
		d.head++
		d.f.st.dropped.Add(1)
	}
	if d.head > 0 && d.head >= len(d.backlog)/2 {
		n := copy(d.backlog, d.backlog[d.head:])
		clear(d.backlog[n:])
		d.backlog = d.backlog[:n]
		d.head = 0
	}
	d.backlog = append(d.backlog, m)
}

func (d *device) pending() int { return len(d.backlog) - d.head }

// interval is the next sampling interval with jitter.
func (d *device) interval() time.Duration {
	iv := float64(time.Second) / d.g.Rate
	if j := d.g.Jitter; j > 0 {
		iv *= 1 + j*(d.rng.Float64()*2-1)
	}
	return time.Duration(iv)
}

// around returns a random duration in [mean/2, 3·mean/2).
func (d *device) around(mean time.Duration) time.Duration {
	return mean/2 + time.Duration(d.rng.Int64N(int64(mean)))
}

func (d *device) backoff(attempt int) time.Duration {
	b := d.g.Reconnect
	dl := b.Min
	for i := 0; i < attempt && dl < b.Max; i++ {
		dl *= 2
	}
	dl = min(dl, b.Max)
	return dl/2 + time.Duration(d.rng.Int64N(int64(dl/2)+1))
}

func (d *device) generating(genCtx context.Context) bool {
	return genCtx.Err() == nil && (d.g.Count == 0 || d.seq < d.g.Count)
}

// run is the device's life. The loop samples what is due, handles offline
// periods and reconnects, sends the backlog, then sleeps until the next
// thing is due or the connection drops.
func (d *device) run(ctx, genCtx context.Context, delay time.Duration) {
	st := &d.f.st
	defer d.client.Close()
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-genCtx.Done(): // the run ended before this device's turn
			t.Stop()
			return
		}
	}
	d.born = time.Now()
	g := d.g
	now := d.born
	var nextDue, nextBurst, offlineAt, onlineAt, nextConnect time.Time
	if g.Rate > 0 {
		nextDue = now.Add(time.Duration(d.rng.Float64() * float64(time.Second) / g.Rate))
	}
	if g.Burst.Every > 0 {
		nextBurst = now.Add(d.around(g.Burst.Every))
	}
	if g.Offline.Every > 0 {
		offlineAt = now.Add(d.around(g.Offline.Every))
	}
	connected, offline, everConnected := false, false, false
	attempt := 0
	endCtx := ctx // becomes the drain deadline once sampling stops
	var endCancel context.CancelFunc
	defer func() {
		if endCancel != nil {
			endCancel()
		}
	}()
	connLost := func() {
		st.lost.Add(1)
		if err := d.client.Err(); err != nil {
			st.countError(err)
			d.f.log.Debug("connection lost", "device", d.id, "err", err)
		}
		connected = false
		attempt++
		nextConnect = time.Now().Add(d.backoff(attempt - 1))
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()

	for {
		now = time.Now()
		gen := d.generating(genCtx)
		if !gen && endCancel == nil {
			endCtx, endCancel = context.WithTimeout(ctx, d.f.cfg.DrainTimeout)
		}
		if g.Offline.Every > 0 && gen {
			if !offline && !now.Before(offlineAt) {
				offline = true
				onlineAt = now.Add(d.around(g.Offline.For))
				st.offline.Add(1)
				if connected {
					d.client.Drop() // no DISCONNECT: the broker publishes the Will
					connected = false
				}
			} else if offline && !now.Before(onlineAt) {
				offline = false
				offlineAt = now.Add(d.around(g.Offline.Every))
				nextConnect = now
			}
		}
		if !gen {
			offline = false
		}
		if g.Rate > 0 {
			for gen && !nextDue.After(now) {
				d.sample(nextDue)
				nextDue = nextDue.Add(d.interval())
				gen = d.generating(genCtx)
			}
			if gen && g.Burst.Every > 0 && !nextBurst.After(now) {
				for i := 0; i < g.Burst.Count && gen; i++ {
					d.sample(now)
					gen = d.generating(genCtx)
				}
				nextBurst = now.Add(d.around(g.Burst.Every))
			}
		} else if gen && d.pending() == 0 {
			d.sample(now)
		}
		// Firmware connects at boot, then stays connected; after that only
		// pending data makes a disconnected device dial again.
		work := d.pending() > 0 || d.client.InFlight() > 0 || (gen && !everConnected)
		if !connected && !offline && work && !now.Before(nextConnect) {
			if _, err := d.client.Connect(endCtx); err != nil {
				if endCtx.Err() != nil {
					break
				}
				st.connFails.Add(1)
				st.countError(err)
				d.f.log.Debug("connect failed", "device", d.id, "err", err)
				attempt++
				nextConnect = time.Now().Add(d.backoff(attempt - 1))
			} else {
				connected = true
				attempt = 0
				st.connects.Add(1)
				if everConnected {
					st.reconnects.Add(1)
				}
				everConnected = true
				if d.commands != "" {
					d.subscribeCommands(endCtx)
				}
			}
		}
		if connected && d.commands != "" {
			d.sendAnswers(endCtx)
		}
		if connected {
			if !d.send(genCtx, endCtx, gen) {
				connLost()
				continue
			}
		}
		if !gen && d.pending() == 0 {
			break
		}
		if !gen && endCancel == nil {
			// Sampling stopped during this iteration (genCtx expired in
			// the rate loop): go round again so the drain deadline starts.
			// Sleeping now would wait on nothing that fires: no next
			// sample, no genCtx, and endCtx not yet bounded.
			continue
		}
		// Sleep until something is due.
		wake := now.Add(time.Hour)
		if g.Rate > 0 && gen {
			wake = nextDue
		}
		if gen && g.Burst.Every > 0 && nextBurst.Before(wake) {
			wake = nextBurst
		}
		if gen && g.Offline.Every > 0 {
			if offline && onlineAt.Before(wake) {
				wake = onlineAt
			} else if !offline && offlineAt.Before(wake) {
				wake = offlineAt
			}
		}
		if !connected && !offline && work && nextConnect.Before(wake) {
			wake = nextConnect
		}
		if connected && g.Rate == 0 && gen {
			continue // fast mode: send returned only because the context moved on
		}
		timer.Reset(time.Until(wake))
		var lost <-chan struct{}
		if connected {
			lost = d.client.Done()
		}
		var genDone <-chan struct{}
		if gen {
			genDone = genCtx.Done()
		}
		select {
		case <-timer.C:
		case <-lost:
			connLost()
		case <-genDone:
		case <-endCtx.Done():
		case <-d.answerKick: // nil without commands
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if endCtx.Err() != nil {
			break
		}
	}
	drainCtx := endCtx
	if endCancel == nil {
		var cancel context.CancelFunc
		drainCtx, cancel = context.WithTimeout(ctx, d.f.cfg.DrainTimeout)
		defer cancel()
	}
	d.drain(drainCtx, connected)
}

// send publishes the backlog (and, in fast mode, fresh readings) until the
// backlog is empty, the context for the current phase ends, or the
// connection fails; it returns false on connection failure.
func (d *device) send(genCtx, endCtx context.Context, gen bool) bool {
	st := &d.f.st
	for n := 0; ; n++ {
		if d.pending() == 0 {
			if !gen || d.g.Rate > 0 {
				break
			}
			if n%64 == 0 && genCtx.Err() != nil {
				break
			}
			if gen = d.generating(genCtx); !gen {
				break
			}
			d.sample(time.Now())
		}
		ctx := endCtx
		if gen {
			ctx = genCtx
		}
		m := d.backlog[d.head]
		if err := d.client.Publish(ctx, m); err != nil {
			if ctx.Err() != nil {
				break
			}
			return false
		}
		d.backlog[d.head] = nil
		d.head++
		st.sent.Add(1)
		st.bytes.Add(int64(len(m.Payload)))
		if m.QoS > 0 {
			st.sentQoS.Add(1)
		} else {
			st.lastDone.Store(time.Now().UnixNano())
		}
		if m.Tag < 0 {
			st.invalid.Add(1)
		}
	}
	if err := d.client.Flush(); err != nil {
		return false
	}
	return true
}

// drain waits for outstanding acks, reconnecting (and so resending) if the
// connection drops, until ctx ends; then it disconnects cleanly.
func (d *device) drain(ctx context.Context, connected bool) {
	st := &d.f.st
	attempt := 0
	for d.client.InFlight() > 0 && ctx.Err() == nil {
		if !connected {
			if _, err := d.client.Connect(ctx); err != nil {
				if ctx.Err() != nil {
					break
				}
				st.connFails.Add(1)
				st.countError(err)
				t := time.NewTimer(d.backoff(attempt))
				attempt++
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
				}
				continue
			}
			connected = true
			st.connects.Add(1)
			st.reconnects.Add(1)
		}
		if err := d.client.WaitIdle(ctx); err != nil && ctx.Err() == nil {
			st.lost.Add(1)
			st.countError(err)
			connected = false
		}
	}
	if connected && d.g.QoS == 0 && d.seq > 0 && ctx.Err() == nil {
		// QoS 0 has no acks: fence with a ping so the run's elapsed time
		// covers what the broker really read, not what sat in socket buffers.
		if err := d.client.Ping(ctx); err == nil {
			st.lastDone.Store(time.Now().UnixNano())
		} else {
			st.countError(err)
		}
	}
	if connected {
		_ = d.client.Disconnect()
	}
	if n := d.pending(); n > 0 {
		st.unsent.Add(int64(n))
		d.f.log.Debug("device stopped with unsent readings", "device", d.id, "unsent", n)
	}
}
