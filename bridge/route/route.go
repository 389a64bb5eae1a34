package route

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

const (
	// DefaultTopic is the log topic of publishes that match no rule.
	DefaultTopic = "telemetry"
	// DefaultPartitions is the partition count of the default topic.
	DefaultPartitions = 8
)

// KeySource says where a record's key comes from.
type KeySource string

const (
	// KeyClientID keys by the MQTT client id (the default).
	KeyClientID KeySource = "client_id"
	// KeyTopicLevel keys by one level of the MQTT topic (Rule.KeyLevel,
	// counted from 0).
	KeyTopicLevel KeySource = "topic_level"
	// KeyJSONField keys by a field of a JSON object payload (Rule.KeyField,
	// a dotted path such as "device.id").
	KeyJSONField KeySource = "json_field"
)

// Rule routes publishes whose topic matches Filter.
type Rule struct {
	// Filter is an MQTT topic filter ("+" and "#" wildcards).
	Filter string `yaml:"filter"`
	// Topic is the log topic the publishes go to.
	Topic string `yaml:"topic"`
	// Partitions is the log topic's partition count; 0 means
	// DefaultPartitions. Rules naming the same topic must agree.
	Partitions int32 `yaml:"partitions"`
	// Key is where the key comes from; empty means client_id.
	Key KeySource `yaml:"key"`
	// KeyLevel is the topic level used by key: topic_level.
	KeyLevel int `yaml:"key_level"`
	// KeyField is the JSON path used by key: json_field.
	KeyField string `yaml:"key_field"`
	// SchemaSubject names the registry subject the payloads routed here
	// must match; "" means no check. Rules naming the same log topic must
	// name the same subject and version: a topic requires one schema.
	SchemaSubject string `yaml:"schema_subject"`
	// SchemaVersion pins a version of SchemaSubject; 0 means its latest.
	SchemaVersion int `yaml:"schema_version"`
}

// Config configures a Router. The zero value routes everything to
// DefaultTopic with DefaultPartitions partitions.
type Config struct {
	// Rules are tried in order.
	Rules []Rule `yaml:"rules"`
	// DefaultTopic receives publishes that match no rule; empty means
	// DefaultTopic.
	DefaultTopic string `yaml:"default_topic"`
	// DefaultPartitions is the default topic's partition count; 0 means
	// DefaultPartitions.
	DefaultPartitions int32 `yaml:"default_partitions"`
	// DefaultSchemaSubject and DefaultSchemaVersion are the default
	// route's schema_subject and schema_version (see Rule).
	DefaultSchemaSubject string `yaml:"default_schema_subject"`
	DefaultSchemaVersion int    `yaml:"default_schema_version"`
}

// DefaultConfig returns the defaults as a fresh value.
func DefaultConfig() Config {
	return Config{DefaultTopic: DefaultTopic, DefaultPartitions: DefaultPartitions}
}

// TopicSpec is a log topic the router can send to.
type TopicSpec struct {
	Name       string
	Partitions int32
	// SchemaSubject and SchemaVersion are the schema the topic's payloads
	// must match ("" for none; version 0 for the subject's latest).
	SchemaSubject string
	SchemaVersion int
}

// DeadLetterSuffix names a topic's dead-letter topic: payloads routed to
// topic T that fail T's schema check and cannot be refused (MQTT 3.1.1,
// QoS 0) are appended to T + DeadLetterSuffix instead.
const DeadLetterSuffix = ".dead"

// Target is where one publish goes.
type Target struct {
	Topic     string
	Partition int32
	Key       []byte
}

// Router maps publishes to Targets.
type Router struct {
	rules  []compiled
	def    compiled
	topics []TopicSpec
}

type compiled struct {
	Rule
	levels []string
	path   []string
}

