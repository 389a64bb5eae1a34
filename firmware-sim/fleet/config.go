package fleet

import (
	"fmt"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/firmware-sim/payload"
)

// Config is a whole simulated fleet.
type Config struct {
	// Broker is the broker URL (tcp://, ssl://, ws://, wss://).
	Broker string `yaml:"broker"`
	// Site fills {site} in templates.
	Site string `yaml:"site"`
	// Duration stops sampling after this long; 0 runs until every device
	// reached its Count (or forever if a group has no Count).
	Duration time.Duration `yaml:"duration"`
	// DrainTimeout is how long devices wait for outstanding acks once
	// sampling has stopped.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// RampUp spreads device start times evenly over this period.
	RampUp time.Duration `yaml:"ramp_up"`
	// Seed makes device behaviour reproducible; 0 picks one at random.
	Seed uint64 `yaml:"seed"`
	// Groups are the device groups; at least one.
	Groups []Group `yaml:"groups"`
}

// Group is a set of identical devices.
type Group struct {
	// Name fills {group} in templates.
	Name string `yaml:"name"`
	// Devices is how many devices the group has.
	Devices int `yaml:"devices"`
	// DeviceID is the device id template; {site}, {group} and {n} (the
	// device's index in the group, zero-padded to 5 digits) are expanded.
	DeviceID string `yaml:"device_id"`
	// ClientID is the MQTT client id template; {device} is also expanded.
	ClientID string `yaml:"client_id"`
	// Topic is the telemetry topic template.
	Topic string `yaml:"topic"`
	// Commands, if set, is a topic filter template (e.g. cmd/{client}/#)
	// devices subscribe to at QoS 1 after every connect; they answer each
	// command that carries an MQTT 5 response topic with
	// {"ok":true,...} at QoS 0 (Outpost's downlink makes that the
	// command's result).
	Commands string `yaml:"commands"`
	// MQTTVersion is "3" (3.1.1), "5", or "mixed" (even devices 5, odd 3).
	MQTTVersion string `yaml:"mqtt_version"`
	// Username is sent when non-empty; templates are expanded.
	Username string `yaml:"username"`
	// Password is sent when non-empty.
	Password string `yaml:"password"`
	// QoS is 0, 1 or 2.
	QoS int `yaml:"qos"`
	// Retain sets the retain flag on telemetry.
	Retain bool `yaml:"retain"`
	// InFlight is the per-connection window of unacknowledged QoS 1/2
	// messages (pipelining, like a gateway); 1 means stop-and-wait.
	InFlight int `yaml:"inflight"`
	// Count is readings per device; 0 means no limit (then Duration ends the run).
	Count int64 `yaml:"count"`
	// Rate is readings per device per second; 0 sends as fast as the
	// window allows.
	Rate float64 `yaml:"rate"`
	// Jitter varies each sampling interval by up to ±Jitter of itself (0..1).
	Jitter float64 `yaml:"jitter"`
	// Burst adds extra back-to-back readings periodically (rate mode only).
	Burst Burst `yaml:"burst"`
	// Payload is the reading encoding.
	Payload PayloadConfig `yaml:"payload"`
	// CleanStart discards the session at every connect; false keeps a
	// persistent session so in-flight messages survive reconnects.
	CleanStart bool `yaml:"clean_start"`
	// SessionExpiry is the MQTT 5 session expiry for persistent sessions.
	SessionExpiry time.Duration `yaml:"session_expiry"`
	// KeepAlive is the MQTT keep alive.
	KeepAlive time.Duration `yaml:"keepalive"`
	// Will, if Topic is set, is registered at connect and published by the
	// broker when the device drops off without DISCONNECT.
	Will Will `yaml:"will"`
	// ClockSkew is the largest offset of a device clock from true time;
	// each device draws a fixed offset in [-ClockSkew, +ClockSkew].
	ClockSkew time.Duration `yaml:"clock_skew"`
	// ClockDriftPPM makes device clocks run fast or slow by up to this
	// many parts per million.
	ClockDriftPPM float64 `yaml:"clock_drift_ppm"`
	// Offline schedules periods without network.
	Offline Offline `yaml:"offline"`
	// Backlog is how many readings a device buffers while it cannot send;
	// when full the oldest is dropped.
	Backlog int `yaml:"backlog"`
	// Reconnect is the reconnect backoff.
	Reconnect Backoff `yaml:"reconnect"`
}

