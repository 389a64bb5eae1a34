package scenario_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/firmware-sim/fleet"
	"github.com/outpost-edge/outpost/firmware-sim/scenario"
)

// TestConfigsLoad loads every configs/fleet-*.yaml and builds its fleet.
func TestConfigsLoad(t *testing.T) {
	files, err := filepath.Glob("../../configs/fleet-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no configs/fleet-*.yaml found")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := scenario.Load(f)
			if err != nil {
				t.Fatal(err)
			}
			fl, err := fleet.New(cfg, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(fl.Devices()) == 0 {
				t.Fatal("no devices")
			}
		})
	}
}

func TestDefaultsAndOverrides(t *testing.T) {
	cfg, err := scenario.Parse([]byte(`
broker: ws://10.0.0.1:8080/mqtt
duration: 90s
defaults: {qos: 2, keepalive: 5s, mqtt_version: 3}
groups:
  - {name: a, devices: 3}
  - {name: b, devices: 1, qos: 0, device_id: "solo", mqtt_version: 5}
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Broker != "ws://10.0.0.1:8080/mqtt" || cfg.Duration != 90*time.Second || len(cfg.Groups) != 2 {
		t.Fatalf("config %+v", cfg)
	}
	a, b := cfg.Groups[0], cfg.Groups[1]
	if a.QoS != 2 || a.KeepAlive != 5*time.Second || a.MQTTVersion != "3" || a.Topic != fleet.DefaultGroup().Topic {
		t.Fatalf("group a %+v", a)
	}
	if b.QoS != 0 || b.KeepAlive != 5*time.Second || b.MQTTVersion != "5" {
		t.Fatalf("group b %+v", b)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestErrorsNameTheField(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"unknown key":  {"groups: [{name: a, devcies: 3}]", "devcies"},
		"bad duration": {"duration: soon\ngroups: [{name: a}]", "soon"},
		"no groups":    {"broker: tcp://x:1", "groups"},
		"bad qos":      {"duration: 1s\ngroups: [{name: a, qos: 3}]", "qos"},
		"bad version":  {"duration: 1s\ngroups: [{name: a, mqtt_version: 4}]", "mqtt_version"},
		"no end":       {"groups: [{name: a}]", "duration"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := scenario.Parse([]byte(tc.yaml))
			if err == nil {
				err = cfg.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
