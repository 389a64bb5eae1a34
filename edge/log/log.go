package log

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

const (
	lockFileName  = "LOCK"
	tmpSuffix     = ".tmp"
	brokenSuffix  = ".broken"
	logSuffix     = ".log"
	indexSuffix   = ".idx"
	segmentFormat = "%020d"
)

var topicNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,200}$`)

// ValidTopicName reports whether name can be a topic: 1–200 of [A-Za-z0-9._-],
// not "." or "..".
func ValidTopicName(name string) bool {
	return topicNameRE.MatchString(name) && name != "." && name != ".."
}

// Log is a directory of topics. It is safe for concurrent use.
type Log struct {
	dir     string
	cfg     Config
	metrics *metrics
	lock    *os.File
	// journal is set by Open when Config.Journal is on, before any append.
	journal *journal

	mu     sync.RWMutex
	topics map[string]*topic // mu
	closed bool              // mu

	budgetMu      sync.Mutex          // serializes segment deletion (retention, budget)
	holdGauges    map[string]struct{} // budgetMu; holders with an outpost_log_hold_retained_bytes series
	bytes         atomic.Int64        // bytes of every segment and index
	lastBudgetLog atomic.Int64

	stop chan struct{}
	wg   sync.WaitGroup
}

type topic struct {
	name       string
	cfg        TopicConfig
	partitions []*Partition
}

// TopicInfo describes a topic and its partitions at one moment.
type TopicInfo struct {
	Name       string
	Config     TopicConfig
	Partitions []PartitionInfo
}

// PartitionInfo describes a partition at one moment. EndOffset is the next
// offset to be written (the log end offset); records in [StartOffset,
// EndOffset) are readable.
type PartitionInfo struct {
	Partition   int32
	StartOffset int64
	EndOffset   int64
	Bytes       int64
	Segments    int
}

// Open opens or creates the log in dir, recovering every partition found
// there (see the package doc). Topics found on disk get a TopicConfig with
// their partition count and no retention until CreateTopic sets one.
func Open(dir string, cfg Config) (*Log, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := mkdirAllSynced(dir); err != nil {
		return nil, fmt.Errorf("log: create %s: %w", dir, err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	l := &Log{
		dir:        dir,
		cfg:        cfg,
		metrics:    newMetrics(cfg.Registerer),
		lock:       lock,
		topics:     make(map[string]*topic),
		holdGauges: make(map[string]struct{}),
		stop:       make(chan struct{}),
	}
	if cfg.Sync == SyncNone {
		cfg.Logger.Warn("log: sync policy is none: UNSAFE, a power cut may lose every record since the last segment roll", "dir", dir)
	}
	if err := l.openTopics(); err != nil {
		l.closeAll()
		lock.Close()
		return nil, err
	}
	if cfg.Journal || journalExists(dir) {
		if err := l.openJournal(cfg.Journal); err != nil {
			l.closeAll()
			lock.Close()
			return nil, err
		}
	}
	l.wg.Add(1)
	go l.housekeeping()
	return l, nil
}

func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFileName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log: open lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s: %v", ErrLocked, dir, err)
	}
	return f, nil
}

func (l *Log) openTopics() error {
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("log: read %s: %w", l.dir, err)
	}
	for _, e := range entries {
		if !e.IsDir() || !ValidTopicName(e.Name()) {
			continue
		}
		parts, err := os.ReadDir(filepath.Join(l.dir, e.Name()))
		if err != nil {
			return fmt.Errorf("log: read topic %s: %w", e.Name(), err)
		}
		var ids []int
		for _, p := range parts {
			n, err := strconv.Atoi(p.Name())
			if err != nil || !p.IsDir() || n < 0 || strconv.Itoa(n) != p.Name() {
				continue
			}
			ids = append(ids, n)
		}
		if len(ids) == 0 {
			continue
		}
		sort.Ints(ids)
		for i, n := range ids {
			if i != n {
				return fmt.Errorf("log: topic %s: partition directory %d is missing (found %v); restore it or remove the topic", e.Name(), i, ids)
			}
		}
		t := &topic{name: e.Name(), cfg: TopicConfig{Partitions: int32(len(ids))}}
		for i := range ids {
			p, err := openPartition(l, t.name, int32(i))
			if err != nil {
				return err
			}
			t.partitions = append(t.partitions, p)
		}
		l.topics[t.name] = t
	}
	return nil
}

// CreateTopic creates a topic, or updates the retention of an existing one.
// An existing topic keeps its partition count: asking for another returns
// ErrTopicExists.
func (l *Log) CreateTopic(name string, tc TopicConfig) error {
	if !ValidTopicName(name) {
		return fmt.Errorf("%w: %q", ErrBadTopicName, name)
	}
	if err := tc.Validate(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if t, ok := l.topics[name]; ok {
		if t.cfg.Partitions != tc.Partitions {
			return fmt.Errorf("%w: %s has %d partitions, asked for %d", ErrTopicExists, name, t.cfg.Partitions, tc.Partitions)
		}
		t.cfg = tc
		return nil
	}
	tdir := filepath.Join(l.dir, name)
	if err := os.MkdirAll(tdir, 0o755); err != nil {
		return fmt.Errorf("log: create topic %s: %w", name, err)
	}
	t := &topic{name: name, cfg: tc}
	for i := int32(0); i < tc.Partitions; i++ {
		p, err := openPartition(l, name, i)
		if err != nil {
			for _, q := range t.partitions {
				q.close()
			}
			return err
		}
		t.partitions = append(t.partitions, p)
	}
	if err := syncDir(tdir); err != nil {
		return fmt.Errorf("log: create topic %s: %w", name, err)
	}
	if err := syncDir(l.dir); err != nil {
		return fmt.Errorf("log: create topic %s: %w", name, err)
	}
	l.topics[name] = t
	return nil
}

// Partition returns a partition of a topic.
func (l *Log) Partition(topicName string, partition int32) (*Partition, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, ErrClosed
	}
	t, ok := l.topics[topicName]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNoTopic, topicName)
	}
	if partition < 0 || int(partition) >= len(t.partitions) {
		return nil, fmt.Errorf("%w: %s/%d (topic has %d)", ErrNoPartition, topicName, partition, len(t.partitions))
	}
	return t.partitions[partition], nil
}

// TopicConfig returns a topic's config.
func (l *Log) TopicConfig(topicName string) (TopicConfig, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	t, ok := l.topics[topicName]
	if !ok {
		return TopicConfig{}, fmt.Errorf("%w: %s", ErrNoTopic, topicName)
	}
	return t.cfg, nil
}

// Topics describes every topic, sorted by name.
func (l *Log) Topics() []TopicInfo {
	l.mu.RLock()
	ts := make([]*topic, 0, len(l.topics))
	for _, t := range l.topics {
		ts = append(ts, t)
	}
	cfgs := make(map[string]TopicConfig, len(ts))
	for _, t := range ts {
		cfgs[t.name] = t.cfg
	}
	l.mu.RUnlock()
	sort.Slice(ts, func(i, j int) bool { return ts[i].name < ts[j].name })
	out := make([]TopicInfo, 0, len(ts))
	for _, t := range ts {
		ti := TopicInfo{Name: t.name, Config: cfgs[t.name]}
		for _, p := range t.partitions {
			ti.Partitions = append(ti.Partitions, p.Info())
		}
		out = append(out, ti)
	}
	return out
}

// Bytes returns the size of every segment and index of the log.
func (l *Log) Bytes() int64 {
	var n int64
	for _, p := range l.allPartitions() {
		n += p.Bytes()
	}
	return n
}

// Health returns nil, or the journal's sticky failure, or the first
// sticky failure of any partition.
func (l *Log) Health() error {
	if l.journal != nil {
		if err := l.journal.err(); err != nil {
			return err
		}
	}
	for _, p := range l.allPartitions() {
		if err := p.Failed(); err != nil {
			return err
		}
	}
	return nil
}

func (l *Log) allPartitions() []*Partition {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var ps []*Partition
	for _, t := range l.topics {
		ps = append(ps, t.partitions...)
	}
	return ps
}

// Close waits for pending appends to finish (they are synced), syncs and
// closes every file. It is idempotent.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	err := l.closeAll()
	l.wg.Wait()
	if l.lock != nil {
		l.lock.Close()
	}
	return err
}

func (l *Log) closeAll() error {
	var errs []error
	if l.journal != nil {
		// The journal's committer writes every partition: stop new
		// appends, let it commit and publish what is queued, then close
		// the partitions, which find nothing in flight.
		for _, p := range l.allPartitions() {
			p.refuseAppends()
		}
		l.journal.flush()
	}
	for _, p := range l.allPartitions() {
		if err := p.close(); err != nil {
			errs = append(errs, err)
		}
	}
	// Partitions first: their close waits for their last commit and
	// fdatasyncs their segments, after which nothing needs the journal.
	if l.journal != nil {
		// Every segment is synced now: unless something failed, the journal
		// holds nothing they lack. Emptying it keeps offline tools (edge
		// repair) and the next open from replaying it.
		errs = append(errs, l.journal.close(len(errs) == 0))
	}
	return errors.Join(errs...)
}

// housekeeping runs retention and interval syncs.
func (l *Log) housekeeping() {
	defer l.wg.Done()
	ret := time.NewTicker(l.cfg.RetentionCheckInterval)
	defer ret.Stop()
	var syncC <-chan time.Time
	if l.cfg.Sync == SyncInterval {
		t := time.NewTicker(l.cfg.SyncInterval)
		defer t.Stop()
		syncC = t.C
	}
	for {
		select {
		case <-l.stop:
			return
		case <-ret.C:
			l.EnforceRetention(context.Background())
		case <-syncC:
			for _, p := range l.allPartitions() {
				p.syncIfDirty()
			}
		}
	}
}