// Burst is a periodic burst of readings.
type Burst struct {
	// Every is the mean time between bursts; 0 disables bursts.
	Every time.Duration `yaml:"every"`
	// Count is the number of extra readings per burst.
	Count int `yaml:"count"`
}

// PayloadConfig selects and shapes payloads.
type PayloadConfig struct {
	// Format is json, msgpack or raw.
	Format string `yaml:"format"`
	// Size pads each payload to this many bytes (0: natural size).
	Size int `yaml:"size"`
	// MalformedShare is the share of extra payloads that are not a reading
	// at all (0..1); they consume no sequence number.
	MalformedShare float64 `yaml:"malformed_share"`
	// SchemaViolationShare is the share of extra payloads that parse but
	// break the schema (0..1); they consume no sequence number.
	SchemaViolationShare float64 `yaml:"schema_violation_share"`
}

// Will is a Last Will.
type Will struct {
	// Topic is the will topic template; empty means no will.
	Topic string `yaml:"topic"`
	// Payload is the will message; templates are expanded.
	Payload string `yaml:"payload"`
	// QoS is the will QoS.
	QoS int `yaml:"qos"`
	// Retain sets the will's retain flag.
	Retain bool `yaml:"retain"`
}

// Offline describes periods when a device has no network: it drops its
// connection without DISCONNECT (so its Will fires), keeps sampling into
// its backlog, and reconnects when the period ends.
type Offline struct {
	// Every is the mean time between offline periods; 0 disables them.
	Every time.Duration `yaml:"every"`
	// For is the mean length of an offline period.
	For time.Duration `yaml:"for"`
}

// Backoff is exponential backoff with jitter: attempt k waits a random
// time in [d/2, d], d = min(Max, Min·2^k), so a thousand devices that lost
// the broker together do not return together.
type Backoff struct {
	// Min is the first delay.
	Min time.Duration `yaml:"min"`
	// Max caps the delay.
	Max time.Duration `yaml:"max"`
}

// DefaultConfig returns a single group of 10 devices sending one JSON
// reading per second at QoS 1 to a local broker.
func DefaultConfig() Config {
	return Config{
		Broker:       "tcp://127.0.0.1:1883",
		Site:         "site1",
		DrainTimeout: 10 * time.Second,
		Groups:       []Group{DefaultGroup()},
	}
}

// DefaultGroup returns the defaults every group starts from.
func DefaultGroup() Group {
	return Group{
		Name:          "sensor",
		Devices:       10,
		DeviceID:      "{group}-{n}",
		ClientID:      "{site}-{device}",
		Topic:         "sensors/{site}/{device}/telemetry",
		MQTTVersion:   "5",
		QoS:           1,
		InFlight:      1,
		Rate:          1,
		Payload:       PayloadConfig{Format: "json"},
		SessionExpiry: time.Hour,
		KeepAlive:     30 * time.Second,
		Backlog:       10000,
		Reconnect:     Backoff{Min: 250 * time.Millisecond, Max: 30 * time.Second},
	}
}

// Validate reports the first invalid field by name.
func (c *Config) Validate() error {
	if c.Broker == "" {
		return fmt.Errorf("fleet: broker: empty (want e.g. tcp://127.0.0.1:1883)")
	}
	for _, b := range strings.Split(c.Broker, ",") { // a failover list: URL1,URL2
		if !strings.Contains(b, "://") {
			return fmt.Errorf("fleet: broker: %q has no scheme (want tcp://, ssl://, ws:// or wss://; several separated by commas)", strings.TrimSpace(b))
		}
	}
	if c.Duration < 0 || c.DrainTimeout < 0 || c.RampUp < 0 {
		return fmt.Errorf("fleet: duration, drain_timeout and ramp_up must not be negative")
	}
	if len(c.Groups) == 0 {
		return fmt.Errorf("fleet: groups: at least one group is needed")
	}
	unbounded := false
	for i := range c.Groups {
		g := &c.Groups[i]
		if err := g.validate(); err != nil {
			return fmt.Errorf("fleet: groups[%d] (%s): %w", i, g.Name, err)
		}
		if g.Count == 0 {
			unbounded = true
		}
	}
	if unbounded && c.Duration == 0 {
		return fmt.Errorf("fleet: duration: a group has no count, so a duration is needed to end the run")
	}
	return nil
}

