package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Downlink: commands from the centre to one device at a site (PROTOCOL.md
// §9). Core keeps every accepted command in the work-queue stream
// CommandStreamName until the site's edge has made it durable in its own
// log; the edge sends status records upstream as records of the log topic
// CommandStatusTopic (so they ride the forwarder, exactly once), and core
// folds them into the KV bucket CommandStateBucket.

// CommandVersion is the "v" this package writes in commands, status
// records and states; readers refuse versions they do not know.
const CommandVersion = 1

// Names of the downlink.
const (
	// CommandStatusTopic is the edge log topic status records travel in.
	CommandStatusTopic = "_command-status"
	// CommandLogTopic is the edge log topic commands are made durable in
	// before the edge acknowledges them to the centre. It is not forwarded.
	CommandLogTopic = "_commands"

	commandToken    = "$cmd"
	commandAPIToken = "$command"
)

// ErrBadCommand is wrapped by every command, status record and state
// validation error.
var ErrBadCommand = errors.New("wire: bad command")

// CommandStatus is where a command is. queued, at_edge and delivered are on
// the way; succeeded, failed, expired and rejected are final.
type CommandStatus string

// The statuses, in the order a command moves through them.
const (
	StatusQueued    CommandStatus = "queued"    // stored in the centre's stream
	StatusAtEdge    CommandStatus = "at_edge"   // durable in the site's edge log
	StatusDelivered CommandStatus = "delivered" // the device acknowledged it (PUBACK; QoS 0: written)
	StatusSucceeded CommandStatus = "succeeded" // the device answered ok
	StatusFailed    CommandStatus = "failed"    // the device answered with a failure
	StatusExpired   CommandStatus = "expired"   // the time to live passed before delivery
	StatusRejected  CommandStatus = "rejected"  // refused (reason says why)
)

// rank orders statuses: a status record moves a command only forward.
func (s CommandStatus) rank() int {
	switch s {
	case StatusQueued:
		return 1
	case StatusAtEdge:
		return 2
	case StatusDelivered:
		return 3
	case StatusSucceeded, StatusFailed, StatusExpired, StatusRejected:
		return 4
	}
	return 0
}

// Final reports whether nothing follows s.
func (s CommandStatus) Final() bool { return s.rank() == 4 }

// Valid reports whether s is one of the statuses above.
func (s CommandStatus) Valid() bool { return s.rank() > 0 }

// Reasons for rejected (and expired) statuses, stable for programs.
const (
	ReasonUnknownSite = "unknown_site"
	ReasonQueueFull   = "queue_full"
	ReasonTooLarge    = "payload_too_large"
	ReasonACL         = "acl"
	ReasonTTL         = "ttl"
	// ReasonExpiredInCentre: core saw the command still queued in the
	// centre after its time to live. The edge may have taken and delivered
	// it in time with its status still on the way, so a later delivered,
	// succeeded or failed replaces this expiry (Apply).
	ReasonExpiredInCentre = "ttl_centre"
	ReasonBadCommand      = "bad_command"
)

// Command is one command for one device, as it travels in the commands
// stream and the edge's command log (JSON).
type Command struct {
	Version int    `json:"v"`
	ID      string `json:"id"`
	Site    string `json:"site"`
	Device  string `json:"device"`
	// Topic is the MQTT topic the device receives it on.
	Topic string `json:"topic"`
	// Payload is the MQTT payload (base64 in JSON).
	Payload []byte `json:"payload"`
	// QoS is 0 or 1.
	QoS byte `json:"qos"`
	// Created is when core accepted it; Expires when its time to live ends:
	// it is never delivered after Expires.
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
}

// ValidateCommandID checks a command id: like a site name, 1..64 of
// [A-Za-z0-9_-] (it is a KV key token and a Nats-Msg-Id).
func ValidateCommandID(id string) error {
	if err := ValidateName("id", id); err != nil {
		return fmt.Errorf("%w: %w", ErrBadCommand, err)
	}
	return nil
}

// ValidateMQTTTopic checks a topic a command may be published on: a
// non-empty MQTT topic name without wildcards, not starting with '$'.
func ValidateMQTTTopic(topic string) error {
	switch {
	case topic == "":
		return fmt.Errorf("%w: topic is empty", ErrBadCommand)
	case len(topic) > 1024:
		return fmt.Errorf("%w: topic is longer than 1024 bytes", ErrBadCommand)
	case strings.ContainsAny(topic, "+#\x00"):
		return fmt.Errorf("%w: topic %q has a wildcard or NUL", ErrBadCommand, topic)
	case strings.HasPrefix(topic, "$"):
		return fmt.Errorf("%w: topic %q starts with '$' (reserved by brokers)", ErrBadCommand, topic)
	}
	return nil
}

// Validate checks a decoded command.
func (c *Command) Validate() error {
	if c.Version < 1 || c.Version > CommandVersion {
		return fmt.Errorf("%w: version %d, this reader knows 1..%d", ErrBadCommand, c.Version, CommandVersion)
	}
	if err := ValidateCommandID(c.ID); err != nil {
		return err
	}
	if err := ValidateName("site", c.Site); err != nil {
		return fmt.Errorf("%w: %w", ErrBadCommand, err)
	}
	if err := ValidateName("device", c.Device); err != nil {
		return fmt.Errorf("%w: %w", ErrBadCommand, err)
	}
	if err := ValidateMQTTTopic(c.Topic); err != nil {
		return err
	}
	if c.QoS > 1 {
		return fmt.Errorf("%w: qos %d, want 0 or 1", ErrBadCommand, c.QoS)
	}
	if c.Expires.IsZero() || c.Expires.Before(c.Created) {
		return fmt.Errorf("%w: expires %v is before created %v", ErrBadCommand, c.Expires, c.Created)
	}
	return nil
}

// DecodeCommand decodes and validates a command.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	if err := json.Unmarshal(b, &c); err != nil {
		return Command{}, fmt.Errorf("%w: %w", ErrBadCommand, err)
	}
	return c, c.Validate()
}

