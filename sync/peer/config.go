package peer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"time"

	"github.com/outpost-edge/outpost/edge/log"
)

// Config is what owners and followers share. Zero fields take the defaults
// of DefaultConfig.
type Config struct {
	// Site names the site; owner and follower must agree (it is part of
	// the authenticated hello).
	Site string
	// Node is this node's name within the site (the name peers list).
	Node string
	// Secret is the site's shared secret; both sides prove they know it
	// [PROTOCOL-3]. At least 16 bytes.
	Secret []byte
	// Store persists epochs and epoch histories (edge/meta).
	Store Store
	// MaxFetchBytes caps the record bytes of one fetch response: with one
	// fetch in flight per follower connection, the memory a follower costs
	// either side is about this much.
	MaxFetchBytes int
	// MaxWait is how long an owner holds a fetch that finds no new records.
	MaxWait time.Duration
	// IOTimeout bounds a handshake and each write, and a read beyond
	// MaxWait: a silent peer is dropped and redialled after it.
	IOTimeout time.Duration
	// LagMax is how long a follower may go without reaching the owner's
	// end and still count as in sync (Kafka's replica.lag.time.max.ms).
	LagMax time.Duration
	// ReconnectMin and ReconnectMax bound the follower's jittered backoff.
	// The max is short: while a restarted owner waits for its followers
	// to reconnect, its acknowledgements are degraded (on its disk alone),
	// and a dial on the site network costs nothing. Refusals that need an
	// operator (authentication, version, a stale owner) are retried at
	// 10 × ReconnectMax instead, so they do not fill the log.
	ReconnectMin, ReconnectMax time.Duration
	// Logger receives connection and divergence reports; nil discards.
	Logger *slog.Logger
	// Metrics, shared by a node's owner and followers; nil counts nothing.
	Metrics *Metrics
}

// DefaultConfig returns the defaults as a fresh value.
func DefaultConfig() Config {
	return Config{
		MaxFetchBytes: 1 << 20,
		MaxWait:       500 * time.Millisecond,
		IOTimeout:     10 * time.Second,
		LagMax:        10 * time.Second,
		ReconnectMin:  100 * time.Millisecond,
		ReconnectMax:  2 * time.Second,
	}
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.MaxFetchBytes == 0 {
		c.MaxFetchBytes = d.MaxFetchBytes
	}
	if c.MaxWait == 0 {
		c.MaxWait = d.MaxWait
	}
	if c.IOTimeout == 0 {
		c.IOTimeout = d.IOTimeout
	}
	if c.LagMax == 0 {
		c.LagMax = d.LagMax
	}
	if c.ReconnectMin == 0 {
		c.ReconnectMin = d.ReconnectMin
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = d.ReconnectMax
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
}

// NameRE is what a node name may be: it names meta buckets, directories
// and retention holds.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidName reports whether s can name a node of a site.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// MinSecretBytes is the shortest shared secret accepted.
const MinSecretBytes = 16

// Validate checks the fields after defaults are filled.
func (c Config) Validate() error {
	c.fill()
	switch {
	case c.Site == "":
		return errors.New("peer: site is empty")
	case !ValidName(c.Node):
		return fmt.Errorf("peer: node %q: want 1–64 of [A-Za-z0-9_-]", c.Node)
	case len(c.Secret) < MinSecretBytes:
		return fmt.Errorf("peer: secret has %d bytes: want at least %d", len(c.Secret), MinSecretBytes)
	case c.Store == nil:
		return errors.New("peer: no store")
	case c.MaxFetchBytes < 1<<10 || c.MaxFetchBytes > maxFrameBytes/2:
		return fmt.Errorf("peer: max fetch bytes %d: want 1 KiB–%d", c.MaxFetchBytes, maxFrameBytes/2)
	case c.MaxWait < time.Millisecond || c.MaxWait > time.Minute:
		return fmt.Errorf("peer: max wait %v: want 1ms–1m", c.MaxWait)
	case c.IOTimeout < 100*time.Millisecond:
		return fmt.Errorf("peer: io timeout %v: want at least 100ms", c.IOTimeout)
	case c.LagMax <= 0:
		return fmt.Errorf("peer: lag max %v: want > 0", c.LagMax)
	case c.ReconnectMin <= 0 || c.ReconnectMax < c.ReconnectMin:
		return fmt.Errorf("peer: reconnect %v–%v: want 0 < min ≤ max", c.ReconnectMin, c.ReconnectMax)
	}
	return nil
}

// OwnerConfig configures the owner side: the listener that serves this
// node's partitions to its followers.
type OwnerConfig struct {
	Config
	// Log is this node's own log, whose partitions it serves.
	Log *log.Log
	// Listener accepts followers; the Owner closes it.
	Listener net.Listener
	// TLS, if set, wraps accepted connections (server side).
	TLS *tls.Config
	// Followers are the nodes allowed to replicate from this one: the
	// configured peers. Their names are the retention holds the owner
	// keeps (HoldName).
	Followers []string
	// MinInSync is how many followers must be in sync for a partition not
	// to count as under-replicated; 0 means all of Followers.
	MinInSync int
	// Policy is what Await does with too few followers in sync.
	Policy Policy
	// Replicas are the replica logs this node keeps, by owner: an owner
	// that lost its disk restores itself from them (Restore).
	Replicas map[string]*log.Log
	// Budget, if set, is a byte budget this node's peer links share (with
	// the uplink, when the node shares it: internal/ratelimit): every
	// fetch response waits for its bytes before it is sent.
	Budget Budget
}

// Budget is a shared byte budget (internal/ratelimit's Lane).
type Budget interface {
	Wait(ctx context.Context, n int) error
}

// FollowerConfig configures one follower: this node replicating one
// owner's partitions into a local replica log.
type FollowerConfig struct {
	Config
	// Owner is the owner's node name; the welcome must carry it.
	Owner string
	// Address is the owner's peer listener, host:port.
	Address string
	// TLS, if set, is the client side of TLS to the owner.
	TLS *tls.Config
	// Log is the replica log for this owner's partitions, this follower's
	// alone (edge/node opens DATA/replicas/<owner>).
	Log *log.Log
	// Retention is the retention of the replica's topics (bytes, age; the
	// partition count comes from the owner): the node's own, so that a
	// replica keeps about what its owner keeps and its disk use is bounded.
	Retention log.TopicConfig
}

// HoldName is the retention hold an owner keeps for follower node: the log
// deletes nothing a follower still needs (edge/log holds).
func HoldName(follower string) string { return "replica/" + follower }
