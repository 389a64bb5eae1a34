package service

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/outpost-edge/outpost/core/command"
	"github.com/outpost-edge/outpost/core/provision"
	"github.com/outpost-edge/outpost/core/schema"
	"github.com/outpost-edge/outpost/core/sites"
	"github.com/outpost-edge/outpost/core/wire"
)

// Config is the whole core configuration (configs/core*.yaml).
type Config struct {
	// Prefix is the first subject token(s) of every Outpost subject.
	Prefix string `yaml:"prefix"`
	// NATS says which NATS core uses: an embedded server (URL empty) or an
	// existing cluster.
	NATS NATSConfig `yaml:"nats"`
	// HTTP is the API listener.
	HTTP HTTPConfig `yaml:"http"`
	// Streams is what core provisions.
	Streams provision.Config `yaml:"streams"`
	// Sites bounds the sites view and shapes the status stream that keeps
	// it across core restarts.
	Sites sites.Config `yaml:"sites"`
	// SchemaRegistry bounds the schema registry served on the HTTP
	// listener (KV bucket <PREFIX>-SCHEMAS).
	SchemaRegistry schema.Config `yaml:"schema_registry"`
	// Commands bounds the downlink's command queue (core/command).
	Commands command.Config `yaml:"commands"`
}

// NATSConfig selects and reaches the NATS server.
type NATSConfig struct {
	// URL of an existing NATS cluster (comma-separated seeds); empty runs
	// the embedded server. With a URL core keeps no state outside
	// JetStream.
	URL string `yaml:"url"`
	// Creds is a NATS credentials file (JWT + NKey seed) core connects
	// with.
	Creds string `yaml:"creds"`
	// User and Password are core's own login, for servers with plain users
	// (also the embedded one when its config_file defines users). Prefer
	// Creds in production.
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	// TLSCA is a PEM file of CAs that sign the server certificate.
	TLSCA string `yaml:"tls_ca"`
	// TLSCert and TLSKey are a client certificate for mutual TLS.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// Embedded configures the embedded server (used when URL is empty).
	Embedded EmbeddedConfig `yaml:"embedded"`
}

// EmbeddedConfig configures the single-node NATS server core embeds.
type EmbeddedConfig struct {
	// Listen is the client listener, host:port.
	Listen string `yaml:"listen"`
	// DataDir holds the JetStream store.
	DataDir string `yaml:"data_dir"`
	// SyncInterval is "always" (fsync every write before the PubAck) or a
	// duration between background fsyncs; see SyncIntervalHelp.
	SyncInterval string `yaml:"sync_interval"`
	// ConfigFile is an optional nats-server configuration file, for auth,
	// TLS and limits; Listen, DataDir and SyncInterval override its values.
	ConfigFile string `yaml:"config_file"`
}

// HTTPConfig is the API listener.
type HTTPConfig struct {
	// Listen is host:port for /healthz, /readyz, /metrics and /v1/.
	Listen string `yaml:"listen"`
	// TokenFile, if set, names a file holding a bearer token that /metrics
	// and /v1/ require (Authorization: Bearer <token>); /healthz and
	// /readyz stay open for probes.
	TokenFile string `yaml:"token_file"`
}

// SyncIntervalHelp explains EmbeddedConfig.SyncInterval; -h prints it.
const SyncIntervalHelp = `JetStream fsync policy of the embedded server:
  always    fsync every write before acknowledging it. A record the edge saw
            acknowledged survives a power cut of the core machine. Slowest with
            one record per message; batch mode pays one fsync per batch.
  DURATION  (e.g. 2m, the nats-server default) write to the OS page cache and
            fsync every DURATION. An acknowledged record survives a crash of
            the core process, but a power cut or kernel crash of the core
            machine can lose the last DURATION of acknowledged records; the
            edges have already moved past them.`

// DefaultConfig returns the one-machine setup: embedded NATS on
// 127.0.0.1:4222 with its store in ./core-data and sync_interval always,
// HTTP on 127.0.0.1:8081, auto-provisioned streams with the default shape.
func DefaultConfig() Config {
	return Config{
		Prefix: wire.DefaultPrefix,
		NATS: NATSConfig{Embedded: EmbeddedConfig{
			Listen:       "127.0.0.1:4222",
			DataDir:      "./core-data",
			SyncInterval: "always",
		}},
		HTTP:     HTTPConfig{Listen: "127.0.0.1:8081"},
		Streams:  provision.DefaultConfig(),
		Sites:    sites.DefaultConfig(),
		Commands: command.DefaultConfig(),
		SchemaRegistry: func() schema.Config {
			c := schema.DefaultConfig()
			c.Replicas = 0 // as streams.defaults.replicas
			return c
		}(),
	}
}

// Embedded reports whether c runs the embedded server.
func (c *Config) Embedded() bool { return c.NATS.URL == "" }

// ParseSyncInterval returns (always, interval) for a SyncInterval value.
func ParseSyncInterval(s string) (always bool, interval time.Duration, err error) {
	if s == "always" {
		return true, 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return false, 0, fmt.Errorf("%q is neither \"always\" nor a positive duration like 2m", s)
	}
	return false, d, nil
}

