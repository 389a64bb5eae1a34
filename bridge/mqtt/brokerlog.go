package mqtt

import (
	"context"
	"log/slog"
)

// BrokerLogger wraps the logger given to mochi (Options.Logger) so that a
// client's protocol violation is one concise line. mochi logs every packet
// it fails to process at WARN with the whole packet struct (mochi.go,
// invariant 9), thousands of characters per line, at whatever rate a
// broken or hostile client sends; the wrapper writes the WARN line without
// the packet (client, listener, error) and the packet only at DEBUG, when
// that is enabled. Other records pass unchanged.
func BrokerLogger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(&brokerHandler{next: l.Handler()})
}

// packetAttr is the attribute under which mochi logs a packet.
const packetAttr = "pk"

type brokerHandler struct{ next slog.Handler }

func (b *brokerHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return b.next.Enabled(ctx, level)
}

func (b *brokerHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level <= slog.LevelDebug {
		return b.next.Handle(ctx, r)
	}
	var packet slog.Attr
	found := false
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == packetAttr {
			packet, found = a, true
			return false
		}
		return true
	})
	if !found {
		return b.next.Handle(ctx, r)
	}
	short := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != packetAttr {
			short.AddAttrs(a)
		}
		return true
	})
	err := b.next.Handle(ctx, short)
	if b.next.Enabled(ctx, slog.LevelDebug) {
		full := slog.NewRecord(r.Time, slog.LevelDebug, r.Message+" (packet)", r.PC)
		r.Attrs(func(a slog.Attr) bool {
			if a.Key != packetAttr {
				full.AddAttrs(a)
			}
			return true
		})
		full.AddAttrs(packet)
		_ = b.next.Handle(ctx, full)
	}
	return err
}

func (b *brokerHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &brokerHandler{next: b.next.WithAttrs(attrs)}
}

func (b *brokerHandler) WithGroup(name string) slog.Handler {
	return &brokerHandler{next: b.next.WithGroup(name)}
}
