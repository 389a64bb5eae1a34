package log_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"

	elog "github.com/outpost-edge/outpost/edge/log"
)

// copyBatches copies src into dst (both at the same end) with ReadBatches
// and AppendBatchesAt, maxBytes per read, and returns the batches copied.
func copyBatches(t *testing.T, src, dst *elog.Partition, maxBytes int) int {
	t.Helper()
	ctx := context.Background()
	n := 0
	for dst.EndOffset() < src.EndOffset() {
		from := dst.EndOffset()
		bs, err := src.ReadBatches(ctx, from, maxBytes)
		if err != nil {
			t.Fatalf("ReadBatches(%d): %v", from, err)
		}
		if len(bs) == 0 {
			t.Fatalf("ReadBatches(%d) returned nothing before end %d", from, src.EndOffset())
		}
		if bs[0].Base() != from {
			if bs[0], err = bs[0].From(from); err != nil {
				t.Fatal(err)
			}
		}
		// As a follower does: the payloads cross the network, so they are
		// parsed again on arrival.
		for i, b := range bs {
			p, err := elog.ParseBatch(bytes.Clone(b.Payload()))
			if err != nil {
				t.Fatalf("ParseBatch of a stored batch at %d: %v", b.Base(), err)
			}
			if p.Base() != b.Base() || p.Count() != b.Count() {
				t.Fatalf("ParseBatch: [%d,+%d), read as [%d,+%d)", p.Base(), p.Count(), b.Base(), b.Count())
			}
			bs[i] = p
		}
		if err := dst.AppendBatchesAt(ctx, from, bs); err != nil {
			t.Fatalf("AppendBatchesAt(%d): %v", from, err)
		}
		n += len(bs)
	}
	return n
}

func readAll(t *testing.T, p *elog.Partition) []elog.Record {
	t.Helper()
	var out []elog.Record
	for next := p.StartOffset(); next < p.EndOffset(); {
		recs, err := p.Read(context.Background(), next, 1<<20)
		if err != nil || len(recs) == 0 {
			t.Fatalf("read at %d: %d records, %v", next, len(recs), err)
		}
		out = append(out, recs...)
		next += int64(len(recs))
	}
	return out
}

func sameRecords(t *testing.T, got, want []elog.Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Offset != w.Offset || g.Timestamp != w.Timestamp || !bytes.Equal(g.Key, w.Key) || !bytes.Equal(g.Value, w.Value) || len(g.Headers) != len(w.Headers) {
			t.Fatalf("record %d: %+v, want %+v", i, g, w)
		}
		for j := range w.Headers {
			if g.Headers[j].Key != w.Headers[j].Key || !bytes.Equal(g.Headers[j].Value, w.Headers[j].Value) {
				t.Fatalf("record %d header %d: %+v, want %+v", i, j, g.Headers[j], w.Headers[j])
			}
		}
	}
}

// TestCopyBatches copies a partition batch by batch, across segment rolls,
// with and without the journal, from offsets inside batches too, and
// checks that the copy holds the same records, survives a reopen and
// passes Check.
func TestCopyBatches(t *testing.T) {
	for _, journal := range []bool{false, true} {
		name := "segments"
		if journal {
			name = "journal"
		}
		t.Run(name, func(t *testing.T) {
			seed := rand.Uint64()
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 0))
			cfg := elog.Config{Sync: elog.SyncAlways, SegmentMaxBytes: 64 << 10, Journal: journal}
			src := openLog(t, t.TempDir(), cfg)
			dstDir := t.TempDir()
			dst, err := elog.Open(dstDir, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { dst.Close() }) // closed below unless the test fails first
			sp, dp := mustPartition(t, src, "t", 0), mustPartition(t, dst, "t", 0)
			ctx := context.Background()
			i := 0
			for round := range 40 {
				batch := make([]elog.Record, 1+rng.IntN(60))
				for k := range batch {
					batch[k] = rec(i)
					i++
				}
				if _, err := sp.Append(ctx, batch); err != nil {
					t.Fatal(err)
				}
				if round%7 == 3 {
					// A replica that copied records one by one (an older
					// follower, a restore) ends inside the owner's batch.
					recs, err := sp.Read(ctx, dp.EndOffset(), 1<<20)
					if err != nil {
						t.Fatal(err)
					}
					cut := recs[:1+rng.IntN(len(recs))]
					if err := dp.AppendAt(ctx, dp.EndOffset(), cut); err != nil {
						t.Fatal(err)
					}
				}
				copyBatches(t, sp, dp, 1+rng.IntN(32<<10))
			}
			want := readAll(t, sp)
			sameRecords(t, readAll(t, dp), want)
			if errs := dst.Check(ctx); len(errs) > 0 {
				t.Fatalf("Check of the copy: %v", errs)
			}
			if err := dst.Close(); err != nil {
				t.Fatal(err)
			}
			again := openLog(t, dstDir, cfg)
			ap, err := again.Partition("t", 0)
			checkInvariants(t, again)
			if err != nil {
				t.Fatal(err)
			}
			sameRecords(t, readAll(t, ap), want)
		})
	}
}

