package wire

import (
	"fmt"
	"testing"
	"time"
)

func TestCommandStateApply(t *testing.T) {
	at := time.Unix(100, 0)
	rec := func(s CommandStatus, reason string) CommandStatusRecord {
		return CommandStatusRecord{Version: 1, ID: "x", Site: "s", Device: "d", Status: s, Time: at, Reason: reason}
	}
	for _, c := range []struct {
		name   string
		start  CommandStatus
		reason string
		apply  []CommandStatusRecord
		want   CommandStatus
		hist   int
	}{
		{"forward", StatusQueued, "", []CommandStatusRecord{rec(StatusAtEdge, ""), rec(StatusDelivered, ""), rec(StatusSucceeded, "")}, StatusSucceeded, 4},
		{"repeat_is_noop", StatusQueued, "", []CommandStatusRecord{rec(StatusAtEdge, ""), rec(StatusAtEdge, "")}, StatusAtEdge, 2},
		{"late_at_edge_goes_into_history", StatusQueued, "", []CommandStatusRecord{rec(StatusDelivered, ""), rec(StatusAtEdge, "")}, StatusDelivered, 3},
		{"late_delivered_after_answer", StatusQueued, "", []CommandStatusRecord{rec(StatusAtEdge, ""), rec(StatusSucceeded, ""), rec(StatusDelivered, "")}, StatusSucceeded, 4},
		{"final_stays", StatusQueued, "", []CommandStatusRecord{rec(StatusExpired, ReasonTTL), rec(StatusDelivered, ""), rec(StatusSucceeded, "")}, StatusExpired, 2},
		{"expired_keeps_late_at_edge", StatusQueued, "", []CommandStatusRecord{rec(StatusExpired, ReasonTTL), rec(StatusAtEdge, "")}, StatusExpired, 3},
		{"rejected_stays", StatusRejected, ReasonACL, []CommandStatusRecord{rec(StatusAtEdge, ""), rec(StatusDelivered, "")}, StatusRejected, 2},
		{"inferred_expiry_yields_to_edge", StatusExpired, ReasonExpiredInCentre, []CommandStatusRecord{rec(StatusDelivered, ""), rec(StatusSucceeded, "")}, StatusSucceeded, 3},
		{"inferred_expiry_keeps_against_edge_expiry", StatusExpired, ReasonExpiredInCentre, []CommandStatusRecord{rec(StatusAtEdge, ""), rec(StatusExpired, ReasonTTL)}, StatusExpired, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := NewCommandState(Command{ID: "x", Created: at}, c.start, c.reason)
			for _, r := range c.apply {
				s.Apply(r)
			}
			if s.Status != c.want || len(s.History) != c.hist {
				t.Fatalf("status %s history %d (%v), want %s %d", s.Status, len(s.History), fmt.Sprint(s.History), c.want, c.hist)
			}
		})
	}
}

func TestCommandValidate(t *testing.T) {
	ok := Command{Version: 1, ID: "a", Site: "s", Device: "d", Topic: "t/x", QoS: 1, Created: time.Unix(1, 0), Expires: time.Unix(2, 0)}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Command){
		"version":    func(c *Command) { c.Version = 9 },
		"id":         func(c *Command) { c.ID = "a.b" },
		"device":     func(c *Command) { c.Device = "" },
		"wildcard":   func(c *Command) { c.Topic = "t/#" },
		"qos":        func(c *Command) { c.QoS = 2 },
		"no_expires": func(c *Command) { c.Expires = time.Time{} },
	} {
		t.Run(name, func(t *testing.T) {
			c := ok
			mut(&c)
			if err := c.Validate(); err == nil {
				t.Fatal("valid")
			}
		})
	}
}
