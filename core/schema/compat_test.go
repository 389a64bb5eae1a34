package schema

import (
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/core/wire"
)

// TestCompatibilityLevels runs every level over three registered versions
// and a candidate, chosen so that each transitive level differs from its
// plain form: the candidate is compatible with the latest version but not
// with the first.
func TestCompatibilityLevels(t *testing.T) {
	chains := map[string]struct {
		typ      string
		versions []string // registered, oldest first
		cand     string
		want     map[Level]bool // compatible?
	}{
		// v3 drops b's default: reads v2's data (which has b), not v1's.
		"avro_backward": {
			typ: wire.SchemaTypeAvro,
			versions: []string{
				rec(`{"name":"a","type":"int"}`),
				rec(`{"name":"a","type":"int"},{"name":"b","type":"string","default":"x"}`),
			},
			cand: rec(`{"name":"a","type":"int"},{"name":"b","type":"string"}`),
			want: map[Level]bool{LevelNone: true, LevelBackward: true, LevelBackwardTransitive: false,
				LevelForward: true, LevelForwardTransitive: true, LevelFull: true, LevelFullTransitive: false},
		},
		// The candidate drops b: v2 reads its data (b has a default), v1
		// cannot (no default).
		"avro_forward": {
			typ: wire.SchemaTypeAvro,
			versions: []string{
				rec(`{"name":"a","type":"int"},{"name":"b","type":"int"}`),
				rec(`{"name":"a","type":"int"},{"name":"b","type":"int","default":0}`),
				rec(`{"name":"a","type":"int"},{"name":"b","type":"int","default":1}`),
			},
			cand: rec(`{"name":"a","type":"int"}`),
			want: map[Level]bool{LevelNone: true, LevelBackward: true, LevelBackwardTransitive: true,
				LevelForward: true, LevelForwardTransitive: false, LevelFull: true, LevelFullTransitive: false},
		},
		// Closed content models. v2 dropped b (registered under NONE); the
		// candidate brings it back as a string: v2 never wrote b, so the
		// candidate reads v2's data, but v1 wrote b as an integer.
		"json_backward": {
			typ: wire.SchemaTypeJSON,
			versions: []string{
				`{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}},"additionalProperties":false}`,
				`{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}`,
			},
			cand: `{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}},"additionalProperties":false}`,
			want: map[Level]bool{LevelNone: true, LevelBackward: true, LevelBackwardTransitive: false,
				LevelForward: false, LevelForwardTransitive: false, LevelFull: false, LevelFullTransitive: false},
		},
		// v2 added b to v1's closed model; the candidate writes b too: v2
		// reads that, v1 (closed, without b) does not.
		"json_forward": {
			typ: wire.SchemaTypeJSON,
			versions: []string{
				`{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}`,
				`{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}},"additionalProperties":false}`,
				`{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string","title":"B"}},"additionalProperties":false}`,
			},
			cand: `{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string","description":"b"}},"additionalProperties":false}`,
			want: map[Level]bool{LevelNone: true, LevelBackward: true, LevelBackwardTransitive: true,
				LevelForward: true, LevelForwardTransitive: false, LevelFull: true, LevelFullTransitive: false},
		},
	}
	for name, ch := range chains {
		var live []version
		for i, s := range ch.versions {
			live = append(live, version{version: i + 1, id: 10 + i, schema: mustParse(t, ch.typ, s)})
		}
		cand := mustParse(t, ch.typ, ch.cand)
		for level, want := range ch.want {
			t.Run(name+"/"+string(level), func(t *testing.T) {
				msgs := checkCompat(level, cand, live)
				if got := len(msgs) == 0; got != want {
					t.Fatalf("compatible = %v, want %v; messages:\n%s", got, want, strings.Join(msgs, "\n"))
				}
				if !want && !strings.Contains(msgs[len(msgs)-1], string(level)) {
					t.Fatalf("last message %q does not name the level", msgs[len(msgs)-1])
				}
			})
		}
	}
}
