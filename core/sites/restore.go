package sites

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/wire"
)

// restoreIdle ends a restore that receives nothing for this long: the
// reports the stream held when the restore began have expired meanwhile.
const restoreIdle = 2 * time.Second

// Restore loads the last report of every node from the status stream st
// (wire.StatusStreamName) into the view, each with the time the stream
// stored it as its last contact (ReportAt). It reads with an ordered
// consumer that delivers the last message per subject, up to the last
// message the stream held when it started; later reports reach the view
// live. It returns how many reports it took. Reports the view refuses
// (invalid, older than ForgetAfter, beyond MaxNodes) are counted and
// skipped, not errors.
func (r *Registry) Restore(ctx context.Context, st jetstream.Stream) (int, error) {
	info, err := st.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("sites: restore: stream info: %w", err)
	}
	if info.State.Msgs == 0 {
		return 0, nil
	}
	until := info.State.LastSeq
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{wire.StatusStreamSubjects(r.cfg.Prefix)},
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
		// The default retries forever; a core not allowed to create
		// consumers must get an error and fall back instead.
		MaxResetAttempts: 1,
	})
	if err != nil {
		return 0, fmt.Errorf("sites: restore: consumer on %s: %w", info.Config.Name, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return 0, fmt.Errorf("sites: restore: read %s: %w", info.Config.Name, err)
	}
	defer it.Stop()
	taken := 0
	for {
		nctx, cancel := context.WithTimeout(ctx, restoreIdle)
		m, err := it.Next(jetstream.NextContext(nctx))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return taken, fmt.Errorf("sites: restore: %w", ctx.Err())
			}
			if errors.Is(err, context.DeadlineExceeded) {
				return taken, nil
			}
			return taken, fmt.Errorf("sites: restore: read %s: %w", info.Config.Name, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return taken, fmt.Errorf("sites: restore: %w", err)
		}
		if st, err := r.parse(m.Subject(), m.Data()); err != nil {
			r.log.Debug("stored status report skipped", "subject", m.Subject(), "seq", meta.Sequence.Stream, "err", err)
		} else if ok, err := r.reportAt(st, meta.Timestamp, "restored"); err != nil {
			r.log.Debug("stored status report skipped", "subject", m.Subject(), "err", err)
		} else if ok {
			taken++
		}
		if meta.NumPending == 0 || meta.Sequence.Stream >= until {
			return taken, nil
		}
	}
}
