package fleet

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram is a lock-free log-linear latency histogram in microseconds:
// exact below 128 µs, then 64 buckets per power of two (under 1.6 %
// relative error), up to about 2^40 µs. Every device records into one
// shared histogram; the atomic adds are cheap next to a network round trip.
type histogram struct {
	buckets [histBuckets]atomic.Int64
	count   atomic.Int64
	sum     atomic.Int64 // microseconds
	max     atomic.Int64 // microseconds
}

const (
	histSub     = 64
	histBuckets = 128 + 34*histSub
)

func histIndex(us int64) int {
	if us < 128 {
		if us < 0 {
			return 0
		}
		return int(us)
	}
	e := bits.Len64(uint64(us)) - 7 // us>>e is in [64, 128)
	i := 128 + (e-1)*histSub + int(us>>e) - histSub
	return min(i, histBuckets-1)
}

// histLower returns the smallest value that maps to bucket i.
func histLower(i int) int64 {
	if i < 128 {
		return int64(i)
	}
	e := (i-128)/histSub + 1
	return int64((i-128)%histSub+histSub) << e
}

func (h *histogram) record(d time.Duration) {
	us := d.Microseconds()
	h.buckets[histIndex(us)].Add(1)
	h.count.Add(1)
	h.sum.Add(us)
	for {
		m := h.max.Load()
		if us <= m || h.max.CompareAndSwap(m, us) {
			return
		}
	}
}

// quantiles returns the values at the given quantiles (0..1), each the
// midpoint of its bucket, in the order asked.
func (h *histogram) quantiles(qs ...float64) []time.Duration {
	var counts [histBuckets]int64
	var total int64
	for i := range counts {
		counts[i] = h.buckets[i].Load()
		total += counts[i]
	}
	out := make([]time.Duration, len(qs))
	if total == 0 {
		return out
	}
	for qi, q := range qs {
		rank := int64(q*float64(total-1)) + 1
		var acc int64
		for i, c := range counts {
			acc += c
			if acc >= rank {
				lo := histLower(i)
				hi := histLower(i + 1)
				if i+1 >= histBuckets {
					hi = lo
				}
				mid := lo + (hi-lo)/2
				if m := h.max.Load(); mid > m {
					mid = m
				}
				out[qi] = time.Duration(mid) * time.Microsecond
				break
			}
		}
	}
	return out
}
