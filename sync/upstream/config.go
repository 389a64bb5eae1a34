package upstream

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/wire"
)

// Mode says how records are packed into NATS messages.
type Mode int

const (
	// ModeRecord sends one NATS message per record, every field readable by
	// any NATS client (wire.NewMsg). The default.
	ModeRecord Mode = iota
	// ModeBatch sends many records of one partition per message
	// (wire.NewBatchMsg): one stream write, and one fsync on a centre running
	// sync_interval: always, per batch. Consumers must decode with wire.Parse.
	ModeBatch
)

// String returns "record" or "batch".
func (m Mode) String() string {
	switch m {
	case ModeRecord:
		return "record"
	case ModeBatch:
		return "batch"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode reads "record" or "batch".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "record", "":
		return ModeRecord, nil
	case "batch":
		return ModeBatch, nil
	}
	return 0, fmt.Errorf("upstream: mode %q is neither \"record\" nor \"batch\"", s)
}

// TLSConfig names the files of the uplink's TLS. Empty fields mean none.
type TLSConfig struct {
	// CAFile is a PEM bundle of CAs the server certificate must chain to;
	// "" uses the system roots (when the URL is tls://).
	CAFile string
	// CertFile and KeyFile are the client certificate and key (PEM) for
	// servers that verify clients; both or neither.
	CertFile string
	KeyFile  string
}

