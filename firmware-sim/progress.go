package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/firmware-sim/fleet"
)

// isTerminal reports whether f is a character device, which is what a
// terminal is; /dev/null also is, and gets harmless carriage returns.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb"
}

// startProgress prints progress while the fleet runs: a line redrawn every
// second on a terminal, else a plain line every interval (0: none).
func startProgress(ctx context.Context, fl *fleet.Fleet, w io.Writer, interval time.Duration) (stop func()) {
	tty := isTerminal(w)
	if tty {
		interval = time.Second
	}
	if interval <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		start := time.Now()
		var lastDone int64
		last := start
		for {
			select {
			case <-ctx.Done():
				if tty {
					fmt.Fprint(w, "\r\033[K")
				}
				return
			case now := <-t.C:
				s := fl.Snapshot()
				done := s.Acked + s.Refused + (s.Sent - s.SentQoS)
				rate := float64(done-lastDone) / now.Sub(last).Seconds()
				lastDone, last = done, now
				var errs int64
				for _, n := range s.Errors {
					errs += n
				}
				line := fmt.Sprintf("%6.0fs  %8.0f msg/s  sent %d  acked %d  in flight %d  refused %d  reconnects %d  errors %d",
					now.Sub(start).Seconds(), rate, s.Sent, s.Acked, s.InFlight, s.Refused, s.Reconnects, errs)
				for code, n := range s.AckReasons {
					if code[:4] != "0x00" {
						line += fmt.Sprintf("  [%s]=%d", code, n)
					}
				}
				if tty {
					fmt.Fprintf(w, "\r\033[K%s", line)
				} else {
					fmt.Fprintln(w, line)
				}
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}
