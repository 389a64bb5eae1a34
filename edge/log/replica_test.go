package log_test

import (
	"context"
	"errors"
	"testing"

	"github.com/outpost-edge/outpost/edge/log"
)

func TestAppendAtContiguous(t *testing.T) {
	l, err := log.Open(t.TempDir(), log.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := l.CreateTopic("t", log.TopicConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	p, err := l.Partition("t", 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rec := func(v string) []log.Record { return []log.Record{{Timestamp: 1, Value: []byte(v)}} }
	if err := p.AppendAt(ctx, 1, rec("gap")); !errors.Is(err, log.ErrNotContiguous) {
		t.Fatalf("AppendAt(1) on an empty partition: %v, want ErrNotContiguous", err)
	}
	if p.EndOffset() != 0 {
		t.Fatalf("a refused AppendAt wrote: end %d", p.EndOffset())
	}
	if err := p.AppendAt(ctx, 0, rec("a")); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendAt(ctx, 1, rec("b")); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendAt(ctx, 1, rec("again")); !errors.Is(err, log.ErrNotContiguous) {
		t.Fatalf("AppendAt(1) twice: %v, want ErrNotContiguous", err)
	}
	recs, err := p.Read(ctx, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || string(recs[0].Value) != "a" || string(recs[1].Value) != "b" {
		t.Fatalf("records %+v, want a, b", recs)
	}
}