// Config configures a Forwarder. Zero fields take the defaults of
// DefaultConfig (New fills them in).
type Config struct {
	// URL is the NATS server (or comma-separated cluster seed list),
	// e.g. nats://core.example:4222 or tls://core.example:4222.
	URL string
	// CredsFile is a NATS credentials file (JWT + NKey seed); "" for none.
	CredsFile string
	// TLS configures the uplink's TLS.
	TLS TLSConfig
	// Site and Node name this node upstream (wire.ValidateName): they appear
	// in subjects and Nats-Msg-Ids, so they must never change for a node
	// whose records are already in the stream.
	Site string
	Node string
	// Prefix is the first subject token(s) (wire.DefaultPrefix).
	Prefix string
	// CursorName is the cursor the forwarder keeps in the metadata store.
	CursorName string
	// Window is the most unacknowledged publishes (messages) per partition.
	Window int
	// MaxReadBytes is how much one read from the log fetches; each
	// forwarding partition holds at most one read in memory.
	MaxReadBytes int
	// MaxInflightBytes bounds the bytes published and not yet acknowledged,
	// across all partitions (nats.go keeps each until its ack). With
	// MaxReadBytes per partition it bounds the forwarder's memory.
	MaxInflightBytes int
	// Mode is record-per-message (default) or batch.
	Mode Mode
	// MaxBatchRecords and MaxBatchBytes cut batches in ModeBatch. The bytes
	// are also capped by the server's max_payload.
	MaxBatchRecords int
	MaxBatchBytes   int
	// BandwidthBytesPerSec caps the bytes of record data the forwarder
	// publishes, across all partitions; 0 means no cap.
	BandwidthBytesPerSec int64
	// Watermark, if set, limits how far each partition is forwarded: only
	// below its high watermark (sync/peer's Owner), so the centre never
	// holds a record the site's in-sync replicas lack — a node restored
	// from a peer's replica then never reuses an offset the centre holds.
	Watermark Watermark
	// Budget, if set, is a byte budget shared with the node's other links
	// (peer replication): every message waits for it, and it replaces
	// BandwidthBytesPerSec.
	Budget Budget
	// LiveLagRecords is the lag at or below which a partition counts as
	// live: live partitions get bandwidth before backlogged ones.
	LiveLagRecords int64
	// ReconnectMin and ReconnectMax bound the exponential backoff (full
	// jitter) between connection attempts and between retries of a paused
	// partition, so a thousand sites coming back at once do not stampede
	// the centre.
	ReconnectMin time.Duration
	ReconnectMax time.Duration
	// StatusInterval is how often a status report (wire.Status) goes to
	// core while connected.
	StatusInterval time.Duration
	// AckTimeout is how long a publish waits for its PubAck, and how long
	// each JetStream API request may take.
	AckTimeout time.Duration
	// CursorInterval is how often acknowledged positions are written to the
	// cursor store. The stream, not the cursor, is what forwarding resumes
	// from, so a cursor that lags costs nothing but retention headroom.
	CursorInterval time.Duration
	// Link is a connection to the centre shared with other components and
	// run by its owner (see Link); URL, CredsFile and TLS must then be
	// empty. Nil: New makes the forwarder's own link from URL, CredsFile,
	// TLS, ReconnectMin/Max and AckTimeout, and Run runs it.
	Link *Link
	// CreateStreams lets the forwarder get a missing stream: it asks core
	// (wire.RequestProvision) and, if no core answers, creates it itself
	// with core's default shape. Off, a missing stream pauses forwarding of
	// its topic until someone creates it.
	CreateStreams bool
	// Fenced makes every publish conditional, so that a forwarder that no
	// longer should forward (its lease lapsed without its knowing) cannot
	// store a duplicate or reorder: records go out in JetStream atomic
	// batches, one batch in flight, each expecting the subject's last
	// sequence to be the one the previous batch ended on. A stream that
	// does not allow atomic publishing gets one conditional message per
	// round trip. A takeover forwarder (forwarding a peer's replica) runs
	// fenced; a node forwarding its own log does not need to.
	Fenced bool
	// ReleaseHolds releases the forwarder's retention holds when Run
	// returns: a takeover forwards a replica only while its owner is
	// away, and must not keep the replica's retention back afterwards.
	ReleaseHolds bool
	// ForwardedBy names the node that runs this forwarder in its status
	// reports (wire.Status.ForwardedBy); "" means Node itself.
	ForwardedBy string
	// Logger receives state changes (connected, paused and why, resumed,
	// gaps); nil discards.
	Logger *slog.Logger
	// Registerer receives the forwarder's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the defaults as a fresh value. URL, Site and Node
// have no default.
func DefaultConfig() Config {
	return Config{
		Prefix:           wire.DefaultPrefix,
		CursorName:       "upstream",
		Window:           256,
		MaxReadBytes:     256 << 10,
		MaxInflightBytes: 16 << 20,
		Mode:             ModeRecord,
		MaxBatchRecords:  1000,
		MaxBatchBytes:    512 << 10,
		LiveLagRecords:   64,
		ReconnectMin:     250 * time.Millisecond,
		ReconnectMax:     30 * time.Second,
		StatusInterval:   5 * time.Second,
		AckTimeout:       5 * time.Second,
		CursorInterval:   200 * time.Millisecond,
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Prefix == "" {
		c.Prefix = d.Prefix
	}
	if c.CursorName == "" {
		c.CursorName = d.CursorName
	}
	if c.Window == 0 {
		c.Window = d.Window
	}
	if c.MaxReadBytes == 0 {
		c.MaxReadBytes = d.MaxReadBytes
	}
	if c.MaxInflightBytes == 0 {
		c.MaxInflightBytes = d.MaxInflightBytes
	}
	if c.MaxBatchRecords == 0 {
		c.MaxBatchRecords = d.MaxBatchRecords
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = d.MaxBatchBytes
	}
	if c.LiveLagRecords == 0 {
		c.LiveLagRecords = d.LiveLagRecords
	}
	if c.ReconnectMin == 0 {
		c.ReconnectMin = d.ReconnectMin
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = d.ReconnectMax
	}
	if c.StatusInterval == 0 {
		c.StatusInterval = d.StatusInterval
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = d.AckTimeout
	}
	if c.CursorInterval == 0 {
		c.CursorInterval = d.CursorInterval
	}
	return c
}

// Validate checks c after defaults are filled in. Errors name the field.
func (c Config) Validate() error {
	switch {
	case c.Link != nil && (c.URL != "" || c.CredsFile != "" || c.TLS != TLSConfig{}):
		return errors.New("upstream: Link: a shared link brings its own URL, CredsFile and TLS; leave them empty here")
	case c.Link == nil && c.URL == "":
		return errors.New("upstream: URL: required (the NATS server of the central cluster, e.g. nats://core:4222)")
	}
	if err := wire.ValidateName("Site", c.Site); err != nil {
		return fmt.Errorf("upstream: Site: %w", err)
	}
	if err := wire.ValidateName("Node", c.Node); err != nil {
		return fmt.Errorf("upstream: Node: %w", err)
	}
	if err := wire.ValidatePrefix(c.Prefix); err != nil {
		return fmt.Errorf("upstream: Prefix: %w", err)
	}
	if c.CursorName == "" {
		return errors.New("upstream: CursorName: required")
	}
	if c.ForwardedBy != "" {
		if err := wire.ValidateName("ForwardedBy", c.ForwardedBy); err != nil {
			return fmt.Errorf("upstream: ForwardedBy: %w", err)
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("upstream: TLS.CertFile and TLS.KeyFile: give both or neither")
	}
	switch {
	case c.Window < 1 || c.Window > 65536:
		return fmt.Errorf("upstream: Window: %d is not between 1 and 65536", c.Window)
	case c.MaxReadBytes < 1024:
		return fmt.Errorf("upstream: MaxReadBytes: %d is below 1024", c.MaxReadBytes)
	case c.MaxInflightBytes < 64<<10:
		return fmt.Errorf("upstream: MaxInflightBytes: %d is below 64 KiB", c.MaxInflightBytes)
	case c.Mode != ModeRecord && c.Mode != ModeBatch:
		return fmt.Errorf("upstream: Mode: %v is not known", c.Mode)
	case c.MaxBatchRecords < 1:
		return fmt.Errorf("upstream: MaxBatchRecords: %d is below 1", c.MaxBatchRecords)
	case c.MaxBatchBytes < 1024:
		return fmt.Errorf("upstream: MaxBatchBytes: %d is below 1024", c.MaxBatchBytes)
	case c.BandwidthBytesPerSec < 0:
		return fmt.Errorf("upstream: BandwidthBytesPerSec: %d is negative; use 0 for no cap", c.BandwidthBytesPerSec)
	case c.BandwidthBytesPerSec > 0 && c.BandwidthBytesPerSec < 1024:
		return fmt.Errorf("upstream: BandwidthBytesPerSec: %d is below 1024", c.BandwidthBytesPerSec)
	case c.LiveLagRecords < 0:
		return fmt.Errorf("upstream: LiveLagRecords: %d is negative", c.LiveLagRecords)
	case c.ReconnectMin < time.Millisecond:
		return fmt.Errorf("upstream: ReconnectMin: %v is below 1ms", c.ReconnectMin)
	case c.ReconnectMax < c.ReconnectMin:
		return fmt.Errorf("upstream: ReconnectMax: %v is below ReconnectMin %v", c.ReconnectMax, c.ReconnectMin)
	case c.StatusInterval < 10*time.Millisecond:
		return fmt.Errorf("upstream: StatusInterval: %v is below 10ms", c.StatusInterval)
	case c.AckTimeout < 10*time.Millisecond:
		return fmt.Errorf("upstream: AckTimeout: %v is below 10ms", c.AckTimeout)
	case c.CursorInterval < time.Millisecond:
		return fmt.Errorf("upstream: CursorInterval: %v is below 1ms", c.CursorInterval)
	}
	return nil
}
