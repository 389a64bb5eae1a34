package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/outpost-edge/outpost/firmware-sim/fleet"
)

// file is the strict shape, used to reject unknown keys.
type file struct {
	Broker       string        `yaml:"broker"`
	Site         string        `yaml:"site"`
	Duration     time.Duration `yaml:"duration"`
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	RampUp       time.Duration `yaml:"ramp_up"`
	Seed         uint64        `yaml:"seed"`
	Description  string        `yaml:"description"`
	Defaults     *fleet.Group  `yaml:"defaults"`
	Groups       []fleet.Group `yaml:"groups"`
}

// nodes is the same document with groups kept as nodes, so each can be
// decoded on top of its defaults.
type nodes struct {
	Defaults yaml.Node   `yaml:"defaults"`
	Groups   []yaml.Node `yaml:"groups"`
}

// Load reads a scenario file; like Parse it leaves Validate to the caller.
func Load(path string) (fleet.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return fleet.Config{}, fmt.Errorf("scenario: %w", err)
	}
	cfg, err := Parse(b)
	if err != nil {
		return fleet.Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// Parse reads a scenario from YAML bytes; it does not call Validate, so
// callers can override fields (from flags) first.
func Parse(b []byte) (fleet.Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var strict file
	if err := dec.Decode(&strict); err != nil {
		if errors.Is(err, io.EOF) {
			return fleet.Config{}, fmt.Errorf("scenario: empty file")
		}
		return fleet.Config{}, fmt.Errorf("scenario: %w", err)
	}
	var top struct {
		Broker       *string        `yaml:"broker"`
		Site         *string        `yaml:"site"`
		Duration     *time.Duration `yaml:"duration"`
		DrainTimeout *time.Duration `yaml:"drain_timeout"`
		RampUp       *time.Duration `yaml:"ramp_up"`
		Seed         *uint64        `yaml:"seed"`
	}
	if err := yaml.Unmarshal(b, &top); err != nil {
		return fleet.Config{}, fmt.Errorf("scenario: %w", err)
	}
	cfg := fleet.DefaultConfig()
	cfg.Groups = nil
	set(&cfg.Broker, top.Broker)
	set(&cfg.Site, top.Site)
	set(&cfg.Duration, top.Duration)
	set(&cfg.DrainTimeout, top.DrainTimeout)
	set(&cfg.RampUp, top.RampUp)
	set(&cfg.Seed, top.Seed)
	var n nodes
	if err := yaml.Unmarshal(b, &n); err != nil {
		return fleet.Config{}, fmt.Errorf("scenario: %w", err)
	}
	base := fleet.DefaultGroup()
	if n.Defaults.Kind != 0 {
		if err := n.Defaults.Decode(&base); err != nil {
			return fleet.Config{}, fmt.Errorf("scenario: defaults: %w", err)
		}
	}
	if len(n.Groups) == 0 {
		return fleet.Config{}, fmt.Errorf("scenario: groups: at least one group is needed")
	}
	for i := range n.Groups {
		g := base
		if err := n.Groups[i].Decode(&g); err != nil {
			return fleet.Config{}, fmt.Errorf("scenario: groups[%d]: %w", i, err)
		}
		if g.Name == base.Name && len(n.Groups) > 1 {
			g.Name = fmt.Sprintf("%s%d", base.Name, i)
		}
		cfg.Groups = append(cfg.Groups, g)
	}
	return cfg, nil
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}
