package log_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	elog "github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/edge/log/logtest"
	"github.com/outpost-edge/outpost/internal/polltest"
)

// long reports whether the long variants (more rounds) were asked for.
func long() bool { return os.Getenv("OUTPOST_LONG") != "" }

func seedFor(t *testing.T) uint64 {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("OUTPOST_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d (rerun with OUTPOST_SEED=%d)", seed, seed)
		}
	})
	return seed
}

func TestFailedFsyncIsSticky(t *testing.T) {
	for _, journal := range []bool{false, true} {
		t.Run(fmt.Sprintf("journal=%v", journal), func(t *testing.T) { testFailedFsyncIsSticky(t, journal) })
	}
}

// testFailedFsyncIsSticky: with the journal, the failed fdatasync is the
// journal's, and every partition refuses appends after it.
func testFailedFsyncIsSticky(t *testing.T, journal bool) {
	fs := logtest.NewFS()
	dir := t.TempDir()
	cfg := elog.Config{OpenFile: fs.Open, SegmentMaxBytes: 16 << 10, Journal: journal, CommitWindow: -1}
	l, err := elog.Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, l, "t", 0)
	other := mustPartition(t, l, "u", 0)
	ctx := context.Background()
	for i := 0; i < 50; i++ {
		if _, err := p.Append(ctx, []elog.Record{rec(i)}); err != nil {
			t.Fatal(err)
		}
	}
	fs.FailSyncs(1)
	if _, err := p.Append(ctx, []elog.Record{rec(50)}); err == nil {
		t.Fatal("append with a failed fsync returned nil: an ack for a record that is not durable")
	}
	// Sticky: the next appends fail too, although fsync would work now.
	for i := 0; i < 3; i++ {
		_, err := p.Append(ctx, []elog.Record{rec(51)})
		if !errors.Is(err, elog.ErrPartitionFailed) {
			t.Fatalf("append after failed fsync: %v, want ErrPartitionFailed", err)
		}
	}
	if _, err := other.Append(ctx, []elog.Record{rec(1)}); journal && !errors.Is(err, elog.ErrPartitionFailed) {
		t.Fatalf("append to another partition after the journal's fsync failed: %v, want ErrPartitionFailed", err)
	}
	if err := l.Health(); !errors.Is(err, elog.ErrPartitionFailed) {
		t.Fatalf("Health = %v", err)
	}
	if p.EndOffset() != 50 {
		t.Fatalf("end %d: the failed record must not become visible", p.EndOffset())
	}
	l.Close()
	// Reopen: every acknowledged record is there, and appends work again.
	l2 := openLog(t, dir, elog.Config{SegmentMaxBytes: 16 << 10, Journal: journal})
	p2, _ := l2.Partition("t", 0)
	if p2.EndOffset() < 50 {
		t.Fatalf("lost acknowledged records: end %d", p2.EndOffset())
	}
	if _, err := p2.Append(ctx, []elog.Record{rec(99)}); err != nil {
		t.Fatal(err)
	}
}

func TestShortWriteIsSticky(t *testing.T) {
	fs := logtest.NewFS()
	dir := t.TempDir()
	l, err := elog.Open(dir, elog.Config{OpenFile: fs.Open})
	if err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, l, "t", 0)
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		if _, err := p.Append(ctx, []elog.Record{rec(i)}); err != nil {
			t.Fatal(err)
		}
	}
	fs.FailWriteAfter(40)
	if _, err := p.Append(ctx, []elog.Record{rec(20)}); err == nil {
		t.Fatal("append with a short write returned nil")
	}
	if _, err := p.Append(ctx, []elog.Record{rec(21)}); !errors.Is(err, elog.ErrPartitionFailed) {
		t.Fatalf("append after short write: %v, want ErrPartitionFailed", err)
	}
	l.Close()
	// The half-written frame is a torn tail: cut at reopen, nothing acked lost.
	l2 := openLog(t, dir, elog.Config{})
	p2, _ := l2.Partition("t", 0)
	if p2.EndOffset() != 20 {
		t.Fatalf("end after reopen %d, want 20", p2.EndOffset())
	}
}