// CommandStatusRecord is the value of a record of log topic
// CommandStatusTopic: one status change of one command, as the edge saw it.
type CommandStatusRecord struct {
	Version int           `json:"v"`
	ID      string        `json:"id"`
	Site    string        `json:"site"`
	Device  string        `json:"device"`
	Status  CommandStatus `json:"status"`
	Time    time.Time     `json:"time"`
	// Reason says why (rejected, expired, failed); may be empty.
	Reason string `json:"reason,omitempty"`
	// Result is the device's answer (succeeded, failed), at most
	// MaxCommandResultBytes.
	Result []byte `json:"result,omitempty"`
	// Node is the edge node that made the change.
	Node string `json:"node,omitempty"`
}

// MaxCommandResultBytes bounds the device answer kept with a command.
const MaxCommandResultBytes = 16 << 10

// Validate checks a decoded status record.
func (r *CommandStatusRecord) Validate() error {
	if r.Version < 1 || r.Version > CommandVersion {
		return fmt.Errorf("%w: status record version %d", ErrBadCommand, r.Version)
	}
	if err := ValidateCommandID(r.ID); err != nil {
		return err
	}
	if err := ValidateName("site", r.Site); err != nil {
		return fmt.Errorf("%w: %w", ErrBadCommand, err)
	}
	if err := ValidateName("device", r.Device); err != nil {
		return fmt.Errorf("%w: %w", ErrBadCommand, err)
	}
	if !r.Status.Valid() {
		return fmt.Errorf("%w: status %q", ErrBadCommand, r.Status)
	}
	if len(r.Result) > MaxCommandResultBytes {
		return fmt.Errorf("%w: result of %d bytes, at most %d", ErrBadCommand, len(r.Result), MaxCommandResultBytes)
	}
	return nil
}

// DecodeCommandStatusRecord decodes and validates a status record.
func DecodeCommandStatusRecord(b []byte) (CommandStatusRecord, error) {
	var r CommandStatusRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return CommandStatusRecord{}, fmt.Errorf("%w: %w", ErrBadCommand, err)
	}
	return r, r.Validate()
}

// StatusChange is one entry of a command's history.
type StatusChange struct {
	Status CommandStatus `json:"status"`
	Time   time.Time     `json:"time"`
	Reason string        `json:"reason,omitempty"`
	Node   string        `json:"node,omitempty"`
}

// CommandState is the value of a command's key in CommandStateBucket: the
// command, its current status and the history of its status changes.
type CommandState struct {
	Command
	Status  CommandStatus  `json:"status"`
	Reason  string         `json:"reason,omitempty"`
	Result  []byte         `json:"result,omitempty"`
	History []StatusChange `json:"history"`
}

// DecodeCommandState decodes a state value.
func DecodeCommandState(b []byte) (CommandState, error) {
	var s CommandState
	if err := json.Unmarshal(b, &s); err != nil {
		return CommandState{}, fmt.Errorf("%w: state: %w", ErrBadCommand, err)
	}
	if s.Version < 1 || s.Version > CommandVersion {
		return CommandState{}, fmt.Errorf("%w: state version %d", ErrBadCommand, s.Version)
	}
	return s, nil
}

