package mqtt_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/edge/log"
)

// failingSync makes a held fdatasync fail once released.
type failingSync struct {
	log.File
	g *gate
}

func (f *failingSync) Sync() error {
	if err := f.File.(*gatedFile).Sync(); err != nil {
		return err
	}
	if strings.HasSuffix(f.File.(*gatedFile).name, ".log") && f.g.failNext.Load() {
		return errors.New("injected fdatasync failure")
	}
	return nil
}

// TestLogDoneOrderOnFailure checks edge/log's contract that done callbacks
// of one partition come in AppendAsync order, in the failure path: when an
// fdatasync fails, appends queued behind the failing round must not be
// failed before the round itself. The hook does not depend on it (its
// session queue restores arrival order), so this documents a log bug
// rather than guarding ingest; it runs with OUTPOST_KNOWN_BUGS=1.
func TestLogDoneOrderOnFailure(t *testing.T) {
	if os.Getenv("OUTPOST_KNOWN_BUGS") == "" {
		t.Skip("documents an edge/log bug (failure-path done order); set OUTPOST_KNOWN_BUGS=1")
	}
	g := newGate()
	cfg := log.DefaultConfig()
	cfg.OpenFile = func(name string, flag int, perm os.FileMode) (log.File, error) {
		f, err := g.openFile(name, flag, perm)
		if err != nil {
			return nil, err
		}
		return &failingSync{File: f, g: g}, nil
	}
	l, err := log.Open(t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.CreateTopic("t", log.TopicConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("t", 0)
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	add := func(name string) {
		wg.Add(1)
		if err := p.AppendAsync(context.Background(), []log.Record{{Value: []byte(name)}}, func(_ int64, err error) {
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			wg.Done()
		}); err != nil {
			t.Fatal(err)
		}
	}
	g.hold(func(name string) bool { return strings.HasSuffix(name, ".log") })
	g.failNext.Store(true)
	add("first")
	select {
	case <-g.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("no fsync")
	}
	add("second") // queued behind the round whose fsync will fail
	g.open()
	wg.Wait()
	if order[0] != "first" {
		t.Fatalf("done order %v: the append queued behind a failed round was failed before the round", order)
	}
}
