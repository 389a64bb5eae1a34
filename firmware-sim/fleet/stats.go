package fleet

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/outpost-edge/outpost/firmware-sim/mqttc"
)

// stats are the fleet-wide counters every device updates.
type stats struct {
	sent       atomic.Int64 // first transmissions, all QoS
	sentQoS    atomic.Int64 // first transmissions with QoS 1/2
	bytes      atomic.Int64 // payload bytes of first transmissions
	acked      atomic.Int64 // QoS 1/2 acknowledgements with a success code
	refused    atomic.Int64 // QoS 1/2 acknowledgements with a code >= 0x80
	invalid    atomic.Int64 // malformed or schema-violating payloads sent
	dropped    atomic.Int64 // readings dropped from a full backlog
	unsent     atomic.Int64 // readings still in a backlog when the device stopped
	connects   atomic.Int64
	reconnects atomic.Int64
	connFails  atomic.Int64
	lost       atomic.Int64 // connections lost (not counting planned offline)
	offline    atomic.Int64 // offline periods started

	commands           atomic.Int64 // commands received (Group.Commands)
	commandsAnswered   atomic.Int64 // answers sent
	commandsUnanswered atomic.Int64 // answers dropped (queue full, not connected)
	lastDone           atomic.Int64 // unix nanos of the last ack (or QoS 0 send)
	latency            histogram
	ackCodes           [256]atomic.Int64
	connCodes          [256]atomic.Int64
	discCodes          [256]atomic.Int64

	errMu  sync.Mutex
	errors map[string]int64
}

func (s *stats) onAck(a mqttc.Ack) {
	if a.Reason >= 0x80 {
		s.refused.Add(1)
	} else {
		s.acked.Add(1)
		s.latency.record(a.Latency)
	}
	s.ackCodes[a.Reason].Add(1)
	s.lastDone.Store(time.Now().UnixNano())
}

// countError files an error under a short class so the summary stays
// readable with thousands of devices.
func (s *stats) countError(err error) {
	var ce *mqttc.ConnectError
	var de *mqttc.DisconnectError
	switch {
	case errors.As(err, &ce):
		s.connCodes[ce.Reason].Add(1)
		return
	case errors.As(err, &de):
		s.discCodes[de.Reason].Add(1)
		return
	}
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if s.errors == nil {
		s.errors = make(map[string]int64)
	}
	s.errors[errorClass(err)]++
}

func errorClass(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, mqttc.ErrProtocol):
		return "protocol error"
	}
	msg := err.Error()
	if strings.HasSuffix(msg, "EOF") {
		return "closed by broker (EOF)"
	}
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	if len(msg) > 60 {
		msg = msg[:60]
	}
	return msg
}

// Summary is the outcome of a run, as printed and as -json output.
type Summary struct {
	// Broker is the broker URL.
	Broker string `json:"broker"`
	// Devices is the number of simulated devices.
	Devices int `json:"devices"`
	// ElapsedSeconds runs from the start to the last ack; for QoS 0, to the
	// last PINGRESP fence after the devices' final publishes.
	ElapsedSeconds float64 `json:"elapsed_s"`
	// Sent counts first transmissions of all messages.
	Sent int64 `json:"sent"`
	// SentQoS counts the QoS 1/2 subset of Sent.
	SentQoS int64 `json:"sent_qos12"`
	// Resent counts retransmissions after reconnects.
	Resent int64 `json:"resent"`
	// Acked counts QoS 1/2 messages acknowledged with success.
	Acked int64 `json:"acked"`
	// Refused counts QoS 1/2 messages acknowledged with a failure code.
	Refused int64 `json:"refused"`
	// Missing counts QoS 1/2 messages with no acknowledgement at all.
	Missing int64 `json:"missing"`
	// InFlight is the number of unacknowledged messages right now.
	InFlight int64 `json:"in_flight"`
	// Invalid counts deliberately malformed or schema-violating payloads.
	Invalid int64 `json:"invalid_sent"`
	// Dropped counts readings dropped from full device backlogs.
	Dropped int64 `json:"dropped"`
	// Unsent counts readings still in device backlogs at the end.
	Unsent int64 `json:"unsent"`
	// Bytes is the payload bytes of first transmissions.
	Bytes int64 `json:"payload_bytes"`
	// MsgsPerSec is completed messages (acked+refused, or sent for QoS 0) per second.
	MsgsPerSec float64 `json:"msgs_per_s"`
	// MBPerSec is payload megabytes (10^6) per second of completed messages.
	MBPerSec float64 `json:"mb_per_s"`
	// Latency is the PUBACK (QoS 1) or PUBCOMP (QoS 2) latency.
	Latency Latency `json:"latency_ms"`
	// Connects counts successful connects, Reconnects the ones after the first.
	Connects   int64 `json:"connects"`
	Reconnects int64 `json:"reconnects"`
	// Commands counts commands received on the command filter, Answered
	// the answers sent to their response topics.
	Commands int64 `json:"commands,omitempty"`
	Answered int64 `json:"answered,omitempty"`
	// ConnectFailures counts failed connection attempts.
	ConnectFailures int64 `json:"connect_failures"`
	// ConnectionsLost counts connections that ended unplanned.
	ConnectionsLost int64 `json:"connections_lost"`
	// OfflinePeriods counts simulated network outages.
	OfflinePeriods int64 `json:"offline_periods"`
	// AckReasons counts PUBACK/PUBREC/PUBCOMP reason codes.
	AckReasons map[string]int64 `json:"ack_reasons,omitempty"`
	// ConnackReasons counts refused connects by CONNACK code.
	ConnackReasons map[string]int64 `json:"connack_reasons,omitempty"`
	// DisconnectReasons counts DISCONNECTs the broker sent, by reason code.
	DisconnectReasons map[string]int64 `json:"disconnect_reasons,omitempty"`
	// Errors counts other connection errors by class.
	Errors map[string]int64 `json:"errors,omitempty"`
}

