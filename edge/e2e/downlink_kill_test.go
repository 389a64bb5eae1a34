package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
)

var (
	coreBuildOnce sync.Once
	coreBinPath   string
	coreBuildErr  error
)

// coreBinary builds ./core once per test run.
func coreBinary(t *testing.T) string {
	t.Helper()
	coreBuildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "outpost-e2e-core-")
		if err != nil {
			coreBuildErr = err
			return
		}
		coreBinPath = filepath.Join(dir, "core")
		gobin, err := exec.LookPath("go")
		if err != nil {
			gobin = "/usr/local/go/bin/go"
		}
		cmd := exec.Command(gobin, "build", "-o", coreBinPath, "github.com/outpost-edge/outpost/core")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			coreBuildErr = fmt.Errorf("go build ./core: %v\n%s", err, out)
		}
	})
	if coreBuildErr != nil {
		t.Fatal(coreBuildErr)
	}
	// Built once for every test of the run; TestMain removes it.
	return coreBinPath
}

type coreProc struct {
	cmd    *exec.Cmd
	http   string
	stderr *strings.Builder
	exited chan struct{}
	once   sync.Once
}

func startCoreProc(t *testing.T, bin, natsURL, httpAddr string) *coreProc {
	t.Helper()
	p := &coreProc{http: httpAddr, stderr: &strings.Builder{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "-nats", natsURL, "-http", httpAddr)
	p.cmd.Stderr = &lockedWriter{w: p.stderr}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(p.kill)
	waitFor(t, 30*time.Second, func() error {
		select {
		case <-p.exited:
			t.Fatalf("core exited at start: %s", p.stderr)
		default:
		}
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	return p
}

func (p *coreProc) kill() {
	p.once.Do(func() {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
	})
}

// killDevice is an MQTT 5 device that records every command it receives
// (by correlation data, i.e. command id) and acknowledges it.
type killDevice struct {
	mu   sync.Mutex
	got  map[string]int
	c    *paho.Client
	lost chan struct{}
}

func (d *killDevice) connect(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	lost := make(chan struct{})
	c := paho.NewClient(paho.ClientConfig{Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			d.mu.Lock()
			d.got[string(p.Packet.Payload)]++
			d.mu.Unlock()
			return true, nil
		}},
		OnClientError:      func(error) { close(lost) },
		OnServerDisconnect: func(*paho.Disconnect) {},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "kill-dev", KeepAlive: 5, CleanStart: true}); err != nil {
		conn.Close()
		return err
	}
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "cmd/kill-dev", QoS: 1}}}); err != nil {
		conn.Close()
		return err
	}
	d.c, d.lost = c, lost
	return nil
}

// TestCrashDownlinkKill: commands flow while the edge and core are killed
// with SIGKILL at random moments, and the device reconnects each time.
// Every accepted command reaches the device at least once, and ends
// delivered with queued, at_edge and delivered each once in its history;
// duplicates at the device are counted (at-least-once, documented).
func TestCrashDownlinkKill(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped under -short")
	}
	rounds := envInt("OUTPOST_DOWNLINK_KILL_ROUNDS", 4)
	if os.Getenv("OUTPOST_LONG") != "" {
		rounds = 20
	}
	seed := int64(envInt("OUTPOST_SEED", int(time.Now().UnixNano()%1e9)))
	t.Logf("seed %d (replay with OUTPOST_SEED=%d), %d rounds", seed, seed, rounds)
	rng := rand.New(rand.NewSource(seed))

	srv := natstest.RunServer(t)
	edgeBin, coreBin := edgeBinary(t), coreBinary(t)
	coreHTTP := freePort(t)
	core := startCoreProc(t, coreBin, srv.URL(), coreHTTP)
	data := t.TempDir()
	edgeArgs := []string{"-upstream", srv.URL(), "-site", "farm-1", "-node", "pi-a"}
	edge := startEdge(t, edgeBin, data, edgeArgs...)
	waitFor(t, 30*time.Second, func() error { // core knows the site
		var v struct {
			Sites []json.RawMessage `json:"sites"`
		}
		getJSON(t, "http://"+coreHTTP+"/v1/sites", &v)
		if len(v.Sites) == 0 {
			return fmt.Errorf("site not reported yet")
		}
		return nil
	})

	dev := &killDevice{got: map[string]int{}}
	var accepted []string
	n := 0
	send := func() {
		id := fmt.Sprintf("k%04d", n)
		body, _ := json.Marshal(map[string]any{"topic": "cmd/kill-dev", "payload_text": id, "id": id, "ttl": "1h"})
		resp, err := http.Post("http://"+coreHTTP+"/v1/sites/farm-1/devices/kill-dev/commands", "application/json", bytes.NewReader(body))
		if err != nil {
			return // core is down: this id was never accepted, or is retried below
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusAccepted {
			accepted = append(accepted, id)
			n++
		}
	}
	for round := range rounds {
		if err := dev.connect(edge.mqtt); err != nil {
			t.Fatalf("round %d: device: %v", round, err)
		}
		killAfter := time.Duration(50+rng.Intn(400)) * time.Millisecond
		killCore := round%2 == 1
		deadline := time.Now().Add(killAfter)
		for time.Now().Before(deadline) {
			send()
			time.Sleep(time.Duration(rng.Intn(20)) * time.Millisecond)
		}
		if killCore {
			core.kill()
			for range 5 {
				send() // refused: core is down
			}
			core = startCoreProc(t, coreBin, srv.URL(), coreHTTP)
		} else {
			edge.kill()
			for range 5 {
				send() // queued in the centre while the edge is down
			}
			select {
			case <-dev.lost:
			case <-time.After(10 * time.Second):
				t.Fatal("device did not notice the edge died")
			}
			edge = startEdge(t, edgeBin, data, edgeArgs...)
		}
		t.Logf("round %d: killed %s after %v; %d accepted so far", round, map[bool]string{true: "core", false: "edge"}[killCore], killAfter, len(accepted))
	}
	if dev.lost != nil {
		select {
		case <-dev.lost:
			if err := dev.connect(edge.mqtt); err != nil {
				t.Fatal(err)
			}
		default:
		}
	}

	// Everything accepted ends delivered, with each status once.
	for _, id := range accepted {
		waitFor(t, 60*time.Second, func() error {
			var st wire.CommandState
			getJSON(t, "http://"+coreHTTP+"/v1/sites/farm-1/devices/kill-dev/commands/"+id, &st)
			if st.Status != wire.StatusDelivered {
				return fmt.Errorf("%s is %s (%s)", id, st.Status, st.Reason)
			}
			// A status record a killed core had fetched but not folded
			// comes back after the fold consumer's AckWait, after later
			// ones: the history is complete once it is folded.
			if got := fmt.Sprint(statuses(st)); got != "[queued at_edge delivered]" {
				return fmt.Errorf("%s: history %s", id, got)
			}
			return nil
		})
	}
	dev.mu.Lock()
	defer dev.mu.Unlock()
	dups := 0
	for _, id := range accepted {
		switch c := dev.got[id]; {
		case c == 0:
			t.Errorf("%s was never received by the device", id)
		case c > 1:
			dups += c - 1
		}
	}
	t.Logf("%d commands accepted, all delivered; %d duplicates at the device (at-least-once)", len(accepted), dups)
	_ = edge
}
