package command

import (
	"errors"
	"fmt"
	"time"
)

// Config bounds the centre's command queue. Zero fields take the defaults
// of DefaultConfig.
type Config struct {
	// DefaultTTL is a command's time to live when the request gives none.
	DefaultTTL time.Duration `yaml:"default_ttl"`
	// MaxTTL caps a request's time to live (and is the commands stream's
	// max_age: nothing stays queued longer).
	MaxTTL time.Duration `yaml:"max_ttl"`
	// MaxPayloadBytes refuses larger payloads (status rejected,
	// payload_too_large).
	MaxPayloadBytes int `yaml:"max_payload_bytes"`
	// MaxPerDevice and MaxPerSite bound the commands waiting in the centre
	// for one device and for one site (status rejected, queue_full).
	MaxPerDevice int `yaml:"max_per_device"`
	MaxPerSite   int `yaml:"max_per_site"`
	// Keep is how long a command's state and history stay readable after
	// its last change (the state bucket's max age).
	Keep time.Duration `yaml:"keep"`
	// DuplicateWindow is the commands stream's duplicate window: a resend
	// of the same id within it is stored once.
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	// Replicas of the commands stream and state bucket.
	Replicas int `yaml:"replicas"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		DefaultTTL:      10 * time.Minute,
		MaxTTL:          7 * 24 * time.Hour,
		MaxPayloadBytes: 64 << 10,
		MaxPerDevice:    100,
		MaxPerSite:      10000,
		Keep:            7 * 24 * time.Hour,
		DuplicateWindow: 2 * time.Minute,
		Replicas:        1,
	}
}

// WithDefaults fills zero fields from DefaultConfig.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	if c.DefaultTTL == 0 {
		c.DefaultTTL = d.DefaultTTL
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = d.MaxTTL
	}
	if c.MaxPayloadBytes == 0 {
		c.MaxPayloadBytes = d.MaxPayloadBytes
	}
	if c.MaxPerDevice == 0 {
		c.MaxPerDevice = d.MaxPerDevice
	}
	if c.MaxPerSite == 0 {
		c.MaxPerSite = d.MaxPerSite
	}
	if c.Keep == 0 {
		c.Keep = d.Keep
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = d.DuplicateWindow
	}
	if c.Replicas == 0 {
		c.Replicas = d.Replicas
	}
	return c
}

// Validate checks c after defaults; errors name the config field
// (commands.<field>).
func (c Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("commands.%s: %s", field, fmt.Sprintf(format, args...))
	}
	switch {
	case c.DefaultTTL < time.Second:
		return bad("default_ttl", "%v is below 1s", c.DefaultTTL)
	case c.MaxTTL < c.DefaultTTL:
		return bad("max_ttl", "%v is below default_ttl %v", c.MaxTTL, c.DefaultTTL)
	case c.MaxPayloadBytes < 1 || c.MaxPayloadBytes > 1<<20:
		return bad("max_payload_bytes", "%d is not in 1..1048576", c.MaxPayloadBytes)
	case c.MaxPerDevice < 1:
		return bad("max_per_device", "%d is below 1", c.MaxPerDevice)
	case c.MaxPerSite < c.MaxPerDevice:
		return bad("max_per_site", "%d is below max_per_device %d", c.MaxPerSite, c.MaxPerDevice)
	case c.Keep < c.MaxTTL:
		return bad("keep", "%v is below max_ttl %v (a queued command's state would vanish)", c.Keep, c.MaxTTL)
	case c.DuplicateWindow < time.Second:
		return bad("duplicate_window", "%v is below 1s", c.DuplicateWindow)
	case c.Replicas < 1 || c.Replicas > 5:
		return bad("replicas", "%d is not in 1..5", c.Replicas)
	}
	return nil
}

// errors returned by Send and Get; the HTTP and NATS layers map them.
var (
	// ErrBadRequest: the request is malformed; nothing was stored.
	ErrBadRequest = errors.New("command: bad request")
	// ErrNotFound: no command with that id for that device.
	ErrNotFound = errors.New("command: not found")
	// ErrUnavailable: JetStream did not answer; the command may or may not
	// be stored (send it again with the same id).
	ErrUnavailable = errors.New("command: unavailable")
)