// TestHeldFsyncHoldsAppend: under SyncAlways, Append does not return (and
// readers do not see the record) until the fsync that covers it completes.
func TestHeldFsyncHoldsAppend(t *testing.T) {
	fs := logtest.NewFS()
	l := openLog(t, t.TempDir(), elog.Config{OpenFile: fs.Open})
	p := mustPartition(t, l, "t", 0)
	release := fs.HoldSyncs()
	defer release()
	done := make(chan error, 1)
	go func() {
		_, err := p.Append(context.Background(), []elog.Record{rec(0)})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Append returned (%v) while its fsync was held back", err)
	case <-time.After(200 * time.Millisecond):
	}
	if p.EndOffset() != 0 {
		t.Fatalf("record visible to readers before it is durable")
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if p.EndOffset() != 1 {
		t.Fatalf("end %d after release", p.EndOffset())
	}
}

// TestPowerLoss appends from many goroutines under SyncAlways, cuts the
// power at a random moment (every file truncated to its length at its last
// fsync, sometimes followed by garbage), reopens, and checks that every
// acknowledged record is present and offsets are contiguous.
func TestPowerLoss(t *testing.T) {
	seed := seedFor(t)
	rnd := rand.New(rand.NewPCG(seed, 7))
	rounds := 20
	if long() {
		rounds = 300
	}
	dir := t.TempDir()
	cfg := elog.Config{SegmentMaxBytes: 16 << 10, IndexIntervalBytes: 1024, JournalFileBytes: 96 << 10}
	acked := map[int64]string{} // offset -> value, across rounds (same dir)
	journaled := 0
	for round := 0; round < rounds; round++ {
		fs := logtest.NewFS()
		cfg.OpenFile = fs.Open
		// Half the rounds write through the journal (small files, so that
		// they wrap and checkpoint), with a commit window of 0–3 ms; a log
		// written with the journal is opened without it and the other way
		// round too.
		cfg.Journal = rnd.IntN(2) == 0
		cfg.CommitWindow = time.Duration(rnd.IntN(4))*time.Millisecond - time.Nanosecond
		if cfg.Journal {
			journaled++
		}
		l, err := elog.Open(dir, cfg)
		if err != nil {
			t.Fatalf("round %d: open: %v", round, err)
		}
		if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 1}); err != nil {
			t.Fatal(err)
		}
		p, _ := l.Partition("t", 0)
		verify(t, round, p, acked)

		ctx, cancel := context.WithCancel(context.Background())
		var mu sync.Mutex
		var wg sync.WaitGroup
		for g := 0; g < 1+rnd.IntN(8); g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ctx.Err() == nil; i++ {
					v := fmt.Sprintf("r%d-g%d-%d", round, g, i)
					off, err := p.Append(ctx, []elog.Record{{Value: []byte(v)}})
					if err != nil {
						return
					}
					mu.Lock()
					acked[off] = v
					mu.Unlock()
				}
			}()
		}
		time.Sleep(time.Duration(rnd.IntN(30)) * time.Millisecond) // the random moment of the cut
		fs.Crash()
		cancel()
		wg.Wait()
		l.Close() // writes nothing: the FS is dead; releases the lock
		fs.PowerLoss(t, rnd)
	}
	l := openLog(t, dir, elog.Config{SegmentMaxBytes: 16 << 10, IndexIntervalBytes: 1024})
	if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("t", 0)
	verify(t, rounds, p, acked)
	t.Logf("seed %d: %d rounds (%d through the journal), %d records acknowledged", seed, rounds, journaled, len(acked))
	if len(acked) == 0 || journaled == 0 {
		t.Fatal("no append was acknowledged or no round used the journal: the test tested nothing")
	}
}

// verify checks acked ⊆ recovered, value for value, and contiguity.
func verify(t *testing.T, round int, p *elog.Partition, acked map[int64]string) {
	t.Helper()
	got := map[int64]string{}
	next := p.StartOffset()
	for next < p.EndOffset() {
		recs, err := p.Read(context.Background(), next, 1<<20)
		if err != nil {
			t.Fatalf("round %d: read at %d: %v", round, next, err)
		}
		for _, r := range recs {
			if r.Offset != next {
				t.Fatalf("round %d: offset %d, want %d (gap or reorder)", round, r.Offset, next)
			}
			got[r.Offset] = string(r.Value)
			next++
		}
	}
	for off, v := range acked {
		if got[off] != v {
			t.Fatalf("round %d: acknowledged record at offset %d lost or changed: have %q, want %q (end %d)", round, off, got[off], v, p.EndOffset())
		}
	}
}

const (
	killHelperEnv  = "OUTPOST_LOG_KILL_HELPER"
	killJournalEnv = "OUTPOST_LOG_KILL_JOURNAL"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(killHelperEnv); dir != "" {
		killHelper(dir)
		return
	}
	os.Exit(m.Run())
}

