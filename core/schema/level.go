package schema

import "strings"

// Level is a compatibility level, spelled as the Confluent API spells it.
// Where a level may be "not set" (a subject without its own), it is a
// *Level, nil meaning not set.
type Level string

// The compatibility levels. BACKWARD: the new schema reads data written
// with the previous one. FORWARD: the previous schema reads data written
// with the new one. FULL: both. _TRANSITIVE: against every earlier live
// version, not only the latest. NONE: no check.
const (
	LevelNone               Level = "NONE"
	LevelBackward           Level = "BACKWARD"
	LevelBackwardTransitive Level = "BACKWARD_TRANSITIVE"
	LevelForward            Level = "FORWARD"
	LevelForwardTransitive  Level = "FORWARD_TRANSITIVE"
	LevelFull               Level = "FULL"
	LevelFullTransitive     Level = "FULL_TRANSITIVE"
)

// DefaultLevel is the global level until one is set (Confluent's default).
const DefaultLevel = LevelBackward

// ParseLevel accepts a level in any letter case.
func ParseLevel(s string) (Level, bool) {
	l := Level(strings.ToUpper(s))
	switch l {
	case LevelNone, LevelBackward, LevelBackwardTransitive, LevelForward,
		LevelForwardTransitive, LevelFull, LevelFullTransitive:
		return l, true
	}
	return "", false
}

// backward reports whether l asks the new schema to read the old data.
func (l Level) backward() bool {
	return l == LevelBackward || l == LevelBackwardTransitive || l == LevelFull || l == LevelFullTransitive
}

// forward reports whether l asks the old schemas to read the new data.
func (l Level) forward() bool {
	return l == LevelForward || l == LevelForwardTransitive || l == LevelFull || l == LevelFullTransitive
}

// transitive reports whether l checks every live version, not the latest.
func (l Level) transitive() bool {
	return l == LevelBackwardTransitive || l == LevelForwardTransitive || l == LevelFullTransitive
}

// Mode says which writes a subject (or the registry) accepts.
type Mode string

// The modes. READWRITE: normal. READONLY: no registration, deletion or
// config change (READONLY_OVERRIDE also refuses changing the mode back
// without force). IMPORT: registrations must carry their ID and version
// (for copying another registry) and skip compatibility checks.
const (
	ModeReadWrite        Mode = "READWRITE"
	ModeReadOnly         Mode = "READONLY"
	ModeReadOnlyOverride Mode = "READONLY_OVERRIDE"
	ModeImport           Mode = "IMPORT"
)

// DefaultMode is the global mode until one is set.
const DefaultMode = ModeReadWrite

// ParseMode accepts a mode in any letter case.
func ParseMode(s string) (Mode, bool) {
	m := Mode(strings.ToUpper(s))
	switch m {
	case ModeReadWrite, ModeReadOnly, ModeReadOnlyOverride, ModeImport:
		return m, true
	}
	return "", false
}

func (m Mode) readOnly() bool { return m == ModeReadOnly || m == ModeReadOnlyOverride }
