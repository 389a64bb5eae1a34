package api_test

import (
	"errors"
	"os"
	"testing"

	elog "github.com/outpost-edge/outpost/edge/log"
)

// TestLogReadAfterCloseSaysClosed documents a bug found in edge/log (not
// this package's code): Partition.Read on a partition whose log has been
// closed returns ErrOffsetOutOfRange for an offset inside [start, end),
// where its doc promises that error only below the start or beyond the
// end, and ErrClosed for a closed log. A reader that trusts the error
// would skip records. The API works around it (records.go); this test
// fails until the log is fixed. It runs only with OUTPOST_KNOWN_BUGS=1 so
// that it does not hold back every other package's CI meanwhile; the lead
// decides when to turn it on.
func TestLogReadAfterCloseSaysClosed(t *testing.T) {
	if os.Getenv("OUTPOST_KNOWN_BUGS") != "1" {
		t.Skip("known edge/log bug (Read after Close says offset out of range); set OUTPOST_KNOWN_BUGS=1 to run")
	}
	l, err := elog.Open(t.TempDir(), elog.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("t", 0)
	if _, err := p.Append(bg, []elog.Record{{Value: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if p.StartOffset() != 0 || p.EndOffset() != 1 {
		t.Fatalf("range [%d, %d)", p.StartOffset(), p.EndOffset())
	}
	_, err = p.Read(bg, 0, 100)
	if !errors.Is(err, elog.ErrClosed) {
		t.Fatalf("Read(0) of [0, 1) after Close = %v, want ErrClosed", err)
	}
}