// Apply folds one status record into s and reports whether s changed. It
// is a pure function, idempotent and order-tolerant, because status
// records may be folded late (a core killed mid-fold gets its unacked
// records again after later ones):
//   - a status already in the history changes nothing (repeats);
//   - a status further along (queued < at_edge < delivered < final) moves
//     the command and is appended to the history;
//   - an earlier step arriving late (at_edge after delivered, delivered
//     after succeeded) is inserted into the history by time, the current
//     status stays;
//   - a second final status never replaces the first, and nothing is
//     delivered after expired or rejected — except that an expiry core
//     inferred (ReasonExpiredInCentre) yields to the edge's delivered,
//     succeeded or failed.
func (s *CommandState) Apply(r CommandStatusRecord) bool {
	for _, h := range s.History {
		if h.Status == r.Status {
			return false
		}
	}
	inferred := s.Status == StatusExpired && s.Reason == ReasonExpiredInCentre
	reached := r.Status == StatusDelivered || r.Status == StatusSucceeded || r.Status == StatusFailed
	change := StatusChange{Status: r.Status, Time: r.Time, Reason: r.Reason, Node: r.Node}
	switch {
	case r.Status.rank() > s.Status.rank() || (inferred && reached):
		s.Status, s.Reason = r.Status, r.Reason
		if len(r.Result) > 0 {
			s.Result = r.Result
		}
		s.History = append(s.History, change)
		return true
	case r.Status.Final():
		return false
	case r.Status == StatusDelivered && (s.Status == StatusExpired || s.Status == StatusRejected):
		return false
	}
	i := len(s.History)
	for i > 0 && s.History[i-1].Time.After(r.Time) {
		i--
	}
	s.History = append(s.History[:i], append([]StatusChange{change}, s.History[i:]...)...)
	return true
}

// NewCommandState returns the state of a command core just accepted.
func NewCommandState(c Command, status CommandStatus, reason string) CommandState {
	return CommandState{Command: c, Status: status, Reason: reason,
		History: []StatusChange{{Status: status, Time: c.Created, Reason: reason}}}
}

func upperPrefix(prefix string) string { return strings.ToUpper(strings.ReplaceAll(prefix, ".", "_")) }

// CommandStreamName is the work-queue stream of commands, e.g.
// OUTPOST-COMMANDS.
func CommandStreamName(prefix string) string { return upperPrefix(prefix) + "-COMMANDS" }

// CommandStateBucket is the KV bucket of command states, e.g.
// OUTPOST-COMMAND-STATE.
func CommandStateBucket(prefix string) string { return upperPrefix(prefix) + "-COMMAND-STATE" }

// CommandSubject is the subject commands for one device are stored on:
// <prefix>.$cmd.<site>.<device>.
func CommandSubject(prefix, site, device string) string {
	return prefix + "." + commandToken + "." + site + "." + device
}

// CommandSiteFilter matches the commands of every device of site; the
// edge's durable consumer filters on it.
func CommandSiteFilter(prefix, site string) string {
	return prefix + "." + commandToken + "." + site + ".*"
}

// CommandStreamSubjects is the commands stream's subject filter.
func CommandStreamSubjects(prefix string) string { return prefix + "." + commandToken + ".*.*" }

// CommandConsumerName is the durable consumer a site's edge takes its
// commands from: edge-<site>.
func CommandConsumerName(site string) string { return "edge-" + site }

// CommandSendSubject is where applications send commands over NATS
// (request/reply, CommandRequest → CommandReply).
func CommandSendSubject(prefix string) string { return prefix + "." + commandAPIToken + ".send" }

// CommandGetSubject is where applications read a command's state over NATS
// (request/reply, CommandQuery → CommandReply).
func CommandGetSubject(prefix string) string { return prefix + "." + commandAPIToken + ".get" }

// CommandStateKey is a command's key in CommandStateBucket:
// <site>.<device>.<id>.
func CommandStateKey(site, device, id string) string { return site + "." + device + "." + id }

// CommandRequest is what an application sends (HTTP body, or the NATS
// request on CommandSendSubject with Site and Device set).
type CommandRequest struct {
	Site   string `json:"site,omitempty"`
	Device string `json:"device,omitempty"`
	Topic  string `json:"topic"`
	// PayloadText and Payload (base64) are alternatives.
	PayloadText *string `json:"payload_text,omitempty"`
	Payload     []byte  `json:"payload,omitempty"`
	// QoS defaults to 1.
	QoS *byte `json:"qos,omitempty"`
	// TTL is a Go duration ("10m"); "" takes core's default.
	TTL string `json:"ttl,omitempty"`
	// ID is optional: the same id twice is one command.
	ID string `json:"id,omitempty"`
}

// CommandQuery asks for one command's state (NATS, CommandGetSubject).
type CommandQuery struct {
	Site   string `json:"site"`
	Device string `json:"device"`
	ID     string `json:"id"`
}

// CommandReply answers CommandRequest and CommandQuery over NATS: the
// command's state, or an error.
type CommandReply struct {
	*CommandState
	Error string `json:"error,omitempty"`
}
