package peer

import "testing"

func TestDecideFetch(t *testing.T) {
	// Epoch 1 wrote 0–99, epoch 2 wrote nothing (replaced), epoch 3 wrote
	// from 95 on: the owner lost 95–99 of epoch 1 (sync: interval) and
	// restarted.
	h := history{{1, 0}, {3, 95}}
	cases := []struct {
		name       string
		start, end int64
		offset     int64
		lastEpoch  uint64
		want       fetchDecision
		at         int64
	}{
		{"empty_follower", 0, 120, 0, 0, serve, 0},
		{"behind_same_epoch", 0, 120, 50, 1, serve, 50},
		{"at_epoch_boundary", 0, 120, 95, 1, serve, 95},
		{"diverged_past_epoch_end", 0, 120, 100, 1, truncate, 95},
		{"current_epoch", 0, 120, 110, 3, serve, 110},
		{"caught_up", 0, 120, 120, 3, serve, 120},
		{"ahead_in_current_epoch", 0, 120, 130, 3, truncate, 120},
		{"below_start", 100, 120, 0, 0, outOfRange, 0},
		{"negative", 0, 120, -1, 0, outOfRange, 0},
		{"epoch_unknown_to_owner", 0, 120, 10, 0, unknown, 0},
		{"follower_epoch_newer_than_all", 0, 120, 10, 9, serve, 10},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, at := decideFetch(h, c.start, c.end, c.offset, c.lastEpoch)
			if d != c.want || at != c.at {
				t.Fatalf("decideFetch = %v, %d; want %v, %d", d, at, c.want, c.at)
			}
		})
	}
	// An owner whose history starts later than the follower's epoch (its
	// metadata was replaced) cannot place the follower: never truncate.
	d, _ := decideFetch(history{{5, 0}}, 0, 3, 10, 2)
	if d != unknown {
		t.Fatalf("owner with a replaced history: %v, want unknown", d)
	}
}

func TestHistoryBegin(t *testing.T) {
	cases := []struct {
		name  string
		h     history
		epoch uint64
		end   int64
		want  history
	}{
		{"first_start", nil, 1, 0, history{{1, 0}}},
		{"first_start_with_records", nil, 1, 500, history{{1, 0}}},
		{"restart_with_records", history{{1, 0}}, 2, 10, history{{1, 0}, {2, 10}}},
		{"restart_wrote_nothing", history{{1, 0}, {2, 10}}, 3, 10, history{{1, 0}, {3, 10}}},
		{"lost_tail", history{{1, 0}, {2, 10}}, 3, 8, history{{1, 0}, {3, 8}}},
		{"lost_everything", history{{1, 0}, {2, 10}}, 3, 0, history{{3, 0}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := c.h.begin(c.epoch, c.end)
			if !got.equal(c.want) {
				t.Fatalf("begin = %v, want %v", got, c.want)
			}
			if err := got.validate(); err != nil {
				t.Fatal(err)
			}
			back, err := unmarshalHistory(got.marshal())
			if err != nil || !back.equal(got) {
				t.Fatalf("round trip: %v, %v", back, err)
			}
		})
	}
}

func TestEpochAt(t *testing.T) {
	h := history{{1, 0}, {3, 95}}
	for _, c := range []struct {
		off  int64
		want uint64
	}{{-1, 0}, {0, 1}, {94, 1}, {95, 3}, {1000, 3}} {
		if got := h.epochAt(c.off); got != c.want {
			t.Errorf("epochAt(%d) = %d, want %d", c.off, got, c.want)
		}
	}
}
