package schema

import (
	"errors"
	"strings"
	"testing"
)

// TestCompactTextBounds: the checks that run before any parser sees a
// schema refuse deep, wide and trailing input, and compaction keeps a
// schema's meaning while dropping its spacing.
func TestCompactTextBounds(t *testing.T) {
	for name, c := range map[string]struct {
		text, want string
	}{
		"deep":     {strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1), "nested more than"},
		"wide":     {"[" + strings.Repeat("[],", maxNodes) + "[]]", "objects and arrays"},
		"trailing": {`{"type":"string"} x`, "Invalid schema"},
		"two":      {`{} {}`, "more than one JSON value"},
		"empty":    {``, "not JSON"},
	} {
		_, err := compactText(c.text, false)
		if !errors.Is(err, ErrInvalidSchema) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want 42201 saying %q", name, err, c.want)
		}
	}
	ok := strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth)
	if _, err := compactText(ok, false); err != nil {
		t.Errorf("depth %d: %v", maxDepth, err)
	}
	got, err := compactText("{ \"b\" : 1,\n \"a\" : [ 1 , 2 ] }", false)
	if err != nil || got != `{"b":1,"a":[1,2]}` {
		t.Errorf("compact: %q %v", got, err)
	}
	got, err = compactText(`{"b":1.50,"a":{"d":true,"c":null}}`, true)
	if err != nil || got != `{"a":{"c":null,"d":true},"b":1.50}` {
		t.Errorf("normalize: %q %v", got, err)
	}
}
