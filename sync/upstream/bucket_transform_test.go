package upstream_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/natstest"
)

// TestBucketTransformResume records what issue 13's buckets mean for the
// forwarder, against the embedded server: a topic stream whose subject
// transform inserts a bucket token computed by JetStream's partition()
// over site, node and partition stores every record of one origin
// partition under one bucketed subject; the forwarder, which publishes to
// the untransformed subject, finds the last record of its origin partition
// by asking for the last message of the subject with a wildcard in the
// bucket's place, and conditions its first publish after a resume on the
// transformed subject's last sequence (Nats-Expected-Last-Subject-Sequence-Subject).
func TestBucketTransformResume(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	ctx := context.Background()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     "B",
		Subjects: []string{"op.telemetry.*.*.*"},
		SubjectTransform: &jetstream.SubjectTransformConfig{
			Source:      "op.telemetry.*.*.*",
			Destination: "op.telemetry.{{partition(16,1,2,3)}}.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}",
		},
		Storage: jetstream.FileStorage,
	})
	if err != nil {
		t.Fatal(err)
	}
	buckets := map[string]string{} // origin partition -> bucket token
	for round := 0; round < 3; round++ {
		for p := 0; p < 8; p++ {
			subj := fmt.Sprintf("op.telemetry.farm-1.pi-a.%d", p)
			ack, err := js.Publish(ctx, subj, []byte(fmt.Sprintf("%d-%d", p, round)))
			if err != nil {
				t.Fatal(err)
			}
			m, err := s.GetMsg(ctx, ack.Sequence)
			if err != nil {
				t.Fatal(err)
			}
			tok := strings.Split(m.Subject, ".")
			if len(tok) != 6 || strings.Join(append(tok[:2:2], tok[3:]...), ".") != subj {
				t.Fatalf("stored as %q, want op.telemetry.<bucket>.farm-1.pi-a.%d", m.Subject, p)
			}
			if b, ok := buckets[subj]; ok && b != tok[2] {
				t.Fatalf("%s went to bucket %s, then %s: an origin partition must stay in one bucket", subj, b, tok[2])
			}
			buckets[subj] = tok[2]
		}
	}
	// Resume lookup: the last message of origin partition 5, whatever its bucket.
	last, err := s.GetLastMsgForSubject(ctx, "op.telemetry.*.farm-1.pi-a.5")
	if err != nil {
		t.Fatalf("last message by wildcard subject: %v", err)
	}
	if string(last.Data) != "5-2" {
		t.Fatalf("last record of partition 5 is %q, want 5-2", last.Data)
	}
	// The conditional first publish after a resume names the stored subject.
	cond := func(seq uint64) error {
		m := nats.NewMsg("op.telemetry.farm-1.pi-a.5")
		m.Data = []byte("5-3")
		m.Header.Set("Nats-Expected-Last-Subject-Sequence", fmt.Sprint(seq))
		m.Header.Set("Nats-Expected-Last-Subject-Sequence-Subject", "op.telemetry.*.farm-1.pi-a.5")
		_, err := js.PublishMsg(ctx, m)
		return err
	}
	if err := cond(last.Sequence - 1); err == nil {
		t.Fatal("a stale expected sequence was accepted")
	}
	if err := cond(last.Sequence); err != nil {
		t.Fatalf("the expected sequence the lookup returned was refused: %v", err)
	}
	t.Logf("8 origin partitions in buckets %v", buckets)
}
