package log

import (
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SyncPolicy says when appended bytes reach stable storage, and so what an
// acknowledgement promises.
type SyncPolicy int

const (
	// SyncAlways group-commits: concurrent appends share one fdatasync and
	// Append returns only after the fdatasync that covers its records. A record
	// whose Append returned nil survives a power cut. Readers see a record only
	// once it is durable.
	SyncAlways SyncPolicy = iota
	// SyncInterval writes at once and fdatasyncs every Config.SyncInterval, on
	// segment roll and on Close. Append returns once the bytes are in the page
	// cache: a power cut loses at most the last interval (a process crash loses
	// nothing). Readers see records as soon as they are written.
	SyncInterval
	// SyncNone fsyncs only on roll and Close. A power cut may lose everything
	// since the last roll. For tests and benchmarks; Open logs "UNSAFE".
	SyncNone
)

func (s SyncPolicy) String() string {
	switch s {
	case SyncAlways:
		return "always"
	case SyncInterval:
		return "interval"
	case SyncNone:
		return "none"
	}
	return fmt.Sprintf("SyncPolicy(%d)", int(s))
}

// ParseSyncPolicy reads "always", "interval" or "none".
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	switch s {
	case "always", "":
		return SyncAlways, nil
	case "interval":
		return SyncInterval, nil
	case "none":
		return SyncNone, nil
	}
	return 0, fmt.Errorf("log: unknown sync policy %q (want always, interval or none)", s)
}

// BudgetPolicy says what happens when the node-wide disk budget is reached.
type BudgetPolicy int

const (
	// BudgetRefuse refuses appends with ErrDiskBudget until retention frees
	// space; callers turn it into back-pressure so devices keep their data.
	BudgetRefuse BudgetPolicy = iota
	// BudgetDeleteOldest deletes the oldest sealed segments of the node,
	// segments no Hold needs first, until the append fits; records a
	// holder still needed are counted and logged per holder.
	BudgetDeleteOldest
)

func (b BudgetPolicy) String() string {
	switch b {
	case BudgetRefuse:
		return "refuse"
	case BudgetDeleteOldest:
		return "delete-oldest"
	}
	return fmt.Sprintf("BudgetPolicy(%d)", int(b))
}

// ParseBudgetPolicy reads "refuse" or "delete-oldest".
func ParseBudgetPolicy(s string) (BudgetPolicy, error) {
	switch s {
	case "refuse", "":
		return BudgetRefuse, nil
	case "delete-oldest":
		return BudgetDeleteOldest, nil
	}
	return 0, fmt.Errorf("log: unknown budget policy %q (want refuse or delete-oldest)", s)
}

// Recovery says what Open does when it finds damage followed by valid data.
type Recovery int

const (
	// RecoveryStrict refuses to open a partition with damage in the middle,
	// returning a *CorruptionError. A torn tail (damage with nothing valid
	// after it) is always cut back: that is what a crash leaves.
	RecoveryStrict Recovery = iota
	// RecoveryTruncate cuts the partition at the first damaged frame, keeps
	// the cut bytes as evidence and reports what was dropped. Records after the
	// damage are lost: the operator asked for it.
	RecoveryTruncate
)

