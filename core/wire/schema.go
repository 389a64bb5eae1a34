package wire

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The schema registry contract. Core's registry (core/schema) keeps all of
// its state in one JetStream KV bucket, SchemaBucket(prefix); edges watch
// that bucket (nats.go KV Watch on SchemaWatchSubjects and SchemaWatchIDs,
// not polling), keep a copy in their metadata store and validate offline.
// Every value is JSON and carries a format version "v" (SchemaFormat);
// a reader refuses a version it does not know rather than misread it.
//
// Keys (KV keys allow [-/_=.A-Za-z0-9]; subjects are free text, so they
// are escaped with EscapeSubject):
//
//	meta.next-id            decimal text: the next schema ID to hand out
//	ids.<id>                SchemaRecord: the schema with global ID <id>;
//	                        written once, never changed, never deleted
//	fp.<sha256 hex>         decimal text: the ID of the schema with that
//	                        fingerprint (SchemaFingerprint), so the same
//	                        schema gets the same ID under every subject
//	subjects.<subject>      SubjectRecord: every version of the subject
//	config                  ConfigRecord: the global compatibility level
//	config.<subject>        ConfigRecord: a subject's level (absent: global)
//	mode                    ModeRecord: the global mode
//	mode.<subject>          ModeRecord: a subject's mode (absent: global)
//
// IDs and versions are never reused, even after a permanent delete: IDs
// come from meta.next-id, a subject's versions from its NextVersion, and
// both only grow. Writers use KV create and update-with-revision
// (compare-and-set), so several registries can share one bucket.
//
// For an edge, the schema a topic requires is: SubjectRecord.Latest() of
// the subject, then ids.<that ID>. Subject records are rewritten whole on
// every change (a new version, a delete), so one watched key gives a
// consistent view of a subject.

// SchemaFormat is the value format version this package reads and writes.
const SchemaFormat = 1

// Schema types as the Confluent API spells them. An empty type means Avro
// (the API's default).
const (
	SchemaTypeAvro     = "AVRO"
	SchemaTypeJSON     = "JSON"
	SchemaTypeProtobuf = "PROTOBUF"
)

// MaxSubjectLen bounds a subject name in bytes (before escaping).
const MaxSubjectLen = 255

// Fixed keys and key prefixes of the schema bucket.
const (
	SchemaKeyNextID       = "meta.next-id"
	SchemaKeyGlobalConfig = "config"
	SchemaKeyGlobalMode   = "mode"

	schemaIDPrefix      = "ids."
	schemaFPPrefix      = "fp."
	schemaSubjectPrefix = "subjects."
	schemaConfigPrefix  = "config."
	schemaModePrefix    = "mode."

	// SchemaWatchSubjects and SchemaWatchIDs are the key filters an edge
	// watches: every subject record, every schema.
	SchemaWatchSubjects = "subjects.>"
	SchemaWatchIDs      = "ids.>"
)

// ErrBadSchemaRecord wraps every refusal to decode a schema bucket value
// or key.
var ErrBadSchemaRecord = errors.New("wire: bad schema registry record")

// SchemaBucket returns the KV bucket of the registry: the upper-cased
// prefix with '.' as '_', then "-SCHEMAS", e.g. OUTPOST-SCHEMAS (its
// stream is KV_OUTPOST-SCHEMAS, apart from every topic stream).
func SchemaBucket(prefix string) string {
	return strings.ToUpper(strings.ReplaceAll(prefix, ".", "_")) + "-SCHEMAS"
}

// ValidateSubject checks a subject name: 1..MaxSubjectLen bytes of UTF-8
// without control characters.
func ValidateSubject(subject string) error {
	if subject == "" {
		return fmt.Errorf("%w: subject is empty", ErrBadSchemaRecord)
	}
	if len(subject) > MaxSubjectLen {
		return fmt.Errorf("%w: subject is %d bytes long; at most %d", ErrBadSchemaRecord, len(subject), MaxSubjectLen)
	}
	if !utf8.ValidString(subject) {
		return fmt.Errorf("%w: subject is not valid UTF-8", ErrBadSchemaRecord)
	}
	for _, r := range subject {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: subject %q holds a control character", ErrBadSchemaRecord, subject)
		}
	}
	return nil
}

