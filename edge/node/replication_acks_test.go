package node_test

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/edge/node"
)

// TestReplicationAcksAll: under replication.acks: all (the default), every
// PUBACK comes only once the record is on the peer's replica: after each
// acknowledgement, the replica already ends where the owner does.
func TestReplicationAcksAll(t *testing.T) {
	addrA, addrB := freeAddr(t), freeAddr(t)
	cfgA := replicatingConfig(t, "pi-a", addrA, "pi-b", addrB)
	if cfgA.Replication.Acks != "all" {
		t.Fatalf("default acks %q, want all", cfgA.Replication.Acks)
	}
	a := start(t, cfgA, node.Options{})
	b := start(t, replicatingConfig(t, "pi-b", addrB, "pi-a", addrA), node.Options{})
	owner, replica := a.Log(), b.ReplicaLog("pi-a")
	sum := func(isReplica bool) int64 {
		var n int64
		for _, ti := range owner.Topics() {
			for _, pi := range ti.Partitions {
				if !isReplica {
					n += pi.EndOffset
					continue
				}
				if p, err := replica.Partition(ti.Name, pi.Partition); err == nil {
					n += p.EndOffset()
				}
			}
		}
		return n
	}
	// Wait until pi-b follows (before that, the policy acknowledges alone).
	waitInSync(t, a)
	c, br := rawConnect(t, a.MQTTAddrs()[0], "dev-1")
	defer c.Close()
	topic := "sensors/dev-1/temp"
	for i := range 100 {
		id := uint16(i + 1)
		body := append([]byte{0, byte(len(topic))}, topic...)
		body = append(body, byte(id>>8), byte(id))
		body = append(body, fmt.Sprintf("v%d", i)...)
		c.Write(append([]byte{0x32, byte(len(body))}, body...))
		ack := make([]byte, 4)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(br, ack); err != nil || ack[0] != 0x40 {
			t.Fatalf("puback %d: %x %v", i, ack, err)
		}
		if o, r := sum(false), sum(true); r != o {
			t.Fatalf("message %d acknowledged while pi-b's replica has %d of pi-a's %d records", i, r, o)
		}
	}
	body := getText(t, "http://"+a.HTTPAddr()+"/metrics")
	if !strings.Contains(body, `outpost_replica_acks_total{result="replicated"} 100`) {
		t.Fatalf("/metrics: replicated acks not 100:\n%s", grepLines(body, "outpost_replica_acks"))
	}
}

// TestReplicationAcksAllPolicy: with the peer down, policy refuse gives a
// 3.1.1 client no PUBACK (it is disconnected and keeps its data); policy
// degrade acknowledges on local durability and says so.
func TestReplicationAcksAllPolicy(t *testing.T) {
	down := freeAddr(t) // pi-b never starts
	cfg := replicatingConfig(t, "pi-a", freeAddr(t), "pi-b", down)
	cfg.Replication.Policy = "refuse"
	a := start(t, cfg, node.Options{})
	c, br := rawConnect(t, a.MQTTAddrs()[0], "dev-1")
	topic := "sensors/dev-1/temp"
	body := append([]byte{0, byte(len(topic))}, topic...)
	body = append(body, 0, 1, 'v')
	c.Write(append([]byte{0x32, byte(len(body))}, body...))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := br.ReadByte(); err == nil {
		t.Fatalf("refuse: got packet type %x, want the connection closed without a PUBACK", b)
	} else if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
		t.Fatal("refuse: the connection stayed open without an answer")
	}
	c.Close()
	m := getText(t, "http://"+a.HTTPAddr()+"/metrics")
	for _, want := range []string{`outpost_mqtt_acks_total{reason="not_replicated"} 1`, `outpost_replica_acks_total{result="refused"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("refuse: /metrics lacks %s:\n%s", want, grepLines(m, "not_replicated", "outpost_replica_acks"))
		}
	}

	cfg = replicatingConfig(t, "pi-a", freeAddr(t), "pi-b", down)
	a = start(t, cfg, node.Options{}) // policy degrade, the default
	publishQoS1(t, a.MQTTAddrs()[0], "dev-1", topic, 3)
	m = getText(t, "http://"+a.HTTPAddr()+"/metrics")
	for _, want := range []string{`outpost_replica_acks_total{result="degraded"} 3`, "outpost_replica_under_replicated_partitions 8"} {
		waitFor(t, 5*time.Second, func() error {
			if !strings.Contains(m, want) {
				m = getText(t, "http://"+a.HTTPAddr()+"/metrics")
				return fmt.Errorf("degrade: /metrics lacks %s:\n%s", want, grepLines(m, "outpost_replica_acks", "under_replicated"))
			}
			return nil
		})
	}
}

func grepLines(body string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		for _, s := range subs {
			if strings.Contains(l, s) && !strings.HasPrefix(l, "#") {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
