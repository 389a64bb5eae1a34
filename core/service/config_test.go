package service

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// TestConfigsLoad loads every core and nats sample in configs/.
func TestConfigsLoad(t *testing.T) {
	yamls, _ := filepath.Glob("../../configs/core*.yaml")
	confs, _ := filepath.Glob("../../configs/nats*.conf")
	if len(yamls) < 2 || len(confs) < 2 {
		t.Fatalf("samples missing: %v %v", yamls, confs)
	}
	for _, p := range yamls {
		t.Run(filepath.Base(p), func(t *testing.T) {
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := ParseConfig(f); err != nil {
				t.Fatal(err)
			}
		})
	}
	for _, p := range confs {
		t.Run(filepath.Base(p), func(t *testing.T) {
			if _, err := server.ProcessConfigFile(p); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	cases := map[string]struct {
		yaml  string
		field string
	}{
		"unknown_top":       {"prefx: outpost\n", "prefx"},
		"unknown_nested":    {"streams:\n  defaults:\n    max_agee: 1h\n", "max_agee"},
		"bad_prefix":        {"prefix: a b\n", "prefix:"},
		"bad_listen":        {"nats:\n  embedded:\n    listen: nohostport\n", "nats.embedded.listen:"},
		"bad_sync":          {"nats:\n  embedded:\n    sync_interval: sometimes\n", "nats.embedded.sync_interval:"},
		"zero_sync":         {"nats:\n  embedded:\n    sync_interval: 0s\n", "nats.embedded.sync_interval:"},
		"empty_data":        {"nats:\n  embedded:\n    data_dir: \"\"\n", "nats.embedded.data_dir:"},
		"url_no_scheme":     {"nats:\n  url: host:4222\n", "nats.url:"},
		"cert_without_key":  {"nats:\n  url: nats://h:4222\n  tls_cert: c.pem\n", "nats.tls_cert:"},
		"tls_embedded":      {"nats:\n  tls_ca: ca.pem\n", "nats.tls_ca:"},
		"password_only":     {"nats:\n  password: x\n", "nats.user:"},
		"replicas_embedded": {"streams:\n  topics:\n    - name: t\n      replicas: 3\n", "streams.topics[0].replicas:"},
		"bad_topic":         {"streams:\n  topics:\n    - name: a/b\n", "streams.topics[0].name:"},
		"bad_duration":      {"streams:\n  defaults:\n    max_age: forever\n", "max_age"},
		"bad_http":          {"http:\n  listen: 8081\n", "http.listen:"},
		"sites_max":         {"sites:\n  max_nodes: 0\n", "sites.max_nodes:"},
		"schema_size":       {"schema_registry:\n  max_schema_bytes: 10\n", "schema_registry.max_schema_bytes:"},
		"schema_replicas":   {"schema_registry:\n  replicas: 3\n", "schema_registry.replicas:"},
		"commands_ttl":      {"commands:\n  default_ttl: 1h\n  max_ttl: 30m\n", "commands.max_ttl:"},
		"commands_payload":  {"commands:\n  max_payload_bytes: 9999999\n", "commands.max_payload_bytes:"},
		"commands_site":     {"commands:\n  max_per_device: 50\n  max_per_site: 10\n", "commands.max_per_site:"},
		"schema_unknown":    {"schema_registry:\n  max_schemas: 3\n", "max_schemas"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseConfig(strings.NewReader(c.yaml))
			if err == nil || !strings.Contains(err.Error(), c.field) {
				t.Fatalf("err = %v; want it to name %q", err, c.field)
			}
		})
	}
	cfg, err := ParseConfig(strings.NewReader(""))
	if err != nil {
		t.Fatalf("empty config: %v", err)
	}
	if cfg.NATS.Embedded.SyncInterval != "always" || cfg.HTTP.Listen != "127.0.0.1:8081" || cfg.NATS.Embedded.Listen != "127.0.0.1:4222" {
		t.Fatalf("defaults %+v", cfg)
	}
	cfg, err = ParseConfig(strings.NewReader("nats:\n  url: nats://a:4222,tls://b:4222\nstreams:\n  defaults:\n    replicas: 3\n"))
	if err != nil {
		t.Fatalf("cluster config: %v", err)
	}
	if cfg.Embedded() {
		t.Fatal("url set but Embedded() is true")
	}
}
