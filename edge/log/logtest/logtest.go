package logtest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"

	elog "github.com/outpost-edge/outpost/edge/log"
)

// ErrInjected is the error injected faults return.
var ErrInjected = errors.New("logtest: injected fault")

// FS opens files through the operating system and wraps them. The zero value
// is not usable; call NewFS.
type FS struct {
	mu     sync.Mutex
	synced map[string]int64 // path -> length at last successful sync
	// shadow keeps, per path, bytes a truncate below the synced length
	// removed: until the next sync they are what a torn page may show
	// again (the content the disk still holds).
	shadow     map[string]shadowBytes
	failSyncs  int           // fail this many upcoming syncs
	failWrite  int64         // fail a write once this many more bytes are written; -1 off
	hold       chan struct{} // if non-nil, Sync waits for it to be closed
	syncCount  int
	writeBytes int64
	dead       bool // after Crash: nothing reaches the files any more
	waiting    int  // syncs blocked in HoldSyncs
}

// Waiting returns how many fsyncs are blocked by HoldSyncs now.
func (fs *FS) Waiting() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.waiting
}

// Crash makes every later write, sync and truncate fail without touching the
// file: the process is gone, only what is on disk remains. Follow it with
// PowerLoss to drop what was not synced.
func (fs *FS) Crash() {
	fs.mu.Lock()
	fs.dead = true
	fs.mu.Unlock()
}

func (fs *FS) isDead() bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.dead
}

// NewFS returns a file layer with no faults armed.
func NewFS() *FS {
	return &FS{synced: make(map[string]int64), shadow: make(map[string]shadowBytes), failWrite: -1}
}

type shadowBytes struct {
	off  int64
	data []byte
}

// Open is an elog.OpenFileFunc.
func (fs *FS) Open(name string, flag int, perm os.FileMode) (elog.File, error) {
	f, err := elog.OSOpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	fs.mu.Lock()
	if _, ok := fs.synced[name]; !ok {
		// What existed before this FS saw the file counts as durable: it was
		// written by an earlier, cleanly closed generation.
		size, err := f.Size()
		if err != nil {
			fs.mu.Unlock()
			f.Close()
			return nil, err
		}
		fs.synced[name] = size
	}
	fs.mu.Unlock()
	return &file{File: f, fs: fs, name: name}, nil
}

// FailSyncs makes the next n fsyncs fail with ErrInjected.
func (fs *FS) FailSyncs(n int) {
	fs.mu.Lock()
	fs.failSyncs = n
	fs.mu.Unlock()
}

// FailWriteAfter makes a write fail once n more bytes have been written; the
// bytes before the limit are written (a short write), as a full disk does.
func (fs *FS) FailWriteAfter(n int64) {
	fs.mu.Lock()
	fs.failWrite = n
	fs.mu.Unlock()
}

// HoldSyncs makes every fsync wait until release is called.
func (fs *FS) HoldSyncs() (release func()) {
	ch := make(chan struct{})
	fs.mu.Lock()
	fs.hold = ch
	fs.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			fs.mu.Lock()
			fs.hold = nil
			fs.mu.Unlock()
			close(ch)
		})
	}
}

// Syncs returns how many fsyncs succeeded.
func (fs *FS) Syncs() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.syncCount
}

// PowerLoss truncates every file the FS has seen to its length at its last
// successful fsync, as a power cut would leave it, and, if rnd is not nil,
// sometimes appends garbage where the unsynced bytes were (a disk may
// persist part of a write, or garbage). Call it after abandoning the log
// without Close (the process "died").
func (fs *FS) PowerLoss(tb testing.TB, rnd *rand.Rand) {
	tb.Helper()
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for name, size := range fs.synced {
		st, err := os.Stat(name)
		if err != nil {
			continue // removed since
		}
		if st.Size() <= size {
			continue
		}
		if err := os.Truncate(name, size); err != nil {
			tb.Fatalf("power loss: truncate %s: %v", name, err)
		}
		if rnd != nil && rnd.IntN(3) == 0 {
			garbage := make([]byte, 1+rnd.IntN(int(min(st.Size()-size, 4096))))
			for i := range garbage {
				garbage[i] = byte(rnd.IntN(256))
			}
			f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				tb.Fatalf("power loss: %v", err)
			}
			f.Write(garbage)
			f.Close()
		}
	}
	fs.synced = make(map[string]int64)
	fs.shadow = make(map[string]shadowBytes)
}

// PageSize is the unit PowerLossTorn tears files in.
const PageSize = 4096

// TornStats counts what PowerLossTorn did to the unsynced pages.
type TornStats struct{ Kept, Zeroed, Stale, Files int }

