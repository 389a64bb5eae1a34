package node

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/outpost-edge/outpost/bridge/auth"
	"github.com/outpost-edge/outpost/bridge/route"
	"github.com/outpost-edge/outpost/bridge/schemacheck"
	"github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/internal/netaddr"
)

// EnvPrefix prefixes environment overrides: OUTPOST_ followed by the
// field's YAML path in upper case, joined by "_" (OUTPOST_LOG_SYNC,
// OUTPOST_MQTT_LIMITS_MAX_CLIENTS, OUTPOST_HTTP_TOKEN). Lists cannot be
// set from the environment.
const EnvPrefix = "OUTPOST_"

// Config is the edge node's configuration file (configs/edge*.yaml).
// Every field has a default; an empty file is a valid config.
type Config struct {
	// DataDir holds the log (DataDir/log) and metadata (DataDir/meta.db).
	DataDir string `yaml:"data_dir"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// ShutdownTimeout bounds the graceful part of a shutdown (waiting for
	// in-flight publishes to be acknowledged).
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// MQTT configures the broker.
	MQTT MQTTConfig `yaml:"mqtt"`
	// HTTP configures the API.
	HTTP HTTPConfig `yaml:"http"`
	// Log configures the on-disk log.
	Log LogConfig `yaml:"log"`
	// Routes map MQTT topics to log topics (bridge/route).
	Routes route.Config `yaml:"routes"`
	// Auth configures MQTT authentication and ACLs (bridge/auth).
	Auth AuthConfig `yaml:"auth"`
	// Upstream configures store-and-forward to the central cluster.
	Upstream UpstreamConfig `yaml:"upstream"`
	// OnUnknownSchema is what happens to a payload routed to a topic whose
	// schema (routes' schema_subject) the node does not know: refuse (the
	// default: refused or dead-lettered like a violation) or accept
	// (appended unchecked).
	OnUnknownSchema string `yaml:"on_unknown_schema"`
	// Replication configures site replication between nodes (sync/peer).
	Replication ReplicationConfig `yaml:"replication"`
	// Downlink configures commands from the centre to devices.
	Downlink DownlinkConfig `yaml:"downlink"`
}

// MQTTConfig configures the broker.
type MQTTConfig struct {
	// Address is a plain TCP listener, used when Listeners is empty (and
	// set by the -mqtt flag).
	Address string `yaml:"address"`
	// Listeners are the MQTT listeners; empty means one TCP listener on
	// Address.
	Listeners []ListenerConfig `yaml:"listeners"`
	// AckTimeout bounds how long a publish may wait for durability before
	// its client is disconnected (further capped below the keepalive).
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// Limits bound what clients may cost.
	Limits LimitsConfig `yaml:"limits"`
}

// ListenerConfig is one MQTT listener.
type ListenerConfig struct {
	// Type is tcp, tls, ws (WebSocket) or wss (WebSocket over TLS).
	Type string `yaml:"type"`
	// Address is host:port.
	Address string `yaml:"address"`
	// CertFile is the PEM server certificate chain (tls, wss).
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of CertFile.
	KeyFile string `yaml:"key_file"`
	// ClientCAFile is a PEM bundle of CAs that sign client certificates;
	// set it to log devices in by certificate (auth.users[].username = CN).
	ClientCAFile string `yaml:"client_ca_file"`
	// ClientAuth is "require" (every client presents a valid certificate)
	// or "optional" (verified if presented; others log in with a
	// password). Default: require when ClientCAFile is set.
	ClientAuth string `yaml:"client_auth"`
}

// LimitsConfig bounds what clients may cost, so that a Pi with 512 MB
// survives hostile or buggy clients. Measured: an idle connection costs
// about 29 KiB of RSS (1,000 idle connections: +28 MB), a disconnected
// persistent session a few KiB. Worst case, a connection reading a maximal
// packet holds MaxPacketBytes more, and each session's unacknowledged
// publishes (at most MaxInflight) hold their payloads.
type LimitsConfig struct {
	// MaxPacketBytes is the largest MQTT packet accepted; mochi refuses a
	// larger announced length before allocating it.
	MaxPacketBytes int `yaml:"max_packet_bytes"`
	// MaxPayloadBytes is the largest PUBLISH payload ingested; larger ones
	// get DISCONNECT 0x95 (MQTT 5) or a disconnect (3.1.1).
	MaxPayloadBytes int `yaml:"max_payload_bytes"`
	// MaxClients caps open connections, including those not yet past
	// CONNECT.
	MaxClients int `yaml:"max_clients"`
	// MaxSessions caps the sessions kept, connected or not; at the cap the
	// longest-disconnected session is dropped for a new one.
	MaxSessions int `yaml:"max_sessions"`
	// SessionExpiryMax caps how long a disconnected persistent session is
	// kept (MQTT 5 session expiry; 3.1.1 clean_session=false sessions).
	SessionExpiryMax time.Duration `yaml:"session_expiry_max"`
	// MaxInflight caps unacknowledged QoS 1/2 messages per client in each
	// direction (MQTT 5 Receive Maximum).
	MaxInflight int `yaml:"max_inflight"`
	// MaxPendingWrites caps packets queued for a slow subscriber; more are
	// dropped (and counted by mochi).
	MaxPendingWrites int `yaml:"max_pending_writes"`
	// TopicAliasMax caps MQTT 5 topic aliases per client (each holds a
	// topic string).
	TopicAliasMax int `yaml:"topic_alias_max"`
	// ConnectRate is new connections per second allowed (token bucket).
	ConnectRate float64 `yaml:"connect_rate"`
	// ConnectBurst is the connection token bucket's depth.
	ConnectBurst int `yaml:"connect_burst"`
	// ConnectTimeout is how long a new connection has to complete CONNECT.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// KeepaliveMax caps the keepalive a client may ask for (as mosquitto's
	// max_keepalive); 0 (the default) is no cap. MQTT 5 clients asking for
	// more, or for none, are told this value in CONNACK (Server Keep
	// Alive); MQTT 3.1.1 clients cannot be told and are refused (CONNACK
	// 0x02) with a log line.
	KeepaliveMax time.Duration `yaml:"keepalive_max"`
}

// HTTPConfig configures the HTTP API.
type HTTPConfig struct {
	// Address is host:port of the API.
	Address string `yaml:"address"`
	// Token, if set, is required as a bearer token on every route but
	// /healthz.
	Token string `yaml:"token"`
}

// LogConfig configures the log (edge/log).
type LogConfig struct {
	// Sync is always (ack means on stable storage), interval or none.
	Sync string `yaml:"sync"`
	// SyncInterval is the fdatasync period under sync: interval.
	SyncInterval time.Duration `yaml:"sync_interval"`
	// CommitDelayMax caps how long a group commit waits for more records
	// under concurrent load (a pipelining client's next window, other
	// clients); it never delays a lone publisher. 0 disables it.
	CommitDelayMax time.Duration `yaml:"commit_delay_max"`
	// Journal writes every partition's records to one node-wide
	// write-ahead journal whose single fdatasync per commit window makes
	// them all durable (sync: always only); off, each partition
	// fdatasyncs its own segment for every commit.
	Journal bool `yaml:"journal"`
	// CommitWindow is the longest a record waits in the journal for
	// others to share its fdatasync: the acknowledgement latency traded
	// for CPU and page writes at field-site rates. 0 commits at once.
	CommitWindow time.Duration `yaml:"commit_window"`
	// JournalFileBytes is the size of each of the two journal files; a
	// full one is checkpointed (its segments fdatasynced) and reused.
	JournalFileBytes int64 `yaml:"journal_file_bytes"`
	// SegmentMaxBytes rolls segments at this size.
	SegmentMaxBytes int64 `yaml:"segment_max_bytes"`
	// DiskBudgetBytes caps the log's bytes on disk; 0 means no budget.
	DiskBudgetBytes int64 `yaml:"disk_budget_bytes"`
	// BudgetPolicy is refuse (devices get 0x97 and keep their data) or
	// delete-oldest.
	BudgetPolicy string `yaml:"budget_policy"`
	// RetentionBytes caps each partition's bytes; 0 means unlimited.
	RetentionBytes int64 `yaml:"retention_bytes"`
	// RetentionAge deletes segments older than this; 0 means unlimited.
	RetentionAge time.Duration `yaml:"retention_age"`
}

// AuthConfig configures MQTT authentication.
type AuthConfig struct {
	// AllowAnonymous: unset means anonymous clients are accepted only on
	// loopback listeners; true accepts them everywhere (logged loudly);
	// false nowhere.
	AllowAnonymous *bool `yaml:"allow_anonymous"`
	// Users are the accounts (bridge/auth.User).
	Users []auth.User `yaml:"users"`
}

// DefaultConfig returns the defaults as a fresh value.
func DefaultConfig() Config {
	return Config{
		Upstream:        defaultUpstream(),
		Replication:     defaultReplication(),
		Downlink:        defaultDownlink(),
		DataDir:         "./data",
		LogLevel:        "info",
		ShutdownTimeout: 10 * time.Second,
		MQTT: MQTTConfig{
			Address:    "127.0.0.1:1883",
			AckTimeout: 20 * time.Second,
			Limits: LimitsConfig{
				MaxPacketBytes:   320 << 10,
				MaxPayloadBytes:  256 << 10,
				MaxClients:       1000,
				MaxSessions:      10000,
				SessionExpiryMax: time.Hour,
				MaxInflight:      256,
				MaxPendingWrites: 128,
				TopicAliasMax:    32,
				ConnectRate:      200,
				ConnectBurst:     500,
				ConnectTimeout:   10 * time.Second,
			},
		},
		HTTP: HTTPConfig{Address: "127.0.0.1:8080"},
		Log: LogConfig{
			Sync:             "always",
			SyncInterval:     100 * time.Millisecond,
			CommitDelayMax:   time.Millisecond,
			Journal:          true,
			CommitWindow:     10 * time.Millisecond,
			JournalFileBytes: 16 << 20,
			SegmentMaxBytes:  64 << 20,
			BudgetPolicy:     "refuse",
		},
		Routes:          route.DefaultConfig(),
		OnUnknownSchema: string(schemacheck.PolicyRefuse),
	}
}

// Load reads a YAML config file over the defaults (path "" means none),
// then applies environment overrides from getenv (nil means os.Getenv).
// Unknown fields are errors. The result is not yet validated: flags may
// still change it.
func Load(path string, getenv func(string) string) (Config, error) {
	cfg := DefaultConfig()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
		if err := decodeStrict(b, &cfg); err != nil {
			return cfg, fmt.Errorf("config: %s: %w", path, err)
		}
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	if err := applyEnv(reflect.ValueOf(&cfg).Elem(), EnvPrefix, getenv); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func decodeStrict(b []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

var durationType = reflect.TypeOf(time.Duration(0))

// applyEnv sets scalar fields from OUTPOST_<PATH> variables, parsing values
// as YAML so that they read exactly like the file ("5s", "true", "1000").
func applyEnv(v reflect.Value, prefix string, getenv func(string) string) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		name := prefix + strings.ToUpper(tag)
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct && f.Type != durationType {
			if err := applyEnv(fv, name+"_", getenv); err != nil {
				return err
			}
			continue
		}
		if fv.Kind() == reflect.Slice || fv.Kind() == reflect.Map {
			continue
		}
		s := getenv(name)
		if s == "" {
			continue
		}
		if err := yaml.Unmarshal([]byte(s), fv.Addr().Interface()); err != nil {
			return fmt.Errorf("config: environment %s=%q: %v", name, s, err)
		}
		if fv.Kind() == reflect.String {
			fv.SetString(s) // keep strings verbatim ("0123", "yes")
		}
	}
	return nil
}

// listeners returns the effective listener list.
func (c *Config) listeners() []ListenerConfig {
	if len(c.MQTT.Listeners) > 0 {
		return c.MQTT.Listeners
	}
	return []ListenerConfig{{Type: "tcp", Address: c.MQTT.Address}}
}

// Validate checks the config; errors name the field as written in YAML.
func (c Config) Validate() error {
	bad := func(field string, format string, args ...any) error {
		return fmt.Errorf("config: %s: %s", field, fmt.Sprintf(format, args...))
	}
	if err := c.Downlink.validate(); err != nil {
		return err
	}
	if err := c.Upstream.validate(); err != nil {
		return err
	}
	if err := c.Replication.validate(); err != nil {
		return err
	}
	if c.DataDir == "" {
		return bad("data_dir", "empty; set a directory for the log and metadata")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return bad("log_level", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	if c.ShutdownTimeout < 0 {
		return bad("shutdown_timeout", "%v is negative", c.ShutdownTimeout)
	}
	if _, err := log.ParseSyncPolicy(c.Log.Sync); err != nil || c.Log.Sync == "" {
		return bad("log.sync", "%q is not one of always, interval, none", c.Log.Sync)
	}
	if c.Replication.Enabled() && c.Replication.ShareUplinkBandwidth && (c.Upstream.URL == "" || c.Upstream.BandwidthBytesPerSec == 0) {
		return bad("replication.share_uplink_bandwidth", "set, but there is no uplink budget to share: set upstream.url and upstream.bandwidth_bytes_per_sec")
	}
	if c.Replication.Enabled() && c.Log.Sync != "always" {
		// Followers copy what readers see. Under always that is only what
		// is on this node's disk, so a power cut can never leave a replica
		// holding records its owner lost: the diverged replica that would
		// need truncating, and the lost tail the owner would have to take
		// back from its replicas before publishing again, cannot arise.
		return bad("log.sync", "%q with replication: a replicating node needs log.sync: always (a power cut could otherwise leave the peers with records this node lost; with the journal, always costs little)", c.Log.Sync)
	}
	if c.Log.CommitDelayMax < 0 || c.Log.CommitDelayMax > time.Second {
		return bad("log.commit_delay_max", "%v is not between 0 (off) and 1s", c.Log.CommitDelayMax)
	}
	if c.Log.CommitWindow < 0 || c.Log.CommitWindow > time.Second {
		return bad("log.commit_window", "%v is not between 0 (commit at once) and 1s", c.Log.CommitWindow)
	}
	if c.Log.Journal && c.Log.JournalFileBytes < 1<<20 {
		return bad("log.journal_file_bytes", "%d is below 1 MiB (1048576)", c.Log.JournalFileBytes)
	}
	if _, err := log.ParseBudgetPolicy(c.Log.BudgetPolicy); err != nil || c.Log.BudgetPolicy == "" {
		return bad("log.budget_policy", "%q is not one of refuse, delete-oldest", c.Log.BudgetPolicy)
	}
	if err := c.logConfig().Validate(); err != nil {
		return bad("log", "%v", err)
	}
	if c.Log.RetentionBytes < 0 {
		return bad("log.retention_bytes", "%d is negative", c.Log.RetentionBytes)
	}
	if c.Log.RetentionAge < 0 {
		return bad("log.retention_age", "%v is negative", c.Log.RetentionAge)
	}
	l := c.MQTT.Limits
	switch {
	case l.MaxPacketBytes < 1<<10 || l.MaxPacketBytes > 256<<20:
		return bad("mqtt.limits.max_packet_bytes", "%d is not between 1024 and 268435456", l.MaxPacketBytes)
	case l.MaxPayloadBytes < 1 || l.MaxPayloadBytes > l.MaxPacketBytes:
		return bad("mqtt.limits.max_payload_bytes", "%d is not between 1 and max_packet_bytes (%d)", l.MaxPayloadBytes, l.MaxPacketBytes)
	case l.MaxClients < 1:
		return bad("mqtt.limits.max_clients", "%d is below 1", l.MaxClients)
	case l.MaxSessions < l.MaxClients:
		return bad("mqtt.limits.max_sessions", "%d is below max_clients (%d)", l.MaxSessions, l.MaxClients)
	case l.SessionExpiryMax < 0 || l.SessionExpiryMax > 136*365*24*time.Hour:
		return bad("mqtt.limits.session_expiry_max", "%v is out of range", l.SessionExpiryMax)
	case l.MaxInflight < 1 || l.MaxInflight > 65535:
		return bad("mqtt.limits.max_inflight", "%d is not between 1 and 65535", l.MaxInflight)
	case l.MaxPendingWrites < 1:
		return bad("mqtt.limits.max_pending_writes", "%d is below 1", l.MaxPendingWrites)
	case l.TopicAliasMax < 0 || l.TopicAliasMax > 65535:
		return bad("mqtt.limits.topic_alias_max", "%d is not between 0 and 65535", l.TopicAliasMax)
	case l.ConnectRate < 0:
		return bad("mqtt.limits.connect_rate", "%v is negative", l.ConnectRate)
	case l.ConnectRate > 0 && l.ConnectBurst < 1:
		return bad("mqtt.limits.connect_burst", "%d is below 1", l.ConnectBurst)
	case l.ConnectTimeout <= 0:
		return bad("mqtt.limits.connect_timeout", "%v is not positive", l.ConnectTimeout)
	case l.KeepaliveMax < 0 || l.KeepaliveMax > 65535*time.Second || l.KeepaliveMax%time.Second != 0:
		return bad("mqtt.limits.keepalive_max", "%v is not 0 (off) or a whole number of seconds up to 65535s", l.KeepaliveMax)
	case c.MQTT.AckTimeout < 10*time.Millisecond:
		return bad("mqtt.ack_timeout", "%v is below 10ms", c.MQTT.AckTimeout)
	}
	if lc := c.logConfig(); l.MaxPayloadBytes+(16<<10) > lc.MaxBatchBytes {
		return bad("mqtt.limits.max_payload_bytes", "%d does not fit the log's batch limit (%d, a quarter of log.segment_max_bytes, at most 4 MiB) with room for headers", l.MaxPayloadBytes, lc.MaxBatchBytes)
	}
	hasUsers := len(c.Auth.Users) > 0
	for i, lc := range c.listeners() {
		field := fmt.Sprintf("mqtt.listeners[%d]", i)
		addrField := field + ".address"
		if len(c.MQTT.Listeners) == 0 {
			field, addrField = "mqtt", "mqtt.address"
		}
		switch lc.Type {
		case "tcp", "ws":
			if lc.CertFile != "" || lc.ClientCAFile != "" {
				return bad(field+".type", "%q does not use certificates; use tls or wss", lc.Type)
			}
		case "tls", "wss":
			if lc.CertFile == "" || lc.KeyFile == "" {
				return bad(field+".cert_file", "type %s needs cert_file and key_file", lc.Type)
			}
		default:
			return bad(field+".type", "%q is not one of tcp, tls, ws, wss", lc.Type)
		}
		switch lc.ClientAuth {
		case "", "require", "optional":
		default:
			return bad(field+".client_auth", "%q is not one of require, optional", lc.ClientAuth)
		}
		if lc.ClientAuth != "" && lc.ClientCAFile == "" {
			return bad(field+".client_ca_file", "empty, but client_auth is %q", lc.ClientAuth)
		}
		if _, _, err := net.SplitHostPort(lc.Address); err != nil {
			return bad(addrField, "%q is not host:port", lc.Address)
		}
		if !netaddr.Loopback(lc.Address) && c.Auth.AllowAnonymous == nil && !hasUsers && lc.ClientCAFile == "" {
			return bad(addrField, "%q is not a loopback address, and anonymous clients are accepted only on loopback: configure auth.users (or client certificates) or set auth.allow_anonymous: true", lc.Address)
		}
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Address); err != nil {
		return bad("http.address", "%q is not host:port", c.HTTP.Address)
	}
	if err := c.Routes.Validate(); err != nil {
		return bad("routes", "%v", strings.TrimPrefix(err.Error(), "route: "))
	}
	if _, err := schemacheck.ParsePolicy(c.OnUnknownSchema); err != nil || c.OnUnknownSchema == "" {
		return bad("on_unknown_schema", "%q is not one of refuse, accept", c.OnUnknownSchema)
	}
	if err := (auth.Config{Users: c.Auth.Users}).Validate(); err != nil {
		return bad("auth", "%v", strings.TrimPrefix(err.Error(), "auth: "))
	}
	return nil
}

func (c Config) logConfig() log.Config {
	lc := log.DefaultConfig()
	lc.Sync, _ = log.ParseSyncPolicy(c.Log.Sync)
	lc.BudgetPolicy, _ = log.ParseBudgetPolicy(c.Log.BudgetPolicy)
	if c.Log.SyncInterval > 0 {
		lc.SyncInterval = c.Log.SyncInterval
	}
	lc.CommitDelayMax = c.Log.CommitDelayMax
	if lc.CommitDelayMax == 0 {
		lc.CommitDelayMax = -1 // 0 in the node config means off
	}
	if c.Log.SegmentMaxBytes > 0 {
		lc.SegmentMaxBytes = c.Log.SegmentMaxBytes
		lc.MaxBatchBytes = int(min(int64(lc.MaxBatchBytes), lc.SegmentMaxBytes/4))
	}
	lc.Journal = c.Log.Journal && lc.Sync == log.SyncAlways // interval and none have nothing to amortize
	lc.CommitWindow = c.Log.CommitWindow
	if lc.CommitWindow == 0 {
		lc.CommitWindow = -1 // 0 in the node config means at once
	}
	lc.JournalFileBytes = c.Log.JournalFileBytes
	lc.DiskBudgetBytes = c.Log.DiskBudgetBytes
	return lc
}