// Latency holds quantiles in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (s *stats) summary(start time.Time, inFlight, resent int64) Summary {
	sum := Summary{
		Sent:            s.sent.Load(),
		SentQoS:         s.sentQoS.Load(),
		Resent:          resent,
		Acked:           s.acked.Load(),
		Refused:         s.refused.Load(),
		InFlight:        inFlight,
		Invalid:         s.invalid.Load(),
		Dropped:         s.dropped.Load(),
		Unsent:          s.unsent.Load(),
		Bytes:           s.bytes.Load(),
		Connects:        s.connects.Load(),
		Commands:        s.commands.Load(),
		Answered:        s.commandsAnswered.Load(),
		Reconnects:      s.reconnects.Load(),
		ConnectFailures: s.connFails.Load(),
		ConnectionsLost: s.lost.Load(),
		OfflinePeriods:  s.offline.Load(),
	}
	sum.Missing = sum.SentQoS - sum.Acked - sum.Refused
	end := time.Unix(0, s.lastDone.Load())
	if end.Before(start) {
		end = time.Now()
	}
	sum.ElapsedSeconds = end.Sub(start).Seconds()
	done := sum.Acked + sum.Refused + (sum.Sent - sum.SentQoS)
	if sum.ElapsedSeconds > 0 {
		sum.MsgsPerSec = float64(done) / sum.ElapsedSeconds
		if sum.Sent > 0 {
			sum.MBPerSec = float64(sum.Bytes) / float64(sum.Sent) * float64(done) / sum.ElapsedSeconds / 1e6
		}
	}
	q := s.latency.quantiles(0.5, 0.99, 0.999)
	sum.Latency = Latency{P50: ms(q[0]), P99: ms(q[1]), P999: ms(q[2]),
		Max: float64(s.latency.max.Load()) / 1000}
	if n := s.latency.count.Load(); n > 0 {
		sum.Latency.Mean = float64(s.latency.sum.Load()) / float64(n) / 1000
	}
	sum.AckReasons = codes(&s.ackCodes, mqttc.ReasonName)
	sum.ConnackReasons = codes(&s.connCodes, mqttc.ReasonName)
	sum.DisconnectReasons = codes(&s.discCodes, mqttc.ReasonName)
	s.errMu.Lock()
	if len(s.errors) > 0 {
		sum.Errors = make(map[string]int64, len(s.errors))
		for k, v := range s.errors {
			sum.Errors[k] = v
		}
	}
	s.errMu.Unlock()
	return sum
}

func codes(a *[256]atomic.Int64, name func(byte) string) map[string]int64 {
	var m map[string]int64
	for i := range a {
		if n := a[i].Load(); n > 0 {
			if m == nil {
				m = make(map[string]int64)
			}
			m[name(byte(i))] = n
		}
	}
	return m
}

// WriteText prints the summary for people.
func (s *Summary) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "firmware-sim: %d devices -> %s in %.2fs\n", s.Devices, s.Broker, s.ElapsedSeconds)
	fmt.Fprintf(&b, "  sent        %d (QoS 1/2: %d, resent %d, invalid on purpose %d)\n", s.Sent, s.SentQoS, s.Resent, s.Invalid)
	fmt.Fprintf(&b, "  acked       %d   refused %d   missing %d\n", s.Acked, s.Refused, s.Missing)
	if s.Commands > 0 {
		fmt.Fprintf(&b, "  commands    %d received, %d answered\n", s.Commands, s.Answered)
	}
	if s.Dropped > 0 || s.Unsent > 0 {
		fmt.Fprintf(&b, "  device side dropped %d (backlog full), unsent %d (still buffered at the end)\n", s.Dropped, s.Unsent)
	}
	fmt.Fprintf(&b, "  throughput  %.0f msgs/s, %.2f MB/s payload\n", s.MsgsPerSec, s.MBPerSec)
	if s.SentQoS > 0 {
		fmt.Fprintf(&b, "  ack latency p50 %.3f ms  p99 %.3f ms  p999 %.3f ms  max %.3f ms\n", s.Latency.P50, s.Latency.P99, s.Latency.P999, s.Latency.Max)
	}
	fmt.Fprintf(&b, "  connects    %d (reconnects %d, failed %d, lost %d, offline periods %d)\n", s.Connects, s.Reconnects, s.ConnectFailures, s.ConnectionsLost, s.OfflinePeriods)
	for _, m := range []struct {
		name string
		m    map[string]int64
	}{{"ack reason codes", s.AckReasons}, {"connack refusals", s.ConnackReasons}, {"broker disconnects", s.DisconnectReasons}, {"errors", s.Errors}} {
		if len(m.m) == 0 {
			continue
		}
		keys := make([]string, 0, len(m.m))
		for k := range m.m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintf(&b, "  %s:", m.name)
		for _, k := range keys {
			fmt.Fprintf(&b, " [%s] %d", k, m.m[k])
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}