// Config configures a Log. Zero fields take the defaults of DefaultConfig.
type Config struct {
	// Sync is the sync policy; see SyncPolicy for what each value promises.
	Sync SyncPolicy
	// SyncInterval is the fdatasync period under SyncInterval.
	SyncInterval time.Duration
	// CommitDelayMax caps how long a group commit waits for more appends
	// when the previous round carried several records (see FORMAT.md,
	// "Group commit"). Zero takes the default; a negative value disables it.
	CommitDelayMax time.Duration
	// Journal turns on the node-wide write-ahead journal (SyncAlways
	// only): one fdatasync of the journal per commit window covers every
	// partition, and segments are fdatasynced only at checkpoints, rolls
	// and close. FORMAT.md, "The journal".
	Journal bool
	// CommitWindow is how long the journal's first record of a commit
	// waits for others before the fdatasync: the acknowledgement latency
	// traded for fewer fdatasyncs and page writes at low rates. A commit
	// also starts once enough bytes are waiting. Zero takes the default;
	// a negative value commits at once.
	CommitWindow time.Duration
	// JournalFileBytes is the size at which a journal file is
	// checkpointed and the other one written; two exist.
	JournalFileBytes int64
	// SegmentMaxBytes rolls the active segment once it reaches this size.
	SegmentMaxBytes int64
	// IndexIntervalBytes is the distance between sparse index entries.
	IndexIntervalBytes int64
	// MaxBatchBytes caps one Append call's encoded size (and one frame).
	// Zero means 4 MiB or a quarter of SegmentMaxBytes, whichever is less.
	MaxBatchBytes int
	// DiskBudgetBytes caps the bytes of all segments of the log; 0 means no
	// budget.
	DiskBudgetBytes int64
	// BudgetPolicy applies when the budget is reached.
	BudgetPolicy BudgetPolicy
	// RetentionCheckInterval is how often retention runs.
	RetentionCheckInterval time.Duration
	// Recovery says what Open does with damage followed by valid data.
	Recovery Recovery
	// MaxBrokenBytes caps how many cut bytes are kept in a .broken file.
	MaxBrokenBytes int64
	// OpenSealedMax caps how many sealed segment files a partition keeps
	// open for reading; older ones are closed and reopened on demand.
	OpenSealedMax int
	// Holders names the readers that hold every partition from Open on,
	// before their owners start: each partition, including those of topics
	// created later, gets a Hold of each name at offset 0 (everything), which
	// its owner moves with Partition.Hold(name) and Hold.Set. Without it,
	// retention could delete what a reader needs between Open and the
	// moment its owner sets its holds. The edge node declares the forwarder
	// here when upstream is configured.
	Holders []string
	// OpenFile opens files; nil means the operating system. Tests inject
	// faults here.
	OpenFile OpenFileFunc
	// Logger receives recovery, retention and failure reports; nil discards.
	Logger *slog.Logger
	// Registerer receives the log's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Now returns the current time; nil means time.Now. Tests of retention
	// by age set it.
	Now func() time.Time
}