// validTopic mirrors edge/log's topic name rule; route does not import the
// log so that the rule set can be validated without opening anything.
func validTopic(s string) bool {
	if s == "" || len(s) > 200 || s == "." || s == ".." {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Validate checks the rules; errors name the offending field.
func (c Config) Validate() error {
	_, err := New(c)
	return err
}

// New compiles a rule set.
func New(cfg Config) (*Router, error) {
	if cfg.DefaultTopic == "" {
		cfg.DefaultTopic = DefaultTopic
	}
	if cfg.DefaultPartitions == 0 {
		cfg.DefaultPartitions = DefaultPartitions
	}
	if !validTopic(cfg.DefaultTopic) {
		return nil, fmt.Errorf("route: default_topic: %q is not a valid log topic (1-200 of A-Z a-z 0-9 . _ -)", cfg.DefaultTopic)
	}
	if cfg.DefaultPartitions < 1 || cfg.DefaultPartitions > 4096 {
		return nil, fmt.Errorf("route: default_partitions: %d is not between 1 and 4096", cfg.DefaultPartitions)
	}
	def := Rule{Filter: "#", Topic: cfg.DefaultTopic, Partitions: cfg.DefaultPartitions, Key: KeyClientID,
		SchemaSubject: cfg.DefaultSchemaSubject, SchemaVersion: cfg.DefaultSchemaVersion}
	if err := validSchema(def, "route: default_schema_subject", "route: default_schema_version"); err != nil {
		return nil, err
	}
	r := &Router{def: compiled{Rule: def}}
	parts := map[string]int32{cfg.DefaultTopic: cfg.DefaultPartitions}
	schemas := map[string]schemaOf{cfg.DefaultTopic: {def.SchemaSubject, def.SchemaVersion, "default_schema_subject"}}
	order := []string{cfg.DefaultTopic}
	for i, rule := range cfg.Rules {
		field := fmt.Sprintf("route: rules[%d]", i)
		if err := validFilter(rule.Filter); err != nil {
			return nil, fmt.Errorf("%s.filter: %q: %w", field, rule.Filter, err)
		}
		if !validTopic(rule.Topic) {
			return nil, fmt.Errorf("%s.topic: %q is not a valid log topic (1-200 of A-Z a-z 0-9 . _ -)", field, rule.Topic)
		}
		if rule.Partitions == 0 {
			rule.Partitions = DefaultPartitions
		}
		if rule.Partitions < 1 || rule.Partitions > 4096 {
			return nil, fmt.Errorf("%s.partitions: %d is not between 1 and 4096", field, rule.Partitions)
		}
		if n, ok := parts[rule.Topic]; ok && n != rule.Partitions {
			return nil, fmt.Errorf("%s.partitions: %d, but topic %q has %d elsewhere", field, rule.Partitions, rule.Topic, n)
		} else if !ok {
			parts[rule.Topic] = rule.Partitions
			order = append(order, rule.Topic)
		}
		if err := validSchema(rule, field+".schema_subject", field+".schema_version"); err != nil {
			return nil, err
		}
		want := schemaOf{rule.SchemaSubject, rule.SchemaVersion, strings.TrimPrefix(field, "route: ") + ".schema_subject"}
		if have, ok := schemas[rule.Topic]; ok && (have.subject != want.subject || have.version != want.version) {
			return nil, fmt.Errorf("%s.schema_subject: %q version %d, but %s names %q version %d for the same topic %q; a topic requires one schema: make them agree or route to another topic",
				field, want.subject, want.version, have.field, have.subject, have.version, rule.Topic)
		} else if !ok {
			schemas[rule.Topic] = want
		}
		c := compiled{Rule: rule, levels: strings.Split(rule.Filter, "/")}
		switch rule.Key {
		case "", KeyClientID:
			c.Key = KeyClientID
		case KeyTopicLevel:
			if rule.KeyLevel < 0 {
				return nil, fmt.Errorf("%s.key_level: %d is negative", field, rule.KeyLevel)
			}
		case KeyJSONField:
			if rule.KeyField == "" {
				return nil, fmt.Errorf("%s.key_field: empty, but key is json_field", field)
			}
			c.path = strings.Split(rule.KeyField, ".")
		default:
			return nil, fmt.Errorf("%s.key: %q is not one of client_id, topic_level, json_field", field, rule.Key)
		}
		r.rules = append(r.rules, c)
	}
	for _, name := range order {
		sc := schemas[name]
		r.topics = append(r.topics, TopicSpec{Name: name, Partitions: parts[name], SchemaSubject: sc.subject, SchemaVersion: sc.version})
	}
	for _, t := range r.topics {
		if t.SchemaSubject == "" {
			continue
		}
		dead := t.Name + DeadLetterSuffix
		if !validTopic(dead) {
			return nil, fmt.Errorf("route: %s: topic %q is too long for its dead-letter topic %q (at most 200 bytes)", schemas[t.Name].field, t.Name, dead)
		}
		if n, ok := parts[dead]; ok && n != t.Partitions {
			return nil, fmt.Errorf("route: %s: topic %q has %d partitions, but its dead-letter topic %q is routed with %d; they must agree (a dead letter keeps its partition)", schemas[t.Name].field, t.Name, t.Partitions, dead, n)
		}
	}
	return r, nil
}

// schemaOf is the schema a topic requires and the config field that said so.
type schemaOf struct {
	subject string
	version int
	field   string
}

// validSchema checks a rule's schema_subject and schema_version.
func validSchema(r Rule, subjectField, versionField string) error {
	if r.SchemaVersion < 0 {
		return fmt.Errorf("%s: %d is negative (0 means the subject's latest version)", versionField, r.SchemaVersion)
	}
	if r.SchemaSubject == "" {
		if r.SchemaVersion != 0 {
			return fmt.Errorf("%s: %d, but no schema_subject is named", versionField, r.SchemaVersion)
		}
		return nil
	}
	if len(r.SchemaSubject) > 255 {
		return fmt.Errorf("%s: %d bytes long; at most 255", subjectField, len(r.SchemaSubject))
	}
	for _, c := range r.SchemaSubject {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("%s: %q holds a control character", subjectField, r.SchemaSubject)
		}
	}
	return nil
}

var errFilter = errors.New("not a valid MQTT topic filter")

func validFilter(f string) error {
	if f == "" {
		return errFilter
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return fmt.Errorf("%w: '#' must be a whole last level", errFilter)
		}
		if strings.Contains(l, "+") && l != "+" {
			return fmt.Errorf("%w: '+' must be a whole level", errFilter)
		}
	}
	return nil
}

