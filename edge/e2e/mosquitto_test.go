package e2e_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/edge/node"
)

func mosquittoTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not installed, and CI is set: install mosquitto-clients (.ci/run does)", name)
		}
		t.Skipf("%s not installed (apt-get install mosquitto-clients); required in CI", name)
	}
	return p
}

type recordDoc struct {
	Records []struct {
		Key     string            `json:"key"`
		Headers map[string]string `json:"headers"`
		Value   string            `json:"value"`
	} `json:"records"`
}

func dec(s string) string {
	b, _ := base64.StdEncoding.DecodeString(s)
	return string(b)
}

// TestMosquittoInterop: Debian's mosquitto clients publish with MQTT 3.1.1
// and 5 at QoS 0, 1 and 2 and subscribe; records carry the right headers.
func TestMosquittoInterop(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped under -short")
	}
	pub := mosquittoTool(t, "mosquitto_pub")
	sub := mosquittoTool(t, "mosquitto_sub")

	cfg := node.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.MQTT.Address = "127.0.0.1:0"
	cfg.HTTP.Address = "127.0.0.1:0"
	cfg.Routes.DefaultPartitions = 1
	n, err := node.Open(context.Background(), cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	host, port, _ := strings.Cut(n.MQTTAddrs()[0], ":")

	// The subscriber waits for 3 messages; retained publishes reach it
	// whenever it subscribes, so no timing assumption is needed.
	var subOut bytes.Buffer
	subCmd := exec.Command(sub, "-h", host, "-p", port, "-V", "mqttv5", "-t", "interop/#", "-C", "3", "-v", "-W", "20", "-q", "1")
	subCmd.Stdout = &subOut
	subCmd.Stderr = &subOut
	if err := subCmd.Start(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args  []string
		topic string
		qos   string
	}{
		{[]string{"-V", "mqttv311", "-q", "0"}, "interop/v3q0", "0"},
		{[]string{"-V", "mqttv311", "-q", "1"}, "interop/v3q1", "1"},
		{[]string{"-V", "mqttv5", "-q", "2", "-D", "publish", "user-property", "fw", "1.2", "-D", "publish", "content-type", "text/plain"}, "interop/v5q2", "2"},
	}
	for _, c := range cases {
		args := append([]string{"-h", host, "-p", port, "-i", "mosq-" + c.qos, "-t", c.topic, "-m", "hello " + c.topic, "-r"}, c.args...)
		out, err := exec.Command(pub, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_pub %v: %v\n%s", args, err, out)
		}
	}
	werr := make(chan error, 1)
	go func() { werr <- subCmd.Wait() }()
	select {
	case err := <-werr:
		if err != nil {
			t.Fatalf("mosquitto_sub: %v\n%s", err, subOut.String())
		}
	case <-time.After(25 * time.Second):
		subCmd.Process.Kill()
		t.Fatalf("mosquitto_sub got: %s", subOut.String())
	}
	for _, c := range cases {
		if !strings.Contains(subOut.String(), c.topic+" hello "+c.topic) {
			t.Errorf("subscriber did not receive %s: %s", c.topic, subOut.String())
		}
	}

	var doc recordDoc
	getJSON(t, fmt.Sprintf("http://%s/v1/topics/telemetry/partitions/0/records?offset=0&limit=10", n.HTTPAddr()), &doc)
	if len(doc.Records) != 3 {
		t.Fatalf("%d records: %+v", len(doc.Records), doc)
	}
	for i, c := range cases {
		r := doc.Records[i]
		if dec(r.Value) != "hello "+c.topic || dec(r.Headers["mqtt.topic"]) != c.topic || dec(r.Headers["mqtt.qos"]) != c.qos ||
			dec(r.Key) != "mosq-"+c.qos || dec(r.Headers["mqtt.client_id"]) != "mosq-"+c.qos {
			t.Errorf("record %d: %+v", i, r)
		}
	}
	if v5 := doc.Records[2]; dec(v5.Headers["mqtt.user.fw"]) != "1.2" || dec(v5.Headers["mqtt.content_type"]) != "text/plain" {
		t.Errorf("MQTT 5 properties not kept: %+v", v5.Headers)
	}
}