// Validate checks c; errors start with the offending field's YAML path.
func (c *Config) Validate() error {
	if err := wire.ValidatePrefix(c.Prefix); err != nil {
		return fmt.Errorf("prefix: %w", err)
	}
	c.Streams.Prefix = c.Prefix
	c.Sites.Prefix = c.Prefix
	c.SchemaRegistry.Prefix = c.Prefix
	c.Commands = c.Commands.WithDefaults()
	if err := c.Commands.Validate(); err != nil {
		return err
	}
	if c.Embedded() {
		e := c.NATS.Embedded
		if _, _, err := net.SplitHostPort(e.Listen); err != nil {
			return fmt.Errorf("nats.embedded.listen: %q: %w", e.Listen, err)
		}
		if e.DataDir == "" {
			return errors.New("nats.embedded.data_dir: empty; name a directory for the JetStream store")
		}
		if _, _, err := ParseSyncInterval(e.SyncInterval); err != nil {
			return fmt.Errorf("nats.embedded.sync_interval: %w", err)
		}
		if c.NATS.TLSCA != "" || c.NATS.TLSCert != "" || c.NATS.TLSKey != "" {
			return errors.New("nats.tls_ca: tls_* are for nats.url; core reaches its embedded server in-process (put the server's TLS in nats.embedded.config_file)")
		}
		if c.Streams.Defaults.Replicas > 1 {
			return fmt.Errorf("streams.defaults.replicas: %d needs a NATS cluster; the embedded server is a single node (set nats.url, or replicas: 1)", c.Streams.Defaults.Replicas)
		}
		for i, t := range c.Streams.Topics {
			if t.Replicas > 1 {
				return fmt.Errorf("streams.topics[%d].replicas: %d needs a NATS cluster; the embedded server is a single node (set nats.url, or replicas: 1)", i, t.Replicas)
			}
		}
		if c.Sites.Replicas > 1 {
			return fmt.Errorf("sites.replicas: %d needs a NATS cluster; the embedded server is a single node (set nats.url, or replicas: 1)", c.Sites.Replicas)
		}
		if c.SchemaRegistry.Replicas > 1 {
			return fmt.Errorf("schema_registry.replicas: %d needs a NATS cluster; the embedded server is a single node (set nats.url, or replicas: 1)", c.SchemaRegistry.Replicas)
		}
	} else {
		for _, u := range strings.Split(c.NATS.URL, ",") {
			if !strings.Contains(u, "://") {
				return fmt.Errorf("nats.url: %q has no scheme; write nats://host:4222 or tls://host:4222", u)
			}
		}
		if (c.NATS.TLSCert == "") != (c.NATS.TLSKey == "") {
			return errors.New("nats.tls_cert: tls_cert and tls_key go together")
		}
	}
	if c.NATS.Password != "" && c.NATS.User == "" {
		return errors.New("nats.user: empty but nats.password is set")
	}
	if c.NATS.Creds != "" && c.NATS.User != "" {
		return errors.New("nats.user: use either nats.creds or nats.user, not both")
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
		return fmt.Errorf("http.listen: %q: %w", c.HTTP.Listen, err)
	}
	if err := c.Streams.Validate(); err != nil {
		return err
	}
	if err := c.SchemaRegistryConfig().Validate(); err != nil {
		return err
	}
	return c.Sites.Validate()
}

// SchemaRegistryConfig is schema_registry with its replicas defaulted to
// streams.defaults.replicas.
func (c *Config) SchemaRegistryConfig() schema.Config {
	sc := c.SchemaRegistry
	sc.Prefix = c.Prefix
	if sc.Replicas == 0 {
		sc.Replicas = c.Streams.Defaults.Replicas
	}
	if sc.Replicas == 0 {
		sc.Replicas = wire.DefaultTopicConfig().Replicas
	}
	return sc
}

// StatusStream is the shape of the status stream for c: max age
// sites.forget_after (a forgotten node leaves the stream too), one message
// per node up to sites.max_nodes, sites.replicas or else
// streams.defaults.replicas.
func (c *Config) StatusStream() provision.StatusStream {
	r := c.Sites.Replicas
	if r == 0 {
		r = c.Streams.Defaults.Replicas
	}
	if r == 0 {
		r = wire.DefaultTopicConfig().Replicas
	}
	return provision.StatusStream{MaxAge: c.Sites.ForgetAfter, MaxNodes: c.Sites.MaxNodes, Replicas: r}
}

// ParseConfig is DecodeConfig then Validate.
func ParseConfig(r io.Reader) (Config, error) {
	cfg, err := DecodeConfig(r)
	if err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("service: config: %w", err)
	}
	return cfg, nil
}

// DecodeConfig reads YAML over DefaultConfig without validating (callers
// apply flag overrides first). Unknown fields are errors: a misspelt key
// would otherwise silently keep its default.
func DecodeConfig(r io.Reader) (Config, error) {
	cfg := DefaultConfig()
	b, err := io.ReadAll(r)
	if err != nil {
		return cfg, fmt.Errorf("service: read config: %w", err)
	}
	if len(bytes.TrimSpace(b)) > 0 {
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil {
			return cfg, fmt.Errorf("service: config: %w%s", err, fieldsAt(b, err.Error()))
		}
	}
	return cfg, nil
}

var yamlLineRE = regexp.MustCompile(`line (\d+):`)

// fieldsAt names the keys on the lines a yaml error points at, because
// yaml.v3 reports type errors by line only.
func fieldsAt(src []byte, msg string) string {
	lines := strings.Split(string(src), "\n")
	var keys []string
	for _, m := range yamlLineRE.FindAllStringSubmatch(msg, -1) {
		n, err := strconv.Atoi(m[1])
		if err != nil || n < 1 || n > len(lines) {
			continue
		}
		k, _, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(lines[n-1]), "- ")), ":")
		if ok && k != "" {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return ""
	}
	return " (field " + strings.Join(keys, ", ") + ")"
}