func TestAppendBatchesAtRefuses(t *testing.T) {
	l := openLog(t, t.TempDir(), elog.Config{Sync: elog.SyncAlways, MaxBatchBytes: 4 << 10, SegmentMaxBytes: 64 << 10})
	src := openLog(t, t.TempDir(), elog.Config{Sync: elog.SyncAlways})
	p, sp := mustPartition(t, l, "t", 0), mustPartition(t, src, "t", 0)
	ctx := context.Background()
	if _, err := sp.Append(ctx, []elog.Record{rec(0), rec(1)}); err != nil {
		t.Fatal(err)
	}
	big := make([]elog.Record, 60)
	for i := range big {
		big[i] = rec(2 + i)
	}
	if _, err := sp.Append(ctx, big); err != nil {
		t.Fatal(err)
	}
	bs, err := sp.ReadBatches(ctx, 0, 1<<20)
	if err != nil || len(bs) != 2 {
		t.Fatalf("ReadBatches: %d batches, %v; want 2", len(bs), err)
	}
	if err := p.AppendBatchesAt(ctx, 1, bs[:1]); !errors.Is(err, elog.ErrNotContiguous) {
		t.Fatalf("append at 1 on an empty partition: %v, want ErrNotContiguous", err)
	}
	if err := p.AppendBatchesAt(ctx, 0, bs[1:]); !errors.Is(err, elog.ErrNotContiguous) {
		t.Fatalf("a batch of offset 2 at 0: %v, want ErrNotContiguous", err)
	}
	if err := p.AppendBatchesAt(ctx, 0, bs); !errors.Is(err, elog.ErrBatchTooLarge) {
		t.Fatalf("a batch over MaxBatchBytes: %v, want ErrBatchTooLarge", err)
	}
	if p.EndOffset() != 0 {
		t.Fatalf("refused appends wrote: end %d", p.EndOffset())
	}
	if err := p.AppendBatchesAt(ctx, 0, bs[:1]); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendBatchesAt(ctx, 0, bs[:1]); !errors.Is(err, elog.ErrNotContiguous) {
		t.Fatalf("the same batch twice: %v, want ErrNotContiguous", err)
	}
	if p.EndOffset() != 2 {
		t.Fatalf("end %d, want 2", p.EndOffset())
	}
}

// TestParseBatchDamage: ParseBatch never panics and never accepts a
// payload that does not decode to the records it announces.
func TestParseBatchDamage(t *testing.T) {
	src := openLog(t, t.TempDir(), elog.Config{Sync: elog.SyncAlways})
	sp := mustPartition(t, src, "t", 0)
	ctx := context.Background()
	recs := make([]elog.Record, 20)
	for i := range recs {
		recs[i] = rec(i)
	}
	if _, err := sp.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	bs, err := sp.ReadBatches(ctx, 0, 1<<20)
	if err != nil || len(bs) != 1 {
		t.Fatalf("ReadBatches: %d, %v", len(bs), err)
	}
	good := bs[0].Payload()
	for _, bad := range [][]byte{nil, {0x80}, good[:len(good)-1], append(bytes.Clone(good), 0xc0)} {
		if _, err := elog.ParseBatch(bad); !errors.Is(err, elog.ErrDecode) {
			t.Errorf("ParseBatch of %d bytes: %v, want ErrDecode", len(bad), err)
		}
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	for range 5000 {
		b := bytes.Clone(good)
		for range 1 + rng.IntN(4) {
			b[rng.IntN(len(b))] = byte(rng.Uint32())
		}
		rb, err := elog.ParseBatch(b)
		if err != nil {
			continue
		}
		got, err := rb.Records()
		if err != nil || len(got) != rb.Count() {
			t.Fatalf("ParseBatch accepted a payload whose records do not decode: %d records of %d, %v", len(got), rb.Count(), err)
		}
	}
}