func (g *Group) validate() error {
	switch {
	case g.Devices < 1:
		return fmt.Errorf("devices: %d, want at least 1", g.Devices)
	case g.QoS < 0 || g.QoS > 2:
		return fmt.Errorf("qos: %d, want 0, 1 or 2", g.QoS)
	case g.InFlight < 1 || g.InFlight > 65535:
		return fmt.Errorf("inflight: %d, want 1..65535", g.InFlight)
	case g.Count < 0:
		return fmt.Errorf("count: %d, want >= 0", g.Count)
	case g.Rate < 0:
		return fmt.Errorf("rate: %v, want >= 0 (0 = as fast as possible)", g.Rate)
	case g.Jitter < 0 || g.Jitter > 1:
		return fmt.Errorf("jitter: %v, want 0..1", g.Jitter)
	case g.Payload.Size < 0 || g.Payload.Size > 1<<20:
		return fmt.Errorf("payload.size: %d, want 0..1048576", g.Payload.Size)
	case g.Payload.MalformedShare < 0 || g.Payload.SchemaViolationShare < 0 ||
		g.Payload.MalformedShare+g.Payload.SchemaViolationShare >= 1:
		return fmt.Errorf("payload: malformed_share + schema_violation_share must be in [0, 1)")
	case g.Will.QoS < 0 || g.Will.QoS > 2:
		return fmt.Errorf("will.qos: %d, want 0, 1 or 2", g.Will.QoS)
	case g.Backlog < 1:
		return fmt.Errorf("backlog: %d, want at least 1", g.Backlog)
	case g.Reconnect.Min <= 0 || g.Reconnect.Max < g.Reconnect.Min:
		return fmt.Errorf("reconnect: min %v, max %v: want 0 < min <= max", g.Reconnect.Min, g.Reconnect.Max)
	case g.Offline.Every < 0 || g.Offline.For < 0 || (g.Offline.Every > 0 && g.Offline.For == 0):
		return fmt.Errorf("offline: every %v, for %v: want both positive, or every 0", g.Offline.Every, g.Offline.For)
	case g.Burst.Count < 0 || g.Burst.Every < 0:
		return fmt.Errorf("burst: every and count must not be negative")
	case g.ClockSkew < 0 || g.ClockDriftPPM < 0:
		return fmt.Errorf("clock_skew and clock_drift_ppm must not be negative")
	case g.KeepAlive < 0 || g.SessionExpiry < 0:
		return fmt.Errorf("keepalive and session_expiry must not be negative")
	}
	switch g.MQTTVersion {
	case "3", "5", "mixed":
	default:
		return fmt.Errorf("mqtt_version: %q, want 3, 5 or mixed", g.MQTTVersion)
	}
	if _, err := payload.ParseFormat(g.Payload.Format); err != nil {
		return fmt.Errorf("payload.format: %w", err)
	}
	if g.Topic == "" || strings.ContainsAny(g.Topic, "+#") {
		return fmt.Errorf("topic: %q, want a topic name without wildcards", g.Topic)
	}
	if g.DeviceID == "" || !strings.Contains(g.DeviceID, "{n}") && g.Devices > 1 {
		return fmt.Errorf("device_id: %q must contain {n} when a group has several devices", g.DeviceID)
	}
	return nil
}

// expand fills a template.
func expand(tmpl string, vars map[string]string) string {
	if !strings.Contains(tmpl, "{") {
		return tmpl
	}
	pairs := make([]string, 0, 2*len(vars))
	for k, v := range vars {
		pairs = append(pairs, "{"+k+"}", v)
	}
	return strings.NewReplacer(pairs...).Replace(tmpl)
}