// DefaultConfig returns the defaults as a fresh value.
func DefaultConfig() Config {
	return Config{
		Sync:                   SyncAlways,
		SyncInterval:           100 * time.Millisecond,
		CommitDelayMax:         time.Millisecond,
		CommitWindow:           10 * time.Millisecond,
		JournalFileBytes:       16 << 20,
		SegmentMaxBytes:        64 << 20,
		IndexIntervalBytes:     16 << 10,
		MaxBatchBytes:          4 << 20,
		BudgetPolicy:           BudgetRefuse,
		RetentionCheckInterval: 30 * time.Second,
		Recovery:               RecoveryStrict,
		MaxBrokenBytes:         1 << 20,
		OpenSealedMax:          4,
	}
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.SyncInterval == 0 {
		c.SyncInterval = d.SyncInterval
	}
	if c.SegmentMaxBytes == 0 {
		c.SegmentMaxBytes = d.SegmentMaxBytes
	}
	if c.CommitDelayMax == 0 {
		c.CommitDelayMax = d.CommitDelayMax
	}
	if c.CommitWindow == 0 {
		c.CommitWindow = d.CommitWindow
	}
	if c.JournalFileBytes == 0 {
		c.JournalFileBytes = d.JournalFileBytes
	}
	if c.IndexIntervalBytes == 0 {
		c.IndexIntervalBytes = d.IndexIntervalBytes
	}
	if c.MaxBatchBytes == 0 {
		// A batch must fit a segment with room to spare.
		c.MaxBatchBytes = int(min(int64(d.MaxBatchBytes), c.SegmentMaxBytes/4))
	}
	if c.RetentionCheckInterval == 0 {
		c.RetentionCheckInterval = d.RetentionCheckInterval
	}
	if c.MaxBrokenBytes == 0 {
		c.MaxBrokenBytes = d.MaxBrokenBytes
	}
	if c.OpenSealedMax == 0 {
		c.OpenSealedMax = d.OpenSealedMax
	}
	if c.OpenFile == nil {
		c.OpenFile = OSOpenFile
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate checks bounds after defaults are filled in. Errors name the field.
func (c Config) Validate() error {
	c.fill()
	switch {
	case c.Sync < SyncAlways || c.Sync > SyncNone:
		return fmt.Errorf("log: Sync: unknown policy %d", c.Sync)
	case c.SyncInterval < time.Millisecond:
		return fmt.Errorf("log: SyncInterval: %v is below 1ms", c.SyncInterval)
	case c.CommitDelayMax > time.Second:
		return fmt.Errorf("log: CommitDelayMax: %v is above 1s", c.CommitDelayMax)
	case c.Journal && c.Sync != SyncAlways:
		return fmt.Errorf("log: Journal: needs Sync always (it is how always is made cheap), not %v", c.Sync)
	case c.CommitWindow > time.Second:
		return fmt.Errorf("log: CommitWindow: %v is above 1s", c.CommitWindow)
	case c.SegmentMaxBytes < 4<<10:
		return fmt.Errorf("log: SegmentMaxBytes: %d is below 4096", c.SegmentMaxBytes)
	case c.SegmentMaxBytes > 1<<31:
		return fmt.Errorf("log: SegmentMaxBytes: %d is above 2 GiB (index positions are 32-bit)", c.SegmentMaxBytes)
	case c.IndexIntervalBytes < 256:
		return fmt.Errorf("log: IndexIntervalBytes: %d is below 256", c.IndexIntervalBytes)
	case c.MaxBatchBytes < 1<<10 || int64(c.MaxBatchBytes) > c.SegmentMaxBytes:
		return fmt.Errorf("log: MaxBatchBytes: %d must be between 1024 and SegmentMaxBytes (%d)", c.MaxBatchBytes, c.SegmentMaxBytes)
	case c.Journal && c.JournalFileBytes < 2*int64(c.MaxBatchBytes)+64<<10:
		return fmt.Errorf("log: JournalFileBytes: %d is below two batches and 64 KiB (2 × MaxBatchBytes + 65536 = %d)", c.JournalFileBytes, 2*int64(c.MaxBatchBytes)+64<<10)
	case c.JournalFileBytes > 1<<30:
		return fmt.Errorf("log: JournalFileBytes: %d is above 1 GiB", c.JournalFileBytes)
	case c.DiskBudgetBytes < 0:
		return fmt.Errorf("log: DiskBudgetBytes: %d is negative", c.DiskBudgetBytes)
	case c.DiskBudgetBytes > 0 && c.DiskBudgetBytes < 2*c.SegmentMaxBytes:
		return fmt.Errorf("log: DiskBudgetBytes: %d is below two segments (2 × SegmentMaxBytes = %d)", c.DiskBudgetBytes, 2*c.SegmentMaxBytes)
	case c.BudgetPolicy < BudgetRefuse || c.BudgetPolicy > BudgetDeleteOldest:
		return fmt.Errorf("log: BudgetPolicy: unknown policy %d", c.BudgetPolicy)
	case c.Recovery < RecoveryStrict || c.Recovery > RecoveryTruncate:
		return fmt.Errorf("log: Recovery: unknown mode %d", c.Recovery)
	case c.MaxBrokenBytes < 0:
		return fmt.Errorf("log: MaxBrokenBytes: %d is negative", c.MaxBrokenBytes)
	case c.OpenSealedMax < 1:
		return fmt.Errorf("log: OpenSealedMax: %d is below 1", c.OpenSealedMax)
	}
	for i, name := range c.Holders {
		if !validHoldName(name) {
			return fmt.Errorf("log: Holders[%d]: %q is not a holder name (1-128 of A-Z a-z 0-9 . _ : / -)", i, name)
		}
		if slices.Contains(c.Holders[:i], name) {
			return fmt.Errorf("log: Holders[%d]: %q is listed twice", i, name)
		}
	}
	return nil
}

// TopicConfig configures one topic. Zero retention fields mean unlimited.
type TopicConfig struct {
	// Partitions is fixed at creation; a topic cannot change it.
	Partitions int32
	// RetentionBytes caps each partition's bytes; whole sealed segments go.
	RetentionBytes int64
	// RetentionAge deletes sealed segments whose newest record is older.
	RetentionAge time.Duration
}

// Validate checks a topic config.
func (t TopicConfig) Validate() error {
	switch {
	case t.Partitions < 1 || t.Partitions > 4096:
		return fmt.Errorf("log: Partitions: %d is not between 1 and 4096", t.Partitions)
	case t.RetentionBytes < 0:
		return fmt.Errorf("log: RetentionBytes: %d is negative", t.RetentionBytes)
	case t.RetentionAge < 0:
		return fmt.Errorf("log: RetentionAge: %v is negative", t.RetentionAge)
	}
	return nil
}
