package schema

import (
	"errors"
	"fmt"
)

// Config bounds the registry. Zero fields take DefaultConfig's values.
type Config struct {
	// Prefix is the Outpost subject prefix; it names the KV bucket
	// (wire.SchemaBucket). core/service sets it from its own prefix.
	Prefix string `yaml:"-"`
	// MaxSchemaBytes caps one schema's text; larger ones are refused
	// (42209). A schema is one KV value, and NATS refuses messages above its
	// max_payload (1 MiB by default), so the cap stays below that.
	MaxSchemaBytes int `yaml:"max_schema_bytes"`
	// MaxBytes caps the KV bucket; JetStream refuses writes past it (the
	// API answers 50001 and names this setting). The registry's memory
	// follows the bucket's live size (see the package doc), so this also
	// bounds memory.
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxVersions caps the versions one subject keeps (soft-deleted
	// included): a subject is one KV value rewritten on every change.
	MaxVersions int `yaml:"max_versions"`
	// Replicas is the bucket's replication factor; 0 takes
	// streams.defaults.replicas.
	Replicas int `yaml:"replicas"`
}

// DefaultConfig returns 256 KiB schemas, a 256 MiB bucket, 1000 versions
// per subject, 1 replica.
func DefaultConfig() Config {
	return Config{MaxSchemaBytes: 256 << 10, MaxBytes: 256 << 20, MaxVersions: 1000, Replicas: 1}
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxSchemaBytes == 0 {
		c.MaxSchemaBytes = d.MaxSchemaBytes
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = d.MaxBytes
	}
	if c.MaxVersions == 0 {
		c.MaxVersions = d.MaxVersions
	}
	if c.Replicas == 0 {
		c.Replicas = d.Replicas
	}
	return c
}

// Validate checks c after defaults; errors name the YAML path under
// schema_registry.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.Prefix == "" {
		return errors.New("schema_registry: prefix not set (core/service sets it)")
	}
	if c.MaxSchemaBytes < 1<<10 || c.MaxSchemaBytes > 900<<10 {
		return fmt.Errorf("schema_registry.max_schema_bytes: %d is outside 1024..921600 (a schema is one NATS message; the default max_payload is 1 MiB)", c.MaxSchemaBytes)
	}
	if c.MaxBytes < 1<<20 {
		return fmt.Errorf("schema_registry.max_bytes: %d is below 1 MiB", c.MaxBytes)
	}
	if c.MaxVersions < 1 || c.MaxVersions > 10000 {
		return fmt.Errorf("schema_registry.max_versions: %d is outside 1..10000", c.MaxVersions)
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		return fmt.Errorf("schema_registry.replicas: %d is outside 1..5", c.Replicas)
	}
	return nil
}
