package meta

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	elog "github.com/outpost-edge/outpost/edge/log"
)

// layoutVersion is the bucket layout this code writes and reads (doc.go).
const layoutVersion = 1

// Bucket and key names. They are part of the on-disk format.
var (
	bucketOutpost  = []byte("outpost")
	bucketCursors  = []byte("cursors")
	bucketKV       = []byte("kv")
	keyFormat      = []byte("format")
	keyIdentity    = []byte("identity")
	topLevelBucket = [][]byte{bucketOutpost, bucketCursors, bucketKV}
	// bucketTopicsGone held topic configs that were written at every node
	// start and read by nothing (the node's config owns them, doc.go);
	// init deletes it from files that have it.
	bucketTopicsGone = []byte("topics")
)

// Store is the metadata store. It is safe for concurrent use.
type Store struct {
	path string
	cfg  Config
	log  *slog.Logger
	db   *bolt.DB

	// identityMu serializes Identity's create-once path so two first callers
	// do not both generate an ID (the second would lose, harmlessly, but
	// would log a different ID than the one kept).
	identityMu sync.Mutex

	closeOnce sync.Once
	closeErr  error
}

// Open opens or creates the store at path (its directory is created). It
// checks the file before returning: a damaged file gives ErrCorrupt, a file
// another process holds gives ErrLocked after cfg.Timeout, and a file from a
// newer release gives ErrFormat.
func Open(path string, cfg Config) (*Store, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("meta: create directory for %s: %w", path, err)
	}
	_, statErr := os.Stat(path)
	db, err := openBolt(path, cfg)
	if err != nil {
		return nil, err
	}
	if os.IsNotExist(statErr) {
		// bbolt syncs a new file's pages, not the directory entry that
		// names it: without this a power cut soon after the first start
		// could leave no metadata file at all.
		if err := elog.SyncDir(filepath.Dir(path)); err != nil {
			db.Close()
			return nil, fmt.Errorf("meta: sync directory of %s: %w", path, err)
		}
	}
	s := &Store{path: path, cfg: cfg, log: cfg.Logger, db: db}
	db.MaxBatchDelay = cfg.BatchMaxDelay
	db.MaxBatchSize = cfg.BatchMaxSize
	if err := s.check(); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.init(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// openBolt opens the bbolt file and turns its errors into ours. A damaged
// file can make bbolt panic (or fault on the mapping) while it loads the
// freelist: that is disk data, so it becomes ErrCorrupt, not a crash. The
// cost of catching it is a leaked file descriptor on that error path.
func openBolt(path string, cfg Config) (db *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, corruptErr(path, fmt.Errorf("bbolt panicked while opening: %v", r))
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: cfg.Timeout})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("%w: %s: still locked after %v; is another edge node running on this data directory? Stop it, or give this node its own directory", ErrLocked, path, cfg.Timeout)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum),
		errors.Is(err, berrors.ErrVersionMismatch), strings.Contains(err.Error(), "file size too small"):
		return nil, corruptErr(path, err)
	}
	return nil, fmt.Errorf("meta: open %s: %w", path, err)
}

func corruptErr(path string, cause error) error {
	return fmt.Errorf("%w: %s: %v; move the file aside to start with empty metadata "+
		"(the node gets a new identity and its cursors restart: forwarders resume from what the central stream holds), "+
		"or restore it from a backup", ErrCorrupt, path, cause)
}

// check validates the opened file before anything trusts it: the recorded
// high-water mark must fit the file (else pages would be read past its end),
// every bucket and key must be reachable without a fault, and bbolt's own
// consistency check must pass. The store is small (KiB to a few MiB), so a
// full walk at open is cheap.
func (s *Store) check() (err error) {
	st, err := os.Stat(s.path)
	if err != nil {
		return fmt.Errorf("meta: stat %s: %w", s.path, err)
	}
	defer func() {
		if r := recover(); r != nil {
			err = corruptErr(s.path, fmt.Errorf("reading the file panicked: %v", r))
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return s.db.View(func(tx *bolt.Tx) error {
		if tx.Size() > st.Size() {
			return corruptErr(s.path, fmt.Errorf("file is %d bytes but its pages reach %d (truncated?)", st.Size(), tx.Size()))
		}
		if err := walk(tx.Cursor(), 0); err != nil {
			return corruptErr(s.path, err)
		}
		var errs []error
		for e := range tx.Check() {
			if len(errs) < 5 {
				errs = append(errs, e)
			}
		}
		if len(errs) > 0 {
			return corruptErr(s.path, errors.Join(errs...))
		}
		return nil
	})
}

// walk visits every key of a bucket and its nested buckets.
func walk(c *bolt.Cursor, depth int) error {
	if depth > 4 {
		return fmt.Errorf("buckets nested deeper than the layout allows")
	}
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil {
			b := c.Bucket().Bucket(k)
			if b == nil {
				return fmt.Errorf("key %q has no value and is not a bucket", k)
			}
			if err := walk(b.Cursor(), depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// init creates the buckets, checks the layout version and removes the
// buckets nothing reads any more.
func (s *Store) init() error {
	removed := -1 // topic configs deleted, -1 if there was no bucket
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range topLevelBucket {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		b := tx.Bucket(bucketOutpost)
		v := b.Get(keyFormat)
		switch {
		case v == nil:
			if err := b.Put(keyFormat, []byte{layoutVersion}); err != nil {
				return err
			}
		case len(v) != 1:
			return corruptErr(s.path, fmt.Errorf("layout version has %d bytes, want 1", len(v)))
		case v[0] > layoutVersion:
			return fmt.Errorf("%w: %s has layout version %d, this build knows up to %d; run a newer Outpost", ErrFormat, s.path, v[0], layoutVersion)
		}
		if old := tx.Bucket(bucketTopicsGone); old != nil {
			removed = old.Stats().KeyN
			return tx.DeleteBucket(bucketTopicsGone)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrFormat) {
			return err
		}
		return fmt.Errorf("meta: initialize %s: %w", s.path, err)
	}
	if removed >= 0 {
		s.log.Info("meta: removed the topics bucket: topic configs were written at every start and read by nothing (the node's config owns them)",
			"file", s.path, "topics", removed)
	}
	return nil
}

// Path returns the store's file.
func (s *Store) Path() string { return s.path }

// Close closes the file. It is idempotent; later calls return the first
// call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("meta: close %s: %w", s.path, err)
		}
	})
	return s.closeErr
}

// view runs fn in a read transaction.
func (s *Store) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.wrap(s.db.View(fn))
}

// update runs fn in a write transaction, committed (fsynced) on return.
func (s *Store) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.wrap(s.db.Update(fn))
}

// batch runs fn in a write transaction shared with concurrent callers. fn
// may run more than once and must be idempotent.
func (s *Store) batch(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.wrap(s.db.Batch(fn))
}

func (s *Store) wrap(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// clone copies a value out of a transaction: bbolt's slices point into the
// mmap and are invalid after the transaction ends.
func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}
