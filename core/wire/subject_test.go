package wire_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/outpost-edge/outpost/core/wire"
)

func TestSubjectBuildParse(t *testing.T) {
	cases := []struct {
		name    string
		prefix  string
		origin  wire.Origin
		subject string
	}{
		{"simple", "outpost", wire.Origin{Site: "farm-1", Node: "pi_a", Topic: "telemetry", Partition: 0}, "outpost.telemetry.farm-1.pi_a.0"},
		{"dotted_topic", "outpost", wire.Origin{Site: "s", Node: "n", Topic: "plant.temps.v2", Partition: 17}, "outpost.plant~temps~v2.s.n.17"},
		{"multi_token_prefix", "acme.outpost", wire.Origin{Site: "s", Node: "n", Topic: "t-1_x", Partition: 2147483647}, "acme.outpost.t-1_x.s.n.2147483647"},
		{"leading_dot_topic", "outpost", wire.Origin{Site: "s", Node: "n", Topic: ".hidden", Partition: 3}, "outpost.~hidden.s.n.3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := wire.Subject(c.prefix, c.origin)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.subject {
				t.Fatalf("Subject = %q, want %q", got, c.subject)
			}
			back, err := wire.ParseSubject(c.prefix, got)
			if err != nil {
				t.Fatal(err)
			}
			if back != c.origin {
				t.Fatalf("ParseSubject = %+v, want %+v", back, c.origin)
			}
			filter := wire.StreamSubjects(c.prefix, c.origin.Topic)
			if !strings.HasPrefix(got, strings.TrimSuffix(filter, ">")) {
				t.Fatalf("subject %q not under stream filter %q", got, filter)
			}
		})
	}
}

func TestSubjectRejects(t *testing.T) {
	bad := []struct {
		name   string
		origin wire.Origin
		prefix string
	}{
		{"dot_in_site", wire.Origin{Site: "a.b", Node: "n", Topic: "t"}, "outpost"},
		{"space_in_node", wire.Origin{Site: "s", Node: "n 1", Topic: "t"}, "outpost"},
		{"star_in_node", wire.Origin{Site: "s", Node: "*", Topic: "t"}, "outpost"},
		{"gt_in_site", wire.Origin{Site: ">", Node: "n", Topic: "t"}, "outpost"},
		{"tilde_in_topic", wire.Origin{Site: "s", Node: "n", Topic: "a~b"}, "outpost"},
		{"dotdot_topic", wire.Origin{Site: "s", Node: "n", Topic: ".."}, "outpost"},
		{"empty_site", wire.Origin{Node: "n", Topic: "t"}, "outpost"},
		{"negative_partition", wire.Origin{Site: "s", Node: "n", Topic: "t", Partition: -1}, "outpost"},
		{"long_node", wire.Origin{Site: "s", Node: strings.Repeat("n", 65), Topic: "t"}, "outpost"},
		{"dollar_site", wire.Origin{Site: "$status", Node: "n", Topic: "t"}, "outpost"},
		{"empty_prefix", wire.Origin{Site: "s", Node: "n", Topic: "t"}, ""},
		{"prefix_wildcard", wire.Origin{Site: "s", Node: "n", Topic: "t"}, "out.*"},
		{"prefix_trailing_dot", wire.Origin{Site: "s", Node: "n", Topic: "t"}, "outpost."},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			if s, err := wire.Subject(c.prefix, c.origin); !errors.Is(err, wire.ErrBadSubject) {
				t.Fatalf("Subject = %q, %v; want ErrBadSubject", s, err)
			}
		})
	}
	badSubjects := map[string]string{
		"other_prefix":    "other.t.s.n.0",
		"too_few":         "outpost.t.s.n",
		"too_many":        "outpost.t.s.n.0.x",
		"leading_zero":    "outpost.t.s.n.01",
		"plus_sign":       "outpost.t.s.n.+1",
		"negative":        "outpost.t.s.n.-1",
		"overflow":        "outpost.t.s.n.2147483648",
		"status_subject":  "outpost.$status.s.n",
		"wildcard_token":  "outpost.t.*.n.0",
		"empty_token":     "outpost.t..n.0",
		"bad_topic_token": "outpost.a~~b.s.n.0x",
	}
	for name, s := range badSubjects {
		t.Run("parse_"+name, func(t *testing.T) {
			if o, err := wire.ParseSubject("outpost", s); err == nil {
				t.Fatalf("ParseSubject(%q) = %+v, want error", s, o)
			}
		})
	}
}

