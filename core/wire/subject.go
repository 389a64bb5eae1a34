package wire

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// DefaultPrefix is the first subject token(s) of every Outpost subject unless
// a deployment configures another one (several deployments sharing a NATS
// account keep apart by prefix).
const DefaultPrefix = "outpost"

// TopicDotEscape replaces '.' in a log topic name wherever the name has to be
// one NATS subject token or part of a stream name. Log topic names are
// [A-Za-z0-9._-], so '~' never occurs in them and the mapping is reversible:
// topic "plant.temps" is subject token and stream suffix "plant~temps".
const TopicDotEscape = '~'

// Limits on names. They keep subjects, stream names and Nats-Msg-Ids short
// enough for every NATS limit (JetStream names are at most 255 bytes).
const (
	MaxTopicLen  = 200
	MaxNameLen   = 64
	MaxPrefixLen = 64
)

// Reserved second tokens. They start with '$', which no topic token can
// contain, so control subjects never overlap a data stream's subjects.
const (
	statusToken    = "$status"
	provisionToken = "$provision"
)

// ErrBadSubject is wrapped by every subject and name validation error.
var ErrBadSubject = errors.New("wire: bad subject or name")

// Origin names the log partition a record comes from. Together with the
// record's offset it identifies the record everywhere (G3).
type Origin struct {
	// Site is the field site (a NATS subject token: [A-Za-z0-9_-]).
	Site string
	// Node is the edge node at the site ([A-Za-z0-9_-]).
	Node string
	// Topic is the log topic ([A-Za-z0-9._-], as in edge/log).
	Topic string
	// Partition is the partition of Topic on Node, >= 0.
	Partition int32
}

// String returns site/node/topic/partition, the form used in logs and in
// Nats-Msg-Id.
func (o Origin) String() string {
	return o.Site + "/" + o.Node + "/" + o.Topic + "/" + strconv.FormatInt(int64(o.Partition), 10)
}

// Validate checks every field of o.
func (o Origin) Validate() error {
	if err := ValidateName("site", o.Site); err != nil {
		return err
	}
	if err := ValidateName("node", o.Node); err != nil {
		return err
	}
	if err := ValidateTopic(o.Topic); err != nil {
		return err
	}
	if o.Partition < 0 {
		return fmt.Errorf("%w: partition %d is negative", ErrBadSubject, o.Partition)
	}
	return nil
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// ValidateName checks a site or node name: 1..MaxNameLen bytes of
// [A-Za-z0-9_-]. That is stricter than a NATS token needs (no dots, spaces,
// wildcards) on purpose: the names also appear in Nats-Msg-Id, stream
// metadata, metric labels and file names. what names the field in the error.
func ValidateName(what, s string) error {
	if s == "" {
		return fmt.Errorf("%w: %s is empty", ErrBadSubject, what)
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("%w: %s %q is longer than %d bytes", ErrBadSubject, what, s, MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) {
			return fmt.Errorf("%w: %s %q has %q; use only letters, digits, '_' and '-'", ErrBadSubject, what, s, s[i])
		}
	}
	return nil
}

// ValidateTopic checks a log topic name as edge/log does: 1..MaxTopicLen
// bytes of [A-Za-z0-9._-], not "." or "..".
func ValidateTopic(topic string) error {
	if topic == "" {
		return fmt.Errorf("%w: topic is empty", ErrBadSubject)
	}
	if len(topic) > MaxTopicLen {
		return fmt.Errorf("%w: topic %q is longer than %d bytes", ErrBadSubject, topic, MaxTopicLen)
	}
	if topic == "." || topic == ".." {
		return fmt.Errorf("%w: topic %q is not allowed", ErrBadSubject, topic)
	}
	for i := 0; i < len(topic); i++ {
		if c := topic[i]; !isNameByte(c) && c != '.' {
			return fmt.Errorf("%w: topic %q has %q; use only letters, digits, '.', '_' and '-'", ErrBadSubject, topic, c)
		}
	}
	return nil
}

// ValidatePrefix checks a subject prefix: one or more dot-separated tokens of
// [A-Za-z0-9_-], at most MaxPrefixLen bytes.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return fmt.Errorf("%w: prefix is empty", ErrBadSubject)
	}
	if len(prefix) > MaxPrefixLen {
		return fmt.Errorf("%w: prefix %q is longer than %d bytes", ErrBadSubject, prefix, MaxPrefixLen)
	}
	for _, tok := range strings.Split(prefix, ".") {
		if err := ValidateName("prefix token", tok); err != nil {
			return fmt.Errorf("%w (in prefix %q)", err, prefix)
		}
	}
	return nil
}

// TopicToken maps a log topic name to its subject token ('.' becomes '~').
func TopicToken(topic string) string {
	return strings.ReplaceAll(topic, ".", string(TopicDotEscape))
}

// TopicFromToken reverses TopicToken and validates the result.
func TopicFromToken(tok string) (string, error) {
	if strings.ContainsRune(tok, '.') {
		return "", fmt.Errorf("%w: topic token %q contains '.'", ErrBadSubject, tok)
	}
	topic := strings.ReplaceAll(tok, string(TopicDotEscape), ".")
	if err := ValidateTopic(topic); err != nil {
		return "", err
	}
	return topic, nil
}

