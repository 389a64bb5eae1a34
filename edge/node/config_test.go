package node_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/bridge/auth"
	"github.com/outpost-edge/outpost/edge/node"
)

// Every sample config in configs/ for the edge loads and validates.
func TestConfigFilesLoad(t *testing.T) {
	files, err := filepath.Glob("../../configs/edge*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no configs/edge*.yaml found (%v)", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := node.Load(f, func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// configs/edge.yaml documents the defaults: it must equal DefaultConfig.
func TestEdgeYAMLIsTheDefaults(t *testing.T) {
	cfg, err := node.Load("../../configs/edge.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.MQTT.Listeners) == 0 {
		cfg.MQTT.Listeners = nil
	}
	if len(cfg.Auth.Users) == 0 {
		cfg.Auth.Users = nil
	}
	if len(cfg.Routes.Rules) == 0 {
		cfg.Routes.Rules = nil
	}
	if d := node.DefaultConfig(); !reflect.DeepEqual(cfg, d) {
		t.Fatalf("configs/edge.yaml differs from DefaultConfig:\nfile:     %+v\ndefaults: %+v", cfg, d)
	}
}

func writeConfig(t *testing.T, s string) string {
	p := filepath.Join(t.TempDir(), "edge.yaml")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUnknownFieldIsAnError(t *testing.T) {
	p := writeConfig(t, "log:\n  sink: always\n")
	_, err := node.Load(p, func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "sink") {
		t.Fatalf("Load = %v, want an error naming the unknown field", err)
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	p := writeConfig(t, "log:\n  sync: always\nhttp:\n  token: file\n")
	env := map[string]string{
		"OUTPOST_LOG_SYNC":                "interval",
		"OUTPOST_LOG_SYNC_INTERVAL":       "250ms",
		"OUTPOST_MQTT_LIMITS_MAX_CLIENTS": "42",
		"OUTPOST_HTTP_TOKEN":              "0123",
		"OUTPOST_AUTH_ALLOW_ANONYMOUS":    "false",
	}
	cfg, err := node.Load(p, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log.Sync != "interval" || cfg.Log.SyncInterval != 250*time.Millisecond || cfg.MQTT.Limits.MaxClients != 42 ||
		cfg.HTTP.Token != "0123" || cfg.Auth.AllowAnonymous == nil || *cfg.Auth.AllowAnonymous {
		t.Fatalf("overrides not applied: %+v", cfg)
	}
	_, err = node.Load(p, func(k string) string {
		if k == "OUTPOST_MQTT_LIMITS_MAX_CLIENTS" {
			return "many"
		}
		return ""
	})
	if err == nil || !strings.Contains(err.Error(), "OUTPOST_MQTT_LIMITS_MAX_CLIENTS") {
		t.Fatalf("bad env value: %v", err)
	}
}

func TestValidationNamesTheField(t *testing.T) {
	yes := true
	cases := []struct {
		name string
		mod  func(*node.Config)
		want string
	}{
		{"sync", func(c *node.Config) { c.Log.Sync = "sometimes" }, `config: log.sync: "sometimes" is not one of always, interval, none`},
		{"budget policy", func(c *node.Config) { c.Log.BudgetPolicy = "panic" }, "log.budget_policy"},
		{"public without auth", func(c *node.Config) { c.MQTT.Address = "0.0.0.0:1883" }, "mqtt.address"},
		{"listener type", func(c *node.Config) { c.MQTT.Listeners = []node.ListenerConfig{{Type: "quic", Address: "127.0.0.1:1"}} }, "mqtt.listeners[0].type"},
		{"tls without cert", func(c *node.Config) { c.MQTT.Listeners = []node.ListenerConfig{{Type: "tls", Address: "127.0.0.1:1"}} }, "mqtt.listeners[0].cert_file"},
		{"payload over packet", func(c *node.Config) { c.MQTT.Limits.MaxPayloadBytes = c.MQTT.Limits.MaxPacketBytes + 1 }, "mqtt.limits.max_payload_bytes"},
		{"route", func(c *node.Config) { c.Routes.DefaultPartitions = -2 }, "routes: default_partitions"},
		{"user", func(c *node.Config) { c.Auth.Users = []auth.User{{Username: ""}} }, "auth: users[0].username"},
		{"log level", func(c *node.Config) { c.LogLevel = "loud" }, "log_level"},
		{"keepalive max", func(c *node.Config) { c.MQTT.Limits.KeepaliveMax = 1500 * time.Millisecond }, "mqtt.limits.keepalive_max"},
		{"downlink per device", func(c *node.Config) { c.Downlink.MaxPerDevice = 0 }, "downlink.max_per_device"},
		{"downlink queued", func(c *node.Config) { c.Downlink.MaxQueued = 1 }, "downlink.max_queued"},
		{"downlink response prefix", func(c *node.Config) { c.Downlink.ResponsePrefix = "" }, "downlink.response_prefix"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := node.DefaultConfig()
			c.mod(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate() = %v, want %q", err, c.want)
			}
		})
	}
	cfg := node.DefaultConfig()
	cfg.MQTT.Address = "0.0.0.0:1883"
	cfg.Auth.AllowAnonymous = &yes
	if err := cfg.Validate(); err != nil {
		t.Fatalf("explicit allow_anonymous refused: %v", err)
	}
}