func TestStreamNamesDistinct(t *testing.T) {
	// Topics that differ only in '.' vs '_' vs '-' must get distinct
	// streams and non-overlapping subject filters.
	topics := []string{"a.b", "a_b", "a-b", "ab", "a.b.c", "a", "A"}
	names := map[string]string{}
	for _, tp := range topics {
		n := wire.StreamName("outpost", tp)
		if other, dup := names[n]; dup {
			t.Fatalf("topics %q and %q share stream %q", tp, other, n)
		}
		names[n] = tp
		if strings.ContainsAny(n, ". *>/\\") {
			t.Fatalf("stream name %q has a forbidden character", n)
		}
		back, err := wire.TopicFromToken(strings.TrimPrefix(n, "OUTPOST_"))
		if err != nil || back != tp {
			t.Fatalf("stream %q maps back to %q, %v; want %q", n, back, err, tp)
		}
	}
	if got := wire.StreamName("acme.outpost", "x.y"); got != "ACME_OUTPOST_x~y" {
		t.Fatalf("StreamName = %q", got)
	}
}

func TestControlSubjectsNeverCollide(t *testing.T) {
	st := wire.StatusSubject("outpost", "s", "n")
	if st != "outpost.$status.s.n" {
		t.Fatalf("StatusSubject = %q", st)
	}
	if _, err := wire.ParseSubject("outpost", st+".0"); err == nil {
		t.Fatal("a status subject parsed as a data subject")
	}
	site, node, err := wire.ParseStatusSubject("outpost", st)
	if err != nil || site != "s" || node != "n" {
		t.Fatalf("ParseStatusSubject = %q %q %v", site, node, err)
	}
	pr := wire.ProvisionSubject("outpost", "s", "n")
	if site, node, err := wire.ParseProvisionSubject("outpost", pr); err != nil || site != "s" || node != "n" {
		t.Fatalf("ParseProvisionSubject = %q %q %v", site, node, err)
	}
	if _, _, err := wire.ParseStatusSubject("outpost", pr); err == nil {
		t.Fatal("provision subject parsed as status subject")
	}
	if _, _, err := wire.ParseStatusSubject("outpost", "outpost.$status.s.n.x"); err == nil {
		t.Fatal("5-token status subject accepted")
	}
	// No topic can produce the reserved token.
	if _, err := wire.TopicFromToken("$status"); err == nil {
		t.Fatal("$status accepted as a topic token")
	}
}

// TestStatusStreamApart: the status stream's filter overlaps no topic's
// stream filter (JetStream would refuse one of the two streams, and a data
// stream capturing reports would fill with them), and its name is no
// topic's stream name.
func TestStatusStreamApart(t *testing.T) {
	for _, prefix := range []string{"outpost", "acme.outpost", "a_b"} {
		filter := wire.StatusStreamSubjects(prefix)
		if filter != wire.StatusSubscription(prefix) {
			t.Fatalf("status stream filter %q is not the status subscription", filter)
		}
		if !server.SubjectMatchesFilter(wire.StatusSubject(prefix, "farm-1", "pi-a"), filter) {
			t.Fatalf("status subject outside status stream filter %q", filter)
		}
		name := wire.StatusStreamName(prefix)
		if strings.ContainsAny(name, ". *>/\\$") {
			t.Fatalf("status stream name %q has a forbidden or shell-special character", name)
		}
		for _, topic := range []string{"STATUS", "status", "-STATUS", "_STATUS", ".STATUS", "$status", "a.b", "x", "~"} {
			if err := wire.ValidateTopic(topic); err != nil {
				continue
			}
			if wire.StreamName(prefix, topic) == name {
				t.Fatalf("prefix %q topic %q gets the status stream name %q", prefix, topic, name)
			}
			data := wire.StreamSubjects(prefix, topic)
			if server.SubjectsCollide(data, filter) {
				t.Fatalf("prefix %q: data filter %q overlaps status filter %q", prefix, data, filter)
			}
		}
	}
	if got := wire.StatusStreamName("acme.outpost"); got != "ACME_OUTPOST-STATUS" {
		t.Fatalf("StatusStreamName = %q", got)
	}
}