// Topics lists every log topic the router may send to, default first.
func (r *Router) Topics() []TopicSpec { return append([]TopicSpec(nil), r.topics...) }

// Route returns where a publish goes.
func (r *Router) Route(topic, clientID string, payload []byte) Target {
	rule := &r.def
	for i := range r.rules {
		if match(r.rules[i].levels, topic) {
			rule = &r.rules[i]
			break
		}
	}
	key := rule.key(topic, clientID, payload)
	return Target{Topic: rule.Topic, Partition: Partition(key, rule.Partitions), Key: key}
}

// Partition is the documented key-to-partition function: FNV-1a 32-bit of
// the key, modulo n.
func Partition(key []byte, n int32) int32 {
	// hash/fnv's New32a, inlined: the interface value escapes to the heap
	// on every publish.
	const offset32, prime32 = 2166136261, 16777619
	h := uint32(offset32)
	for _, c := range key {
		h ^= uint32(c)
		h *= prime32
	}
	return int32(h % uint32(n))
}

func (c *compiled) key(topic, clientID string, payload []byte) []byte {
	switch c.Key {
	case KeyTopicLevel:
		if l, ok := level(topic, c.KeyLevel); ok && l != "" {
			return []byte(l)
		}
	case KeyJSONField:
		if k, ok := jsonField(payload, c.path); ok {
			return k
		}
	}
	return []byte(clientID)
}

func level(topic string, n int) (string, bool) {
	for i := 0; ; i++ {
		j := strings.IndexByte(topic, '/')
		if i == n {
			if j < 0 {
				return topic, true
			}
			return topic[:j], true
		}
		if j < 0 {
			return "", false
		}
		topic = topic[j+1:]
	}
}

// jsonField extracts a scalar at path from a JSON object: strings as their
// text, numbers and booleans as written.
func jsonField(payload []byte, path []string) ([]byte, bool) {
	raw := json.RawMessage(payload)
	for _, p := range path {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return nil, false
		}
		v, ok := obj[p]
		if !ok {
			return nil, false
		}
		raw = v
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, false
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, false
		}
		return []byte(s), true
	case '{', '[', 'n':
		return nil, false
	}
	if _, err := strconv.ParseFloat(string(raw), 64); err == nil || string(raw) == "true" || string(raw) == "false" {
		return append([]byte(nil), raw...), true
	}
	return nil, false
}

// match reports whether topic matches the filter's levels. Topics starting
// with '$' do not match filters starting with a wildcard ([MQTT-4.7.2-1]).
func match(filter []string, topic string) bool {
	if len(topic) > 0 && topic[0] == '$' && (filter[0] == "+" || filter[0] == "#") {
		return false
	}
	for i, f := range filter {
		if f == "#" {
			return true
		}
		j := strings.IndexByte(topic, '/')
		var l string
		if j < 0 {
			l = topic
		} else {
			l = topic[:j]
		}
		if f != "+" && f != l {
			return false
		}
		if j < 0 {
			// Topic ends here: it matches if the filter ends too, or
			// continues only with "#" (which matches the parent level).
			return i == len(filter)-1 || (i == len(filter)-2 && filter[i+1] == "#")
		}
		topic = topic[j+1:]
	}
	return false
}
