package log

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// File is what the log needs of an open file. Tests wrap it to inject short
// writes and failed syncs, or to remember the length at the last sync so that
// a power cut can be simulated by truncating to it.
type File interface {
	io.Writer
	io.ReaderAt
	// Sync makes written data durable (fdatasync on Linux).
	Sync() error
	Truncate(size int64) error
	Close() error
	// Size returns the current length of the file.
	Size() (int64, error)
}

// OpenFileFunc opens a file the way os.OpenFile does.
type OpenFileFunc func(name string, flag int, perm os.FileMode) (File, error)

// OSOpenFile opens a real file. Sync is fdatasync: the log never needs the
// file's mtime to be durable, and on SD cards the saved metadata write is
// measurable.
func OSOpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &osFile{f: f}, nil
}

type osFile struct{ f *os.File }

func (o *osFile) Write(p []byte) (int, error)             { return o.f.Write(p) }
func (o *osFile) ReadAt(p []byte, off int64) (int, error) { return o.f.ReadAt(p, off) }
func (o *osFile) Truncate(size int64) error               { return o.f.Truncate(size) }
func (o *osFile) Close() error                            { return o.f.Close() }

func (o *osFile) Sync() error {
	for {
		err := unix.Fdatasync(int(o.f.Fd()))
		if err != unix.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: o.f.Name(), Err: err}
			}
			return nil
		}
	}
}

func (o *osFile) Size() (int64, error) {
	st, err := o.f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// fdatasync syncs f (a segment or journal file at path), counts its
// latency and warns when it is slow, the first sign of a failing or worn
// SD card.
func (l *Log) fdatasync(f File, path string) (time.Duration, error) {
	t0 := time.Now()
	err := f.Sync()
	d := time.Since(t0)
	l.metrics.fsyncSeconds.Observe(d.Seconds())
	if d > time.Second {
		l.cfg.Logger.Warn("log: slow fdatasync; the storage may be failing or worn", "file", path, "took", d)
	}
	if err != nil {
		return d, fmt.Errorf("log: fdatasync %s: %w", path, err)
	}
	return d, nil
}

// SyncDir makes a directory's entries (created, renamed, removed files)
// durable. Exported for the metadata store, which keeps its file beside the
// log.
func SyncDir(dir string) error { return syncDir(dir) }

// syncDir makes a directory's entries (created, renamed, removed files)
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeFileAtomic writes a small file as tmp, fsync, rename, fsync dir, so a
// crash leaves either the old or the new content.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + tmpSuffix
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// mkdirAllSynced is os.MkdirAll that also syncs the parent of every
// directory it created, so that a data directory made at first start is
// still there after a power cut (a new directory's entry lives in its
// parent, which nothing else syncs).
func mkdirAllSynced(dir string) error {
	var created []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		created = append(created, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, d := range created {
		if err := syncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}
