package fleet

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramIndexMonotonic(t *testing.T) {
	prev := 0
	for us := int64(0); us < 1<<22; us += 1 + us/1000 {
		i := histIndex(us)
		if i < prev {
			t.Fatalf("index(%d)=%d < previous %d", us, i, prev)
		}
		if lo := histLower(i); lo > us {
			t.Fatalf("lower(%d)=%d > %d", i, lo, us)
		}
		if hi := histLower(i + 1); hi <= us {
			t.Fatalf("lower(%d)=%d <= %d", i+1, hi, us)
		}
		prev = i
	}
}

func TestHistogramQuantiles(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	var h histogram
	vals := make([]int64, 100000)
	for i := range vals {
		vals[i] = int64(rng.ExpFloat64() * 2000)
		h.record(time.Duration(vals[i]) * time.Microsecond)
	}
	slices.Sort(vals)
	qs := []float64{0.5, 0.99, 0.999}
	got := h.quantiles(qs...)
	for i, q := range qs {
		want := vals[int(q*float64(len(vals)-1))]
		g := got[i].Microseconds()
		if d := float64(g-want) / float64(want+1); d > 0.03 || d < -0.03 {
			t.Errorf("q%.3f: got %dµs, want %dµs", q, g, want)
		}
	}
}
