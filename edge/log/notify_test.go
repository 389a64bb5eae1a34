package log_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	elog "github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/edge/log/logtest"
	"github.com/outpost-edge/outpost/internal/polltest"
)

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestNotify: the channel is closed exactly when a record at the offset
// becomes readable, only once it is durable under SyncAlways, at once for
// an offset already readable, and at close; a closed partition leaves the
// end where it was, which is how a woken reader tells close from data.
func TestNotify(t *testing.T) {
	fs := logtest.NewFS()
	l, err := elog.Open(t.TempDir(), elog.Config{OpenFile: fs.Open})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := mustPartition(t, l, "t", 0)
	ctx := context.Background()

	at0 := p.Notify(0)
	if isClosed(at0) {
		t.Fatal("Notify(0) of an empty partition is closed")
	}
	release := fs.HoldSyncs()
	defer release()
	done := make(chan error, 1)
	if err := p.AppendAsync(ctx, []elog.Record{rec(0)}, func(_ int64, err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	polltest.Until(t, 10*time.Second, func() error {
		if fs.Waiting() == 0 {
			return fmt.Errorf("the commit has not reached its fdatasync")
		}
		return nil
	})
	if isClosed(at0) || isClosed(p.Notify(0)) {
		t.Fatal("Notify(0) closed before the record's fdatasync returned (SyncAlways readers must see durable records only)")
	}
	release()
	select {
	case <-at0:
	case <-time.After(10 * time.Second):
		t.Fatal("Notify(0) not closed after the commit")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if p.EndOffset() != 1 {
		t.Fatalf("end %d after one append", p.EndOffset())
	}
	if !isClosed(p.Notify(0)) {
		t.Fatal("Notify(0) with offset 0 readable is not closed at once")
	}
	at1 := p.Notify(1)
	if isClosed(at1) {
		t.Fatal("Notify(1) closed with nothing at offset 1")
	}
	if !isClosed(p.Notify(-1)) {
		t.Fatal("Notify below the end is not closed")
	}

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if !isClosed(at1) {
		t.Fatal("a waiting reader's channel stayed open at close")
	}
	if !isClosed(p.Notify(1)) || !isClosed(p.Notify(100)) {
		t.Fatal("Notify after close returns an open channel: a reader would wait forever")
	}
	if p.EndOffset() > 1 {
		t.Fatalf("end %d after close: a woken reader would take close for data", p.EndOffset())
	}
}

// TestNotifyFollowers: readers follow partitions by selecting on Notify and
// their shutdown, with no goroutine per wait, while appenders write; each
// must see every record in order, and none may miss a commit (it would
// wait until the test's deadline).
func TestNotifyFollowers(t *testing.T) {
	l := openLog(t, t.TempDir(), elog.Config{SegmentMaxBytes: 16 << 10, IndexIntervalBytes: 512})
	if err := l.CreateTopic("f", elog.TopicConfig{Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const perPartition = 400
	errc := make(chan error, 8)
	for part := int32(0); part < 2; part++ {
		p, _ := l.Partition("f", part)
		go func() {
			for i := 0; i < perPartition; i++ {
				if _, err := p.Append(ctx, []elog.Record{rec(i)}); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
		for range 3 {
			go func() {
				next := int64(0)
				for next < perPartition {
					recs, err := p.Read(ctx, next, 4096)
					if err != nil {
						errc <- err
						return
					}
					for _, r := range recs {
						if r.Offset != next || string(r.Value) != string(rec(int(next)).Value) {
							errc <- fmt.Errorf("partition %d: got offset %d %q, want %d", part, r.Offset, r.Value, next)
							return
						}
						next++
					}
					if len(recs) > 0 {
						continue
					}
					select {
					case <-p.Notify(next):
					case <-ctx.Done():
						errc <- fmt.Errorf("partition %d: reader stuck at %d of %d (end %d): a commit did not wake it", part, next, perPartition, p.EndOffset())
						return
					}
				}
				errc <- nil
			}()
		}
	}
	for range 8 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}
