package deliver

import "testing"

func TestMatchFilter(t *testing.T) {
	for _, c := range []struct {
		filter, topic string
		want          bool
	}{
		{"cmd/a", "cmd/a", true},
		{"cmd/a", "cmd/b", false},
		{"cmd/+", "cmd/a", true},
		{"cmd/+", "cmd/a/b", false},
		{"cmd/#", "cmd/a/b", true},
		{"cmd/#", "cmd", true}, // [MQTT-4.7.1-2]: # also matches the parent level
		{"#", "cmd/a", true},
		{"cmd/+/x", "cmd/a/x", true},
		{"cmd/+/x", "cmd/a/y", false},
		{"cmd/a/b", "cmd/a", false},
		{"+/+", "a/b", true},
	} {
		if got := matchFilter(c.filter, c.topic); got != c.want {
			t.Errorf("matchFilter(%q, %q) = %v, want %v", c.filter, c.topic, got, c.want)
		}
	}
}

func TestAnswerFailed(t *testing.T) {
	for payload, want := range map[string]bool{
		`{"ok":false}`:                  true,
		`{"status":"failed","x":1}`:     true,
		`{"ok":true}`:                   false,
		`{}`:                            false,
		`done`:                          false,
		``:                              false,
		`[1,2]`:                         false,
		`{"ok":"false"}`:                false,
		`{"status":"failed","ok":true}`: true,
	} {
		if got := answerFailed([]byte(payload)); got != want {
			t.Errorf("answerFailed(%s) = %v, want %v", payload, got, want)
		}
	}
}