// PowerLossTorn simulates a power cut that writes back an arbitrary subset
// of the unsynced pages, in no order, as the page cache, flash translation
// layers and XFS may: in every file, each PageSize page holding bytes past
// the file's length at its last successful fsync is independently kept as
// written, zeroed, or left stale (the bytes the disk held at the last sync:
// what a truncate since removed, else zeros); the file's length is kept or
// cut back to a random point after the synced length. Bytes before the
// synced length are never touched. Call it after abandoning the log
// without Close (the process "died").
func (fs *FS) PowerLossTorn(tb testing.TB, rnd *rand.Rand) TornStats {
	tb.Helper()
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var st TornStats
	for name, synced := range fs.synced {
		info, err := os.Stat(name)
		if err != nil {
			continue // removed since
		}
		size := info.Size()
		if size <= synced {
			continue
		}
		st.Files++
		data, err := os.ReadFile(name)
		if err != nil {
			tb.Fatalf("power loss: %v", err)
		}
		sh := fs.shadow[name]
		for page := synced / PageSize * PageSize; page < size; page += PageSize {
			from, to := max(page, synced), min(page+PageSize, size)
			switch rnd.IntN(3) {
			case 0:
				st.Kept++
			case 1:
				st.Zeroed++
				clear(data[from:to])
			case 2:
				st.Stale++
				for i := from; i < to; i++ {
					data[i] = 0
					if j := i - sh.off; j >= 0 && j < int64(len(sh.data)) {
						data[i] = sh.data[j]
					}
				}
			}
		}
		if rnd.IntN(2) == 0 {
			data = data[:synced+rnd.Int64N(size-synced+1)]
		}
		if err := os.WriteFile(name, data, 0o644); err != nil {
			tb.Fatalf("power loss: %v", err)
		}
	}
	fs.synced = make(map[string]int64)
	fs.shadow = make(map[string]shadowBytes)
	return st
}

type file struct {
	elog.File
	fs   *FS
	name string
}

func (f *file) Write(p []byte) (int, error) {
	if f.fs.isDead() {
		return 0, ErrInjected
	}
	f.fs.mu.Lock()
	limit := f.fs.failWrite
	if limit >= 0 && int64(len(p)) > limit {
		f.fs.failWrite = -1
		f.fs.mu.Unlock()
		n, _ := f.File.Write(p[:limit])
		return n, fmt.Errorf("%w: short write after %d bytes", ErrInjected, n)
	}
	if limit >= 0 {
		f.fs.failWrite -= int64(len(p))
	}
	f.fs.writeBytes += int64(len(p))
	f.fs.mu.Unlock()
	return f.File.Write(p)
}

func (f *file) Sync() error {
	f.fs.mu.Lock()
	hold := f.fs.hold
	f.fs.mu.Unlock()
	if hold != nil {
		f.fs.mu.Lock()
		f.fs.waiting++
		f.fs.mu.Unlock()
		<-hold
		f.fs.mu.Lock()
		f.fs.waiting--
		f.fs.mu.Unlock()
	}
	if f.fs.isDead() {
		return ErrInjected
	}
	f.fs.mu.Lock()
	if f.fs.failSyncs > 0 {
		f.fs.failSyncs--
		f.fs.mu.Unlock()
		return fmt.Errorf("%w: fsync %s", ErrInjected, f.name)
	}
	f.fs.mu.Unlock()
	// Measure before syncing: bytes written after this point are not covered.
	size, err := f.File.Size()
	if err != nil {
		return err
	}
	if err := f.File.Sync(); err != nil {
		return err
	}
	f.fs.mu.Lock()
	if size > f.fs.synced[f.name] {
		f.fs.synced[f.name] = size
	}
	delete(f.fs.shadow, f.name)
	f.fs.syncCount++
	f.fs.mu.Unlock()
	return nil
}

func (f *file) Truncate(size int64) error {
	if f.fs.isDead() {
		return ErrInjected
	}
	f.fs.mu.Lock()
	if synced := f.fs.synced[f.name]; synced > size {
		if _, ok := f.fs.shadow[f.name]; !ok {
			old := make([]byte, synced-size)
			n, _ := f.File.ReadAt(old, size)
			f.fs.shadow[f.name] = shadowBytes{off: size, data: old[:n]}
		}
	}
	f.fs.mu.Unlock()
	if err := f.File.Truncate(size); err != nil {
		return err
	}
	// A truncate is not durable until the next fsync; shorter is safer to
	// assume for the power-loss model only if it was synced, so keep the
	// recorded length no larger than the new size.
	f.fs.mu.Lock()
	if f.fs.synced[f.name] > size {
		f.fs.synced[f.name] = size
	}
	f.fs.mu.Unlock()
	return nil
}
