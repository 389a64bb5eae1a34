package schemacheck

import (
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/bridge/route"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
)

// CodePayloadFormatInvalid is the MQTT 5 reason code of a refused payload.
const CodePayloadFormatInvalid = 0x99

// Policy says what happens to a payload whose schema the node does not
// know (never synced, or a version or ID newer than the node's copy).
type Policy string

const (
	// PolicyRefuse treats it as a violation: refused or dead-lettered.
	PolicyRefuse Policy = "refuse"
	// PolicyAccept appends it unchecked (without a schema ID header).
	PolicyAccept Policy = "accept"
)

// ParsePolicy parses on_unknown_schema ("" is refuse).
func ParsePolicy(s string) (Policy, error) {
	switch Policy(s) {
	case "", PolicyRefuse:
		return PolicyRefuse, nil
	case PolicyAccept:
		return PolicyAccept, nil
	}
	return "", fmt.Errorf("%q is not one of refuse, accept", s)
}

// Config configures a Checker.
type Config struct {
	// Topics are the routed log topics (route.Router.Topics); those with a
	// SchemaSubject are checked.
	Topics []route.TopicSpec
	// OnUnknown applies when a topic's schema is not known at the node.
	OnUnknown Policy
	// Logger receives changes of what the node can check; nil discards.
	Logger *slog.Logger
	// Registerer receives the outpost_schema_* check metrics; nil
	// registers nothing.
	Registerer prometheus.Registerer
}

// Publish is what a check sees of a publish (bridge/mqtt's check stage
// hands it over): read-only.
type Publish struct {
	Protocol       byte   // 4 (3.1.1) or 5
	QoS            byte   // 0, 1, 2
	LogTopic       string // the routed log topic
	Payload        []byte
	ContentType    string
	UserProperties []packets.UserProperty
}

// Verdict is a check's outcome; the zero value accepts the publish as is.
type Verdict struct {
	// Refuse: answer PUBACK/PUBREC with Code and Reason (MQTT 5 QoS 1/2
	// only) and append nothing.
	Refuse bool
	Code   byte
	Reason string
	// RedirectTo, if set, is the log topic to append to instead (the
	// dead-letter topic), same partition and key.
	RedirectTo string
	// Headers are extra record headers: the schema ID of a checked record,
	// the reason, subject and version of a dead letter. Read-only: they may
	// be shared between records.
	Headers []log.Header
}

// Checker validates payloads against the node's copy of the registry. Its
// schemas change with Update (from sync/schema, wired by edge/node); Check
// reads an immutable snapshot, so checks never wait for an update. It is
// safe for concurrent use.
type Checker struct {
	topics    []route.TopicSpec
	onUnknown Policy
	log       *slog.Logger
	m         *metrics
	state     atomic.Pointer[state]

	mu sync.Mutex // serializes Update
}

// state is one immutable snapshot: per checked log topic, what to check
// against.
type state struct {
	topics  map[string]*topicState
	byID    map[int]*compiled // every compiled schema, reused by the next Update
	version uint64
}

type topicState struct {
	spec route.TopicSpec
	// def is the schema for payloads that name none: the pinned version or
	// the latest; nil if the node does not know it (unknown says why).
	def     *compiled
	defVer  int
	unknown string
	// versions maps each ID of the subject to its version.
	versions map[int]int
	counters *topicCounters
}