// EscapeSubject maps a subject to one KV key token: [A-Za-z0-9_-] stay,
// every other byte becomes '=' and two upper-case hex digits
// ("orders.v1-value" -> "orders=2Ev1-value"). The mapping is reversible and
// keeps common subject names readable in `nats kv ls`.
func EscapeSubject(subject string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(subject))
	for i := 0; i < len(subject); i++ {
		c := subject[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('=')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

// UnescapeSubject reverses EscapeSubject.
func UnescapeSubject(token string) (string, error) {
	if !strings.Contains(token, "=") {
		return token, nil
	}
	b := make([]byte, 0, len(token))
	for i := 0; i < len(token); i++ {
		if token[i] != '=' {
			b = append(b, token[i])
			continue
		}
		if i+2 >= len(token) {
			return "", fmt.Errorf("%w: subject token %q ends inside an escape", ErrBadSchemaRecord, token)
		}
		v, err := strconv.ParseUint(token[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("%w: subject token %q: bad escape", ErrBadSchemaRecord, token)
		}
		b = append(b, byte(v))
		i += 2
	}
	return string(b), nil
}

// SchemaIDKey is the key of schema id.
func SchemaIDKey(id int) string { return schemaIDPrefix + strconv.Itoa(id) }

// SchemaFingerprintKey is the key mapping a SchemaFingerprint to its ID.
func SchemaFingerprintKey(fp string) string { return schemaFPPrefix + fp }

// SchemaSubjectKey is the key of a subject's SubjectRecord.
func SchemaSubjectKey(subject string) string { return schemaSubjectPrefix + EscapeSubject(subject) }

// SchemaConfigKey is the key of a subject's ConfigRecord; "" is the global
// one.
func SchemaConfigKey(subject string) string {
	if subject == "" {
		return SchemaKeyGlobalConfig
	}
	return schemaConfigPrefix + EscapeSubject(subject)
}

// SchemaModeKey is the key of a subject's ModeRecord; "" is the global one.
func SchemaModeKey(subject string) string {
	if subject == "" {
		return SchemaKeyGlobalMode
	}
	return schemaModePrefix + EscapeSubject(subject)
}

// SchemaKeyKind says what a key of the bucket holds.
type SchemaKeyKind int

// The kinds of key in the schema bucket.
const (
	SchemaKeyUnknown SchemaKeyKind = iota
	SchemaKeyID
	SchemaKeyFingerprint
	SchemaKeySubject
	SchemaKeyConfig
	SchemaKeyMode
	SchemaKeyCounter
)

// ParseSchemaKey says what key holds: for SchemaKeyID the ID, for
// subject, config and mode keys the subject ("" for the global config and
// mode), for fingerprints the fingerprint. Unknown keys are
// SchemaKeyUnknown without an error, so a newer registry may add keys
// older edges ignore.
func ParseSchemaKey(key string) (kind SchemaKeyKind, id int, subject string, err error) {
	switch {
	case key == SchemaKeyNextID:
		return SchemaKeyCounter, 0, "", nil
	case key == SchemaKeyGlobalConfig:
		return SchemaKeyConfig, 0, "", nil
	case key == SchemaKeyGlobalMode:
		return SchemaKeyMode, 0, "", nil
	case strings.HasPrefix(key, schemaIDPrefix):
		id, err := parseSchemaID(key[len(schemaIDPrefix):])
		if err != nil {
			return SchemaKeyUnknown, 0, "", err
		}
		return SchemaKeyID, id, "", nil
	case strings.HasPrefix(key, schemaFPPrefix):
		return SchemaKeyFingerprint, 0, key[len(schemaFPPrefix):], nil
	}
	for _, p := range []struct {
		prefix string
		kind   SchemaKeyKind
	}{{schemaSubjectPrefix, SchemaKeySubject}, {schemaConfigPrefix, SchemaKeyConfig}, {schemaModePrefix, SchemaKeyMode}} {
		if tok, ok := strings.CutPrefix(key, p.prefix); ok {
			s, err := UnescapeSubject(tok)
			if err != nil {
				return SchemaKeyUnknown, 0, "", err
			}
			return p.kind, 0, s, nil
		}
	}
	return SchemaKeyUnknown, 0, "", nil
}

func parseSchemaID(s string) (int, error) {
	id, err := strconv.ParseInt(s, 10, 32)
	if err != nil || id < 1 || strconv.FormatInt(id, 10) != s {
		return 0, fmt.Errorf("%w: schema ID %q is not a canonical positive 32-bit decimal", ErrBadSchemaRecord, s)
	}
	return int(id), nil
}

// ParseSchemaCounter decodes meta.next-id or an fp.<fingerprint> value.
func ParseSchemaCounter(b []byte) (int, error) { return parseSchemaID(string(b)) }

// SchemaReference is a reference from one schema to another, as in the
// Confluent API: Name is how the referring schema spells it (an Avro full
// name, a JSON Schema $ref URL), Subject and Version where it is
// registered.
type SchemaReference struct {
	Name    string `json:"name"`
	Subject string `json:"subject"`
	Version int    `json:"version"`
}

// SchemaRecord is the value of ids.<id>.
type SchemaRecord struct {
	V  int `json:"v"`
	ID int `json:"id"`
	// Type is SchemaTypeAvro, SchemaTypeJSON or SchemaTypeProtobuf, never
	// empty in a record.
	Type string `json:"schemaType"`
	// Schema is the schema text as the registry serves it (the registered
	// text with insignificant JSON whitespace removed).
	Schema     string            `json:"schema"`
	References []SchemaReference `json:"references,omitempty"`
}

// SubjectVersion is one version of a subject.
type SubjectVersion struct {
	Version int  `json:"version"`
	ID      int  `json:"id"`
	Deleted bool `json:"deleted,omitempty"` // soft-deleted
}

// SubjectRecord is the value of subjects.<subject>: its versions in
// ascending order (permanently deleted ones are gone) and the next version
// number, which never goes down, so versions are never reused.
type SubjectRecord struct {
	V           int              `json:"v"`
	Subject     string           `json:"subject"`
	Versions    []SubjectVersion `json:"versions"`
	NextVersion int              `json:"nextVersion"`
}

// Latest returns the highest version that is not soft-deleted.
func (r *SubjectRecord) Latest() (SubjectVersion, bool) {
	for i := len(r.Versions) - 1; i >= 0; i-- {
		if !r.Versions[i].Deleted {
			return r.Versions[i], true
		}
	}
	return SubjectVersion{}, false
}

// ConfigRecord is the value of config and config.<subject>.
type ConfigRecord struct {
	V             int    `json:"v"`
	Compatibility string `json:"compatibilityLevel"`
}

// ModeRecord is the value of mode and mode.<subject>.
type ModeRecord struct {
	V    int    `json:"v"`
	Mode string `json:"mode"`
}

// DecodeSchemaRecord decodes and checks an ids.<id> value.
func DecodeSchemaRecord(b []byte) (SchemaRecord, error) {
	var r SchemaRecord
	if err := decodeSchemaValue(b, &r, &r.V); err != nil {
		return r, err
	}
	if r.ID < 1 {
		return r, fmt.Errorf("%w: schema ID %d", ErrBadSchemaRecord, r.ID)
	}
	switch r.Type {
	case SchemaTypeAvro, SchemaTypeJSON, SchemaTypeProtobuf:
	default:
		return r, fmt.Errorf("%w: schema %d has type %q", ErrBadSchemaRecord, r.ID, r.Type)
	}
	return r, nil
}

// DecodeSubjectRecord decodes and checks a subjects.<subject> value:
// versions strictly ascending, all below NextVersion, IDs positive.
func DecodeSubjectRecord(b []byte) (SubjectRecord, error) {
	var r SubjectRecord
	if err := decodeSchemaValue(b, &r, &r.V); err != nil {
		return r, err
	}
	if err := ValidateSubject(r.Subject); err != nil {
		return r, err
	}
	prev := 0
	for _, v := range r.Versions {
		if v.Version <= prev || v.Version >= r.NextVersion || v.ID < 1 {
			return r, fmt.Errorf("%w: subject %q: version %d (ID %d) out of order or past nextVersion %d", ErrBadSchemaRecord, r.Subject, v.Version, v.ID, r.NextVersion)
		}
		prev = v.Version
	}
	return r, nil
}

// DecodeConfigRecord decodes a config value.
func DecodeConfigRecord(b []byte) (ConfigRecord, error) {
	var r ConfigRecord
	err := decodeSchemaValue(b, &r, &r.V)
	return r, err
}

// DecodeModeRecord decodes a mode value.
func DecodeModeRecord(b []byte) (ModeRecord, error) {
	var r ModeRecord
	err := decodeSchemaValue(b, &r, &r.V)
	return r, err
}

func decodeSchemaValue(b []byte, into any, v *int) error {
	if err := json.Unmarshal(b, into); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSchemaRecord, err)
	}
	if *v != SchemaFormat {
		return fmt.Errorf("%w: format version %d; this build reads %d (upgrade it)", ErrBadSchemaRecord, *v, SchemaFormat)
	}
	return nil
}

// SchemaFingerprint identifies a schema for ID reuse: SHA-256, in hex, of
// the type, the schema text as stored and the references, each
// length-prefixed so no two inputs share an encoding. The registry stores
// text with JSON whitespace removed, so registering the same schema with
// other spacing yields the same fingerprint and the same ID.
func SchemaFingerprint(typ, schema string, refs []SchemaReference) string {
	h := sha256.New()
	field := func(s string) {
		h.Write([]byte(strconv.Itoa(len(s))))
		h.Write([]byte{':'})
		h.Write([]byte(s))
	}
	field(typ)
	field(schema)
	for _, r := range refs {
		field(r.Name)
		field(r.Subject)
		field(strconv.Itoa(r.Version))
	}
	return hex.EncodeToString(h.Sum(nil))
}