// killHelper appends forever under SyncAlways from 8 goroutines over 2
// partitions and writes "partition offset value" for each acknowledged
// record to stdout, until it is killed.
func killHelper(dir string) {
	l, err := elog.Open(dir, elog.Config{SegmentMaxBytes: 32 << 10, IndexIntervalBytes: 1024,
		Journal: os.Getenv(killJournalEnv) != "", JournalFileBytes: 160 << 10, CommitWindow: time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper open:", err)
		os.Exit(3)
	}
	if err := l.CreateTopic("k", elog.TopicConfig{Partitions: 2}); err != nil {
		fmt.Fprintln(os.Stderr, "helper create:", err)
		os.Exit(3)
	}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	pid := os.Getpid()
	for g := 0; g < 8; g++ {
		go func() {
			p, _ := l.Partition("k", int32(g%2))
			for i := 0; ; i++ {
				v := fmt.Sprintf("p%d-g%d-%d", pid, g, i)
				off, err := p.Append(context.Background(), []elog.Record{{Value: []byte(v)}})
				if err != nil {
					fmt.Fprintln(os.Stderr, "helper append:", err)
					os.Exit(4)
				}
				mu.Lock()
				fmt.Fprintf(out, "%d %d %s\n", g%2, off, v)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	select {}
}

// TestKill runs a helper process that appends under SyncAlways and reports
// each acknowledged offset over a pipe, SIGKILLs it at a random moment,
// reopens the log and checks acknowledged ⊆ recovered and contiguity.
func TestKill(t *testing.T) {
	if testing.Short() {
		t.Skip("kill test builds on process re-exec; run without -short")
	}
	seed := seedFor(t)
	rnd := rand.New(rand.NewPCG(seed, 11))
	rounds := 20
	if long() {
		rounds = 200
	}
	dir := t.TempDir()
	acked := [2]map[int64]string{{}, {}}
	for round := 0; round < rounds; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), killHelperEnv+"="+dir)
		if round%2 == 1 {
			cmd.Env = append(cmd.Env, killJournalEnv+"=1")
		}
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Kill after a random number of acknowledgements, so the moment
		// falls anywhere in the commit cycle.
		target := 1 + rnd.IntN(400)
		n := 0
		deadline := time.After(20 * time.Second)
	read:
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					t.Fatalf("round %d: helper exited early", round)
				}
				record(t, acked, line)
				if n++; n >= target {
					break read
				}
			case <-deadline:
				t.Fatalf("round %d: helper made no progress", round)
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		for line := range lines { // acks written before the kill count too
			record(t, acked, line)
		}
		cmd.Wait()

		// Reopened with the journal in some rounds and without in others,
		// whichever the helper used.
		l, err := elog.Open(dir, elog.Config{SegmentMaxBytes: 32 << 10, IndexIntervalBytes: 1024,
			Journal: rnd.IntN(2) == 0, JournalFileBytes: 160 << 10})
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		for part := int32(0); part < 2; part++ {
			p, err := l.Partition("k", part)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			verify(t, round, p, acked[part])
		}
		l.Close()
	}
}

func record(t *testing.T, acked [2]map[int64]string, line string) {
	f := strings.Fields(line)
	if len(f) != 3 {
		t.Fatalf("bad helper line %q", line)
	}
	part, _ := strconv.Atoi(f[0])
	off, _ := strconv.ParseInt(f[1], 10, 64)
	if prev, dup := acked[part][off]; dup && prev != f[2] {
		t.Fatalf("offset %d/%d acknowledged twice: %q and %q", part, off, prev, f[2])
	}
	acked[part][off] = f[2]
}

// TestDoneOrderOnFailure: done callbacks of one partition come in
// AppendAsync order on the failure path too: an append queued behind a
// round whose fdatasync fails is failed after that round, not before.
func TestDoneOrderOnFailure(t *testing.T) {
	fs := logtest.NewFS()
	l := openLogNoCheck(t, t.TempDir(), elog.Config{OpenFile: fs.Open})
	p := mustPartition(t, l, "t", 0)
	release := fs.HoldSyncs()
	fs.FailSyncs(1)
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	add := func(name string) {
		wg.Add(1)
		err := p.AppendAsync(context.Background(), []elog.Record{{Value: []byte(name)}}, func(_ int64, err error) {
			if err == nil {
				t.Errorf("%s: append succeeded through a failed fsync", name)
			}
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			wg.Done()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	add("first")
	waitFor(t, 5*time.Second, func() error {
		if fs.Waiting() == 0 {
			return errors.New("first round not in fdatasync yet")
		}
		return nil
	})
	add("second") // queued behind the round whose fsync will fail
	release()
	wg.Wait()
	if len(order) != 2 || order[0] != "first" {
		t.Fatalf("done order %v, want [first second]", order)
	}
}

func waitFor(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	polltest.Until(t, timeout, f)
}