// New returns a Checker that knows no schema yet: until the first Update,
// every checked topic's schema is unknown.
func New(cfg Config) (*Checker, error) {
	if cfg.OnUnknown == "" {
		cfg.OnUnknown = PolicyRefuse
	}
	if _, err := ParsePolicy(string(cfg.OnUnknown)); err != nil {
		return nil, fmt.Errorf("schemacheck: OnUnknown: %w", err)
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	c := &Checker{onUnknown: cfg.OnUnknown, log: lg, m: m}
	for _, t := range cfg.Topics {
		if t.SchemaSubject != "" {
			c.topics = append(c.topics, t)
		}
	}
	// Until the first Update every checked topic is unknown; the node says
	// so at start (Unknown) once it has loaded its stored copy, so this
	// empty state is not logged.
	c.update(nil, nil, false)
	return c, nil
}

// Subjects lists the subjects the checked topics name (what the node must
// keep a copy of), without duplicates.
func (c *Checker) Subjects() []string {
	seen := map[string]bool{}
	var out []string
	for _, t := range c.topics {
		if !seen[t.SchemaSubject] {
			seen[t.SchemaSubject] = true
			out = append(out, t.SchemaSubject)
		}
	}
	return out
}

// Update replaces the node's copy of the registry: subject records and the
// schemas they (and their references) name. Schemas are compiled once per
// ID; an ID already compiled is reused. It logs each topic whose
// checkability changed.
func (c *Checker) Update(subjects []wire.SubjectRecord, schemas []wire.SchemaRecord) {
	c.update(subjects, schemas, true)
}

func (c *Checker) update(subjects []wire.SubjectRecord, schemas []wire.SchemaRecord, logChanges bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.state.Load()
	l := lookup{subjects: make(map[string]*wire.SubjectRecord, len(subjects)), schemas: make(map[int]*wire.SchemaRecord, len(schemas))}
	for i := range subjects {
		l.subjects[subjects[i].Subject] = &subjects[i]
	}
	for i := range schemas {
		l.schemas[schemas[i].ID] = &schemas[i]
	}
	next := &state{topics: make(map[string]*topicState, len(c.topics)), byID: map[int]*compiled{}}
	if old != nil {
		next.version = old.version + 1
	}
	get := func(id int) *compiled {
		if s, ok := next.byID[id]; ok {
			return s
		}
		var s *compiled
		if old != nil && old.byID[id] != nil {
			s = old.byID[id]
		} else if rec, ok := l.schemas[id]; ok {
			s = compile(rec, l)
			if s.err != nil {
				c.log.Warn("schemacheck: a schema does not compile at the edge; payloads checked against it count as unknown schema",
					"id", id, "err", s.err)
			}
		}
		if s != nil {
			next.byID[id] = s
		}
		return s
	}
	for _, t := range c.topics {
		ts := &topicState{spec: t, versions: map[int]int{}, counters: c.m.forTopic(t.SchemaSubject)}
		c.resolveTopic(ts, l, get)
		next.topics[t.Name] = ts
		if logChanges {
			c.logChange(old, ts)
		}
	}
	c.state.Store(next)
}

// resolveTopic fills ts from the registry copy.
func (c *Checker) resolveTopic(ts *topicState, l lookup, get func(int) *compiled) {
	t := ts.spec
	sr, ok := l.subjects[t.SchemaSubject]
	if !ok {
		ts.unknown = fmt.Sprintf("schema subject %q is not known at this node (not yet synced from the registry)", t.SchemaSubject)
		return
	}
	for _, v := range sr.Versions {
		// Every version is compiled, not only the default: a device may
		// name any of them (schema-id).
		ts.versions[v.ID] = v.Version
		get(v.ID)
	}
	var want wire.SubjectVersion
	if t.SchemaVersion == 0 {
		if want, ok = sr.Latest(); !ok {
			ts.unknown = fmt.Sprintf("schema subject %q has no version that is not deleted", t.SchemaSubject)
			return
		}
	} else {
		ok = false
		for _, v := range sr.Versions {
			if v.Version == t.SchemaVersion {
				want, ok = v, true
			}
		}
		if !ok {
			ts.unknown = fmt.Sprintf("schema subject %q version %d is not known at this node", t.SchemaSubject, t.SchemaVersion)
			return
		}
	}
	s := get(want.ID)
	switch {
	case s == nil:
		ts.unknown = fmt.Sprintf("schema %d (subject %q version %d) is not known at this node", want.ID, t.SchemaSubject, want.Version)
	case s.err != nil:
		ts.unknown = clip(fmt.Sprintf("schema %d (subject %q version %d) does not compile at the edge: %v", want.ID, t.SchemaSubject, want.Version, s.err))
	default:
		ts.def, ts.defVer = s, want.Version
	}
}

func (c *Checker) logChange(old *state, ts *topicState) {
	var before *topicState
	if old != nil {
		before = old.topics[ts.spec.Name]
	}
	switch {
	case ts.def == nil && (before == nil || before.def != nil || before.unknown != ts.unknown):
		c.log.Warn("schemacheck: topic's schema is unknown at this node; on_unknown_schema applies",
			"topic", ts.spec.Name, "subject", ts.spec.SchemaSubject, "reason", ts.unknown, "on_unknown_schema", string(c.onUnknown))
	case ts.def != nil && (before == nil || before.def != ts.def):
		c.log.Info("schemacheck: topic checked against schema",
			"topic", ts.spec.Name, "subject", ts.spec.SchemaSubject, "version", ts.defVer, "id", ts.def.id)
	}
}

// Unknown lists, for each checked topic whose schema the node cannot check
// against now, why (for the node's start-up message).
func (c *Checker) Unknown() map[string]string {
	out := map[string]string{}
	for name, ts := range c.state.Load().topics {
		if ts.def == nil {
			out[name] = ts.unknown
		}
	}
	return out
}

// Check validates one publish. Publishes to topics without a schema get
// the zero Verdict at the cost of one map lookup.
func (c *Checker) Check(p Publish) Verdict {
	st := c.state.Load()
	ts := st.topics[p.LogTopic]
	if ts == nil {
		return Verdict{}
	}
	ts.counters.checked.Inc()
	s, ver := ts.def, ts.defVer
	if id, named, bad := namedSchemaID(p.ContentType, p.UserProperties); bad != "" {
		return c.violation(p, ts, nil, 0, reasonBadID, bad)
	} else if named && (s == nil || id != s.id) {
		v, ok := ts.versions[id]
		if !ok {
			return c.unknown(p, ts, fmt.Sprintf("schema-id %d is not a version of subject %q known at this node", id, ts.spec.SchemaSubject))
		}
		s, ver = st.byID[id], v
		if s == nil || s.err != nil {
			return c.unknown(p, ts, fmt.Sprintf("schema %d (subject %q version %d) cannot be checked at this node", id, ts.spec.SchemaSubject, v))
		}
	}
	if s == nil {
		return c.unknown(p, ts, ts.unknown)
	}
	if why := s.validate(p.Payload); why != "" {
		return c.violation(p, ts, s, ver, reasonInvalid, why)
	}
	return Verdict{Headers: s.idHeader}
}

// unknown applies on_unknown_schema.
func (c *Checker) unknown(p Publish, ts *topicState, why string) Verdict {
	if c.onUnknown == PolicyAccept {
		ts.counters.unchecked.Inc()
		return Verdict{}
	}
	return c.violation(p, ts, nil, 0, reasonUnknown, why)
}

// violation refuses an MQTT 5 QoS 1/2 publish with 0x99 and the reason;
// any other goes to the dead-letter topic with the reason, subject and
// version in headers (a 3.1.1 device has no negative ack and would resend
// a refused publish forever).
func (c *Checker) violation(p Publish, ts *topicState, s *compiled, ver int, reason, why string) Verdict {
	subject := ts.spec.SchemaSubject
	if p.Protocol == 5 && p.QoS > 0 {
		ts.counters.violations(reason, actionRefused).Inc()
		text := fmt.Sprintf("schema %s", subject)
		if ver > 0 {
			text += " v" + strconv.Itoa(ver)
		}
		return Verdict{Refuse: true, Code: CodePayloadFormatInvalid, Reason: clip(text + ": " + why)}
	}
	ts.counters.violations(reason, actionDeadLettered).Inc()
	h := []log.Header{
		{Key: wire.RecordHeaderSchemaError, Value: []byte(why)},
		{Key: wire.RecordHeaderSchemaSubject, Value: []byte(subject)},
	}
	if s != nil {
		h = append(h,
			log.Header{Key: wire.RecordHeaderSchemaVersion, Value: []byte(strconv.Itoa(ver))},
			log.Header{Key: wire.RecordHeaderSchemaID, Value: s.idHeader[0].Value})
	}
	return Verdict{RedirectTo: ts.spec.Name + route.DeadLetterSuffix, Headers: h}
}
