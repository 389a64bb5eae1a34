package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	elog "github.com/outpost-edge/outpost/edge/log"
)

// TestFollowers runs readers that follow a partition through long-polls
// while one appender writes and retention deletes old segments under
// them: every answer must be contiguous from the requested offset, every
// value must match its offset, a reader that falls below start_offset
// must get 416 with the offsets to resume from, and every follower must
// reach the end. Run with -race.
func TestFollowers(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	e := newEnv(t, nil, nil)
	if err := e.log.CreateTopic("t", elog.TopicConfig{Partitions: 2, RetentionBytes: 3 * 4096}); err != nil {
		t.Fatal(err)
	}
	p, _ := e.log.Partition("t", 0)
	const n = 600
	ctx, cancel := context.WithTimeout(bg, 50*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	errc := make(chan error, 16)
	appended := make(chan struct{})
	wg.Go(func() { // appender
		defer close(appended)
		rng := rand.New(rand.NewPCG(seed, 1))
		for next := 0; next < n; {
			k := min(1+rng.IntN(4), n-next)
			recs := make([]elog.Record, k)
			for i := range recs {
				recs[i] = elog.Record{Value: fmt.Appendf(nil, "%d", next+i)}
			}
			if _, err := p.Append(ctx, recs); err != nil {
				errc <- err
				return
			}
			next += k
		}
	})
	stopRetention := make(chan struct{})
	var retention sync.WaitGroup
	retention.Go(func() {
		for {
			select {
			case <-stopRetention:
				return
			case <-time.After(time.Millisecond):
				e.log.EnforceRetention(bg)
			}
		}
	})
	skipped := make([]int, 4)
	for f := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(f+2)))
			next := int64(0)
			if f == 3 {
				// A late reader: it starts at 0 once retention has moved the
				// start, so it must get a 416 and resume.
				<-appended
				for p.StartOffset() == 0 {
					if ctx.Err() != nil {
						errc <- fmt.Errorf("retention never moved the start offset")
						return
					}
					time.Sleep(time.Millisecond)
				}
			}
			for next < n {
				limit := 1 + rng.IntN(60)
				url := fmt.Sprintf("%s/v1/topics/t/partitions/0/records?offset=%d&limit=%d&wait=5s", e.url, next, limit)
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					errc <- err
					return
				}
				var page struct {
					Records []struct {
						Offset    int64  `json:"offset"`
						ValueText string `json:"value_text"`
					} `json:"records"`
					NextOffset  int64 `json:"next_offset"`
					StartOffset int64 `json:"start_offset"`
				}
				err = json.NewDecoder(res.Body).Decode(&page)
				res.Body.Close()
				if err != nil {
					errc <- err
					return
				}
				switch res.StatusCode {
				case 200:
				case 416:
					if page.StartOffset <= next {
						errc <- fmt.Errorf("follower %d: 416 at %d but start_offset %d", f, next, page.StartOffset)
						return
					}
					skipped[f] += int(page.StartOffset - next)
					next = page.StartOffset
					continue
				default:
					errc <- fmt.Errorf("follower %d: status %d at %d", f, res.StatusCode, next)
					return
				}
				if len(page.Records) > limit {
					errc <- fmt.Errorf("follower %d: %d records for limit %d", f, len(page.Records), limit)
					return
				}
				for _, r := range page.Records {
					if r.Offset != next || r.ValueText != fmt.Sprint(next) {
						errc <- fmt.Errorf("follower %d: got offset %d value %q, want %d", f, r.Offset, r.ValueText, next)
						return
					}
					next++
				}
				if page.NextOffset != next {
					errc <- fmt.Errorf("follower %d: next_offset %d, want %d", f, page.NextOffset, next)
					return
				}
				if rng.IntN(4) == 0 {
					// Reading pace, not synchronisation: a slow reader falls behind.
					time.Sleep(time.Duration(10+rng.IntN(20)) * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	close(stopRetention)
	retention.Wait()
	close(errc)
	for err := range errc {
		t.Fatalf("seed %d: %v", seed, err)
	}
	t.Logf("records skipped by retention per follower: %v; start offset now %d", skipped, p.StartOffset())
	if skipped[3] == 0 {
		t.Fatalf("seed %d: the late follower never got a 416", seed)
	}
}
