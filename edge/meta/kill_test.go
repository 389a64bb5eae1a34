package meta_test

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/edge/meta"
)

// TestKillDuringSetCursor runs SetCursor in a helper process from several
// goroutines, each printing every offset whose SetCursor returned, kills
// it with SIGKILL at a random moment, and checks that every cursor holds
// at least its last acknowledged offset. (SIGKILL keeps the page cache, so
// this checks "committed on return", not the fsync; bbolt's fsync per
// commit is what Config cannot turn off.)
func TestKillDuringSetCursor(t *testing.T) {
	if path := os.Getenv("OUTPOST_META_KILL_HELPER"); path != "" {
		killHelper(path)
		return
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	path := filepath.Join(t.TempDir(), "meta.db")
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillDuringSetCursor$", "-test.count=1")
		cmd.Env = append(os.Environ(), "OUTPOST_META_KILL_HELPER="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := map[int32]int64{}
		sc := bufio.NewScanner(out)
		killAfter := 50 + rng.IntN(400) // acknowledgements before the kill
		for n := 0; sc.Scan(); n++ {
			var part int32
			var off int64
			if _, err := fmt.Sscanf(sc.Text(), "ack %d %d", &part, &off); err != nil {
				continue
			}
			acked[part] = max(acked[part], off)
			if n == killAfter {
				cmd.Process.Kill()
			}
		}
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != -1 {
			t.Fatalf("seed %d round %d: helper ended with %v before it was killed", seed, round, err)
		}
		s, err := meta.Open(path, meta.Config{})
		if err != nil {
			t.Fatalf("seed %d round %d: reopen after kill: %v", seed, round, err)
		}
		cs, err := s.Cursors(ctx, "upstream")
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		for part, off := range acked {
			if got := cs[meta.PartitionKey{Topic: "t", Partition: part}]; got < off {
				t.Fatalf("seed %d round %d: partition %d cursor %d, but %d was acknowledged", seed, round, part, got, off)
			}
		}
		t.Logf("round %d: killed after %d acks over %d partitions; all present", round, killAfter, len(acked))
	}
}

// killHelper commits cursors from 8 goroutines until it is killed,
// resuming after what the store already holds.
func killHelper(path string) {
	s, err := meta.Open(path, meta.Config{Timeout: 10 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cs, _ := s.Cursors(ctx, "upstream")
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for part := range int32(8) {
		wg.Go(func() {
			for off := cs[meta.PartitionKey{Topic: "t", Partition: part}] + 1; ; off++ {
				if err := s.SetCursor(ctx, "upstream", "t", part, off); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				mu.Lock()
				w.WriteString("ack " + strconv.Itoa(int(part)) + " " + strconv.FormatInt(off, 10) + "\n")
				w.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}