// Subject returns the subject records of o are published on:
// <prefix>.<topic token>.<site>.<node>.<partition>. One subject per origin
// partition is what lets a forwarder ask the stream for the last record of
// its partition (LastOffset).
func Subject(prefix string, o Origin) (string, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return "", err
	}
	if err := o.Validate(); err != nil {
		return "", err
	}
	return prefix + "." + TopicToken(o.Topic) + "." + o.Site + "." + o.Node + "." +
		strconv.FormatInt(int64(o.Partition), 10), nil
}

// ParseSubject is the inverse of Subject for a known prefix.
func ParseSubject(prefix, subject string) (Origin, error) {
	rest, ok := strings.CutPrefix(subject, prefix+".")
	if !ok || prefix == "" {
		return Origin{}, fmt.Errorf("%w: subject %q does not start with prefix %q", ErrBadSubject, subject, prefix)
	}
	toks := strings.Split(rest, ".")
	if len(toks) != 4 {
		return Origin{}, fmt.Errorf("%w: subject %q: want %s.<topic>.<site>.<node>.<partition>", ErrBadSubject, subject, prefix)
	}
	topic, err := TopicFromToken(toks[0])
	if err != nil {
		return Origin{}, fmt.Errorf("subject %q: %w", subject, err)
	}
	part, err := parsePartition(toks[3])
	if err != nil {
		return Origin{}, fmt.Errorf("subject %q: %w", subject, err)
	}
	o := Origin{Site: toks[1], Node: toks[2], Topic: topic, Partition: part}
	if err := o.Validate(); err != nil {
		return Origin{}, fmt.Errorf("subject %q: %w", subject, err)
	}
	return o, nil
}

// parsePartition accepts only the canonical decimal form, so that one
// partition has exactly one subject.
func parsePartition(s string) (int32, error) {
	p, err := strconv.ParseInt(s, 10, 32)
	if err != nil || p < 0 || strconv.FormatInt(p, 10) != s {
		return 0, fmt.Errorf("%w: partition %q is not a canonical non-negative integer", ErrBadSubject, s)
	}
	return int32(p), nil
}

// StreamName returns the JetStream stream that holds topic:
// upper-cased prefix with '.' as '_', then '_', then the topic token, e.g.
// OUTPOST_telemetry, OUTPOST_plant~temps. The topic part is not upper-cased,
// so distinct topics never share a stream.
func StreamName(prefix, topic string) string {
	return strings.ToUpper(strings.ReplaceAll(prefix, ".", "_")) + "_" + TopicToken(topic)
}

// StreamSubjects returns the subject filter of topic's stream:
// <prefix>.<topic token>.>. Streams of distinct topics never overlap because
// the topic token is one whole token.
func StreamSubjects(prefix, topic string) string {
	return prefix + "." + TopicToken(topic) + ".>"
}

// StatusSubject is where node publishes its Status reports (a plain core
// NATS publish): <prefix>.$status.<site>.<node>. Core's status stream
// (StatusStreamName) captures it where core could create that stream; the
// edge neither knows nor cares.
func StatusSubject(prefix, site, node string) string {
	return prefix + "." + statusToken + "." + site + "." + node
}

// StatusSubscription matches every node's StatusSubject.
func StatusSubscription(prefix string) string {
	return prefix + "." + statusToken + ".*.*"
}

// StatusStreamName returns the JetStream stream core keeps the last Status
// of every node in: the upper-cased prefix with '.' as '_', then "-STATUS",
// e.g. OUTPOST-STATUS. A topic's stream name continues the prefix with '_'
// (StreamName), so no topic can produce this name; '-' rather than '$'
// keeps it usable unquoted in a shell (nats stream info OUTPOST-STATUS).
func StatusStreamName(prefix string) string {
	return strings.ToUpper(strings.ReplaceAll(prefix, ".", "_")) + "-STATUS"
}

// StatusStreamSubjects returns the subject filter of StatusStreamName: every
// node's StatusSubject. It never overlaps a topic's StreamSubjects, because
// its second token starts with '$', which no topic token contains.
func StatusStreamSubjects(prefix string) string {
	return StatusSubscription(prefix)
}

// ParseStatusSubject returns the site and node of a StatusSubject.
func ParseStatusSubject(prefix, subject string) (site, node string, err error) {
	return parseControlSubject(prefix, statusToken, subject)
}

// ProvisionSubject is where node sends ProvisionRequests (request/reply):
// <prefix>.$provision.<site>.<node>.
func ProvisionSubject(prefix, site, node string) string {
	return prefix + "." + provisionToken + "." + site + "." + node
}

// ProvisionSubscription matches every node's ProvisionSubject.
func ProvisionSubscription(prefix string) string {
	return prefix + "." + provisionToken + ".*.*"
}

// ParseProvisionSubject returns the site and node of a ProvisionSubject.
func ParseProvisionSubject(prefix, subject string) (site, node string, err error) {
	return parseControlSubject(prefix, provisionToken, subject)
}

func parseControlSubject(prefix, token, subject string) (site, node string, err error) {
	rest, ok := strings.CutPrefix(subject, prefix+"."+token+".")
	if !ok {
		return "", "", fmt.Errorf("%w: %q is not a %s subject under %q", ErrBadSubject, subject, token, prefix)
	}
	site, node, ok = strings.Cut(rest, ".")
	if !ok {
		return "", "", fmt.Errorf("%w: %q: want %s.%s.<site>.<node>", ErrBadSubject, subject, prefix, token)
	}
	if err := ValidateName("site", site); err != nil {
		return "", "", err
	}
	if err := ValidateName("node", node); err != nil {
		return "", "", err
	}
	return site, node, nil
}
