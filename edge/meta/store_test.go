package meta_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-edge/outpost/edge/meta"
)

var ctx = context.Background()

// openStore opens a store at path and closes it at cleanup, checking that
// Close succeeds (and stays idempotent).
func openStore(tb testing.TB, path string, cfg meta.Config) *meta.Store {
	tb.Helper()
	s, err := meta.Open(path, cfg)
	if err != nil {
		tb.Fatalf("open %s: %v", path, err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
		if err := s.Close(); err != nil {
			tb.Errorf("second close: %v", err)
		}
	})
	return s
}

func TestReopenPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "meta.db")
	s, err := meta.Open(path, meta.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetCursor(ctx, "upstream", "telemetry", 3, 42); err != nil {
		t.Fatal(err)
	}
	if err := s.SetCursor(ctx, "peer:node-b", "alarms", 0, 7); err != nil {
		t.Fatal(err)
	}
	id, err := s.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetSite(ctx, "farm-7"); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "schemas", "telemetry-value/1", []byte(`{"type":"object"}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, path, meta.Config{})
	if off, ok, err := s.Cursor(ctx, "upstream", "telemetry", 3); err != nil || !ok || off != 42 {
		t.Fatalf("cursor upstream telemetry/3 = %d, %v, %v; want 42", off, ok, err)
	}
	if _, ok, err := s.Cursor(ctx, "upstream", "telemetry", 2); err != nil || ok {
		t.Fatalf("unset cursor: ok=%v err=%v", ok, err)
	}
	cs, err := s.Cursors(ctx, "peer:node-b")
	if err != nil || len(cs) != 1 || cs[meta.PartitionKey{Topic: "alarms", Partition: 0}] != 7 {
		t.Fatalf("cursors peer:node-b = %v, %v", cs, err)
	}
	names, err := s.CursorNames(ctx)
	if err != nil || strings.Join(names, ",") != "peer:node-b,upstream" {
		t.Fatalf("cursor names = %v, %v", names, err)
	}
	id2, err := s.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id2.NodeID != id.NodeID || id2.Site != "farm-7" || !id2.Created.Equal(id.Created) {
		t.Fatalf("identity after reopen %+v, before %+v", id2, id)
	}
	v, ok, err := s.Get(ctx, "schemas", "telemetry-value/1")
	if err != nil || !ok || string(v) != `{"type":"object"}` {
		t.Fatalf("kv after reopen: %q %v %v", v, ok, err)
	}
}

// TestTopicsBucketRemoved: Open deletes the topics bucket of files written
// before topic configs left the store (nothing read them), says so, and
// keeps everything else.
func TestTopicsBucketRemoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	s := openStore(t, path, meta.Config{})
	if err := s.SetCursor(ctx, "upstream", "telemetry", 0, 42); err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("topics"))
		if err != nil {
			return err
		}
		for _, name := range []string{"telemetry", "alarms"} {
			if err := b.Put([]byte(name), append([]byte{1}, `{"partitions":4,"updated":"2025-01-01T00:00:00Z"}`...)); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	var logs bytes.Buffer
	s = openStore(t, path, meta.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if !strings.Contains(logs.String(), "removed the topics bucket") || !strings.Contains(logs.String(), "topics=2") {
		t.Fatalf("removal not logged with its count:\n%s", logs.String())
	}
	if off, ok, err := s.Cursor(ctx, "upstream", "telemetry", 0); err != nil || !ok || off != 42 {
		t.Fatalf("cursor after the removal = %d %v %v, want 42", off, ok, err)
	}
	s.Close()
	db, err = bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte("topics")) != nil {
			return errors.New("the topics bucket is still there")
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	openStore(t, path, meta.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if strings.Contains(logs.String(), "removed") {
		t.Fatalf("a store without the bucket reports a removal:\n%s", logs.String())
	}
}

func TestCursorValidation(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "meta.db"), meta.Config{})
	cases := []struct {
		name, cursor, topic string
		partition           int32
		offset              int64
	}{
		{"empty cursor", "", "t", 0, 0},
		{"space in cursor", "a b", "t", 0, 0},
		{"bad topic", "c", "t/x", 0, 0},
		{"negative partition", "c", "t", -1, 0},
		{"negative offset", "c", "t", 0, -1},
	}
	for _, c := range cases {
		if err := s.SetCursor(ctx, c.cursor, c.topic, c.partition, c.offset); !errors.Is(err, meta.ErrBadName) && !errors.Is(err, meta.ErrBadValue) {
			t.Errorf("%s: SetCursor = %v", c.name, err)
		}
	}
	if err := s.SetCursor(ctx, "c", "t", 1, 5); err != nil {
		t.Fatal(err)
	}
	if err := s.SetCursor(ctx, "c", "t", 1, 3); err != nil { // moving back is allowed: consumers seek
		t.Fatal(err)
	}
	if off, _, _ := s.Cursor(ctx, "c", "t", 1); off != 3 {
		t.Fatalf("cursor after moving back = %d", off)
	}
	if err := s.DeleteCursor(ctx, "c", "t", 1); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Cursor(ctx, "c", "t", 1); ok {
		t.Fatal("cursor still there after DeleteCursor")
	}
	s.SetCursor(ctx, "c", "t", 2, 1)
	if err := s.DeleteCursors(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if cs, err := s.Cursors(ctx, "c"); err != nil || len(cs) != 0 {
		t.Fatalf("cursors after DeleteCursors: %v %v", cs, err)
	}
}

// TestConcurrentSetCursor commits from many goroutines at once (run it
// with -race): every last write of each goroutine's partition must be
// there, and writes to a shared partition must leave one of the written
// values.
func TestConcurrentSetCursor(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "meta.db"), meta.Config{})
	const writers, perWriter = 32, 50
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	t0 := time.Now()
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				if err := s.SetCursor(ctx, "upstream", "t", int32(w), int64(i)); err != nil {
					errc <- err
					return
				}
				if err := s.SetCursor(ctx, "shared", "t", 0, int64(w*perWriter+i)); err != nil {
					errc <- err
					return
				}
				if _, _, err := s.Cursor(ctx, "upstream", "t", int32(w)); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	t.Logf("%d SetCursor calls from %d goroutines in %v", 2*writers*perWriter, writers, time.Since(t0))
	cs, err := s.Cursors(ctx, "upstream")
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != writers {
		t.Fatalf("got %d cursors, want %d", len(cs), writers)
	}
	for w := range writers {
		if off := cs[meta.PartitionKey{Topic: "t", Partition: int32(w)}]; off != perWriter-1 {
			t.Errorf("partition %d: offset %d, want %d", w, off, perWriter-1)
		}
	}
	off, ok, err := s.Cursor(ctx, "shared", "t", 0)
	if err != nil || !ok || off%perWriter != perWriter-1 {
		t.Fatalf("shared cursor = %d %v %v: want some writer's last value", off, ok, err)
	}
}

func TestIdentity(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	s := openStore(t, path, meta.Config{})
	// Concurrent first calls agree on one ID.
	ids := make([]meta.Identity, 8)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			id, err := s.Identity(ctx)
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id.NodeID != ids[0].NodeID {
			t.Fatalf("concurrent Identity calls disagree: %q vs %q", id.NodeID, ids[0].NodeID)
		}
	}
	if !regexp.MustCompile(`^[a-z2-7]{16}$`).MatchString(ids[0].NodeID) {
		t.Fatalf("node ID %q is not 16 of [a-z2-7]", ids[0].NodeID)
	}
	if ids[0].Site != "" || time.Since(ids[0].Created) > time.Minute {
		t.Fatalf("fresh identity: %+v", ids[0])
	}
	for _, bad := range []string{"", "a.b", "a b", "a*", strings.Repeat("x", 65)} {
		if err := s.SetSite(ctx, bad); !errors.Is(err, meta.ErrBadName) {
			t.Errorf("SetSite(%q) = %v, want ErrBadName", bad, err)
		}
	}
	if err := s.SetSite(ctx, "wind_park-3"); err != nil {
		t.Fatal(err)
	}
	id, err := s.Identity(ctx)
	if err != nil || id.Site != "wind_park-3" || id.NodeID != ids[0].NodeID {
		t.Fatalf("after SetSite: %+v %v", id, err)
	}
	// Another store gets another ID.
	other := openStore(t, filepath.Join(t.TempDir(), "meta.db"), meta.Config{})
	oid, err := other.Identity(ctx)
	if err != nil || oid.NodeID == id.NodeID {
		t.Fatalf("two stores share node ID %q (%v)", oid.NodeID, err)
	}
}

// TestValuesCopiedOut checks that returned slices belong to the caller:
// mutating them does not change the store, and they stay intact after
// their transaction and after the file grows (bbolt remaps it, which would
// invalidate any slice still pointing into the old mapping).
func TestValuesCopiedOut(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "meta.db"), meta.Config{})
	in := []byte("schema-v1")
	if err := s.Put(ctx, "b", "k", in); err != nil {
		t.Fatal(err)
	}
	in[0] = 'X' // the store keeps its own copy of the input
	got, _, err := s.Get(ctx, "b", "k")
	if err != nil || string(got) != "schema-v1" {
		t.Fatalf("get after mutating input: %q %v", got, err)
	}
	got[0] = 'Y'
	again, _, _ := s.Get(ctx, "b", "k")
	if string(again) != "schema-v1" {
		t.Fatalf("mutating a returned value changed the store: %q", again)
	}
	all, err := s.All(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	all["k"][0] = 'Z'
	// Grow the file well past its first mapping.
	big := bytes.Repeat([]byte{0xAB}, 256<<10)
	for i := range 40 {
		if err := s.Put(ctx, "big", fmt.Sprint(i), big); err != nil {
			t.Fatal(err)
		}
	}
	if string(again) != "schema-v1" || string(got) != "Ychema-v1" {
		t.Fatalf("returned values changed after the file grew: %q %q", again, got)
	}
	if v, _, _ := s.Get(ctx, "b", "k"); string(v) != "schema-v1" {
		t.Fatalf("store value changed: %q", v)
	}
	v, ok, err := s.Get(ctx, "big", "39")
	if err != nil || !ok || !bytes.Equal(v, big) {
		t.Fatalf("big value: %d bytes %v %v", len(v), ok, err)
	}
	// An empty value is stored and found.
	if err := s.Put(ctx, "b", "empty", nil); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.Get(ctx, "b", "empty"); err != nil || !ok || len(v) != 0 {
		t.Fatalf("empty value: %q %v %v", v, ok, err)
	}
	if _, ok, err := s.Get(ctx, "nobucket", "k"); err != nil || ok {
		t.Fatalf("missing bucket: %v %v", ok, err)
	}
	if err := s.Delete(ctx, "b", "k"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Get(ctx, "b", "k"); ok {
		t.Fatal("key still there after Delete")
	}
	if err := s.Put(ctx, "b", "", []byte("x")); !errors.Is(err, meta.ErrBadName) {
		t.Fatalf("empty key: %v", err)
	}
	if err := s.Put(ctx, "b c", "k", []byte("x")); !errors.Is(err, meta.ErrBadName) {
		t.Fatalf("bad bucket name: %v", err)
	}
}

func TestClosed(t *testing.T) {
	s, err := meta.Open(filepath.Join(t.TempDir(), "meta.db"), meta.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	checks := map[string]error{
		"SetCursor": s.SetCursor(ctx, "c", "t", 0, 1),
		"Put":       s.Put(ctx, "b", "k", nil),
	}
	_, _, checks["Cursor"] = s.Cursor(ctx, "c", "t", 0)
	_, checks["Identity"] = s.Identity(ctx)
	_, _, checks["Get"] = s.Get(ctx, "b", "k")
	for name, err := range checks {
		if !errors.Is(err, meta.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

func TestContextCanceled(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "meta.db"), meta.Config{})
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.SetCursor(cctx, "c", "t", 0, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("SetCursor with canceled ctx: %v", err)
	}
	if _, ok, _ := s.Cursor(ctx, "c", "t", 0); ok {
		t.Fatal("a canceled SetCursor was written")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := meta.DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for field, c := range map[string]meta.Config{
		"Timeout":       {Timeout: -1},
		"BatchMaxDelay": {BatchMaxDelay: 2 * time.Second},
		"BatchMaxSize":  {BatchMaxSize: -1},
	} {
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", c, err, field)
		}
		if _, err := meta.Open(filepath.Join(t.TempDir(), "m.db"), c); err == nil {
			t.Errorf("Open accepted %+v", c)
		}
	}
}

// TestLockContention opens the file from a second process (this test
// binary re-executed) while this one holds it.
func TestLockContention(t *testing.T) {
	if path := os.Getenv("OUTPOST_META_LOCK_HELPER"); path != "" {
		_, err := meta.Open(path, meta.Config{Timeout: 200 * time.Millisecond})
		fmt.Fprintf(os.Stderr, "HELPER-ERR: %v\n", err)
		if errors.Is(err, meta.ErrLocked) {
			os.Exit(3)
		}
		os.Exit(1)
	}
	path := filepath.Join(t.TempDir(), "meta.db")
	openStore(t, path, meta.Config{})

	// In-process: a second handle on the same file conflicts too (flock
	// locks are per open file description).
	t0 := time.Now()
	_, err := meta.Open(path, meta.Config{Timeout: 100 * time.Millisecond})
	if !errors.Is(err, meta.ErrLocked) || !strings.Contains(err.Error(), path) {
		t.Fatalf("second open: %v; want ErrLocked naming %s", err, path)
	}
	if d := time.Since(t0); d > 5*time.Second { // bbolt stops one 50ms retry early
		t.Fatalf("second open failed after %v, want about the 100ms timeout", d)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestLockContention$", "-test.count=1")
	cmd.Env = append(os.Environ(), "OUTPOST_META_LOCK_HELPER="+path)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("helper process: %v, output:\n%s", err, out)
	}
	if !strings.Contains(string(out), path) || !strings.Contains(string(out), "another edge node") {
		t.Fatalf("helper's error does not name the file and the likely cause:\n%s", out)
	}
	t.Logf("helper: %s", strings.TrimSpace(string(out)))
}

func TestLoggerNilIsFine(t *testing.T) {
	var buf bytes.Buffer
	s := openStore(t, filepath.Join(t.TempDir(), "meta.db"), meta.Config{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	id, err := s.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), id.NodeID) {
		t.Fatalf("generating the identity was not logged: %q", buf.String())
	}
}

// TestRandomizedCursorModel applies random cursor operations to the store
// and to a map, reopening now and then, and compares.
func TestRandomizedCursorModel(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	path := filepath.Join(t.TempDir(), "meta.db")
	s, err := meta.Open(path, meta.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	model := map[string]map[meta.PartitionKey]int64{}
	names := []string{"upstream", "peer:b", "api"}
	for i := range 200 {
		name := names[rng.IntN(len(names))]
		pk := meta.PartitionKey{Topic: []string{"a", "b.c", "d_e"}[rng.IntN(3)], Partition: int32(rng.IntN(5))}
		switch r := rng.IntN(10); {
		case r < 7:
			off := rng.Int64N(1 << 40)
			if err := s.SetCursor(ctx, name, pk.Topic, pk.Partition, off); err != nil {
				t.Fatalf("seed %d step %d: %v", seed, i, err)
			}
			if model[name] == nil {
				model[name] = map[meta.PartitionKey]int64{}
			}
			model[name][pk] = off
		case r < 9:
			if err := s.DeleteCursor(ctx, name, pk.Topic, pk.Partition); err != nil {
				t.Fatal(err)
			}
			delete(model[name], pk)
		default:
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if s, err = meta.Open(path, meta.Config{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, name := range names {
		got, err := s.Cursors(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(model[name]) {
			t.Fatalf("seed %d: cursor %s has %d positions, model %d", seed, name, len(got), len(model[name]))
		}
		for k, v := range model[name] {
			if got[k] != v {
				t.Fatalf("seed %d: cursor %s %v = %d, model %d", seed, name, k, got[k], v)
			}
		}
	}
}

// TestCloseDuringWrites closes the store while goroutines commit: every
// call returns nil or ErrClosed, nothing panics, and what returned nil is
// there after reopening.
func TestCloseDuringWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	s, err := meta.Open(path, meta.Config{})
	if err != nil {
		t.Fatal(err)
	}
	last := make([]atomic.Int64, 8)
	var wg sync.WaitGroup
	started := make(chan struct{}, len(last))
	for part := range last {
		last[part].Store(-1)
		wg.Go(func() {
			for off := int64(0); ; off++ {
				err := s.SetCursor(ctx, "upstream", "t", int32(part), off)
				if off == 0 {
					started <- struct{}{}
				}
				if errors.Is(err, meta.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("SetCursor: %v", err)
					return
				}
				last[part].Store(off)
			}
		})
	}
	for range last {
		<-started
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	s = openStore(t, path, meta.Config{})
	cs, err := s.Cursors(ctx, "upstream")
	if err != nil {
		t.Fatal(err)
	}
	for part := range last {
		if got, want := cs[meta.PartitionKey{Topic: "t", Partition: int32(part)}], last[part].Load(); got < want {
			t.Errorf("partition %d: %d after reopen, but %d returned nil", part, got, want)
		}
	}
}
