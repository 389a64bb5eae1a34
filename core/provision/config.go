package provision

import (
	"fmt"

	"github.com/outpost-edge/outpost/core/wire"
)

// Topic is one configured topic.
type Topic struct {
	// Name is the log topic name ([A-Za-z0-9._-]).
	Name string `yaml:"name"`
	// TopicConfig overrides Config.Defaults for this topic.
	wire.TopicConfig `yaml:",inline"`
}

// Config is what the provisioner provisions.
type Config struct {
	// Prefix is the subject prefix (wire.DefaultPrefix).
	Prefix string `yaml:"-"`
	// AutoProvision creates streams for unlisted topics when an edge asks.
	AutoProvision bool `yaml:"auto_provision"`
	// Defaults is the stream shape of unlisted topics and the base of
	// listed ones.
	Defaults wire.TopicConfig `yaml:"defaults"`
	// Topics are provisioned at start with their own shape.
	Topics []Topic `yaml:"topics"`
}

// DefaultConfig returns prefix "outpost", auto-provisioning on, the
// DefaultTopicConfig and no listed topics.
func DefaultConfig() Config {
	return Config{Prefix: wire.DefaultPrefix, AutoProvision: true, Defaults: wire.DefaultTopicConfig()}
}

// Validate checks c; errors start with the offending field (under
// "streams.").
func (c Config) Validate() error {
	if err := wire.ValidatePrefix(c.Prefix); err != nil {
		return fmt.Errorf("prefix: %w", err)
	}
	d := c.Defaults.WithDefaults(wire.DefaultTopicConfig())
	if err := d.Validate("streams.defaults"); err != nil {
		return err
	}
	seen := make(map[string]int, len(c.Topics))
	for i, t := range c.Topics {
		field := fmt.Sprintf("streams.topics[%d]", i)
		if err := wire.ValidateTopic(t.Name); err != nil {
			return fmt.Errorf("%s.name: %w", field, err)
		}
		if j, dup := seen[t.Name]; dup {
			return fmt.Errorf("%s.name: %q is already listed at streams.topics[%d]", field, t.Name, j)
		}
		seen[t.Name] = i
		if err := t.WithDefaults(d).Validate(field); err != nil {
			return err
		}
	}
	return nil
}
