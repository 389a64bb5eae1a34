package mqttc_test

// These benchmarks are the measurement behind writing mqttc instead of
// using the paho clients: one connection, QoS 1, 100 messages in flight,
// 100-byte payloads, against an in-process mochi broker (or the broker in
// FSIM_BENCH_BROKER). Run:
//
//	go test -run XXX -bench Pipeline -benchtime 3s ./firmware-sim/mqttc/

import (
	"context"
	"net"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-edge/outpost/firmware-sim/internal/mochitest"
	"github.com/outpost-edge/outpost/firmware-sim/mqttc"
)

const benchInFlight = 100

func benchBroker(b *testing.B) string {
	if u := os.Getenv("FSIM_BENCH_BROKER"); u != "" {
		return u
	}
	return mochitest.Start(b).URL
}

func BenchmarkPipelineMqttc(b *testing.B) {
	u := benchBroker(b)
	c := mqttc.New(mqttc.Config{Broker: u, ClientID: "bench-mqttc", Version: 5, CleanStart: true, InFlight: benchInFlight}, mqttc.Handlers{})
	defer c.Close()
	if _, err := c.Connect(context.Background()); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 100)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if err := c.Publish(context.Background(), &mqttc.Message{Topic: "bench/mqttc", QoS: 1, Payload: payload}); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.WaitIdle(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkPipelinePaho3 uses paho.mqtt.golang's tokens: Publish returns at
// once, a semaphore of 100 tokens forms the window, and a goroutine per
// token waits for its PUBACK (the only way to time each ack).
func BenchmarkPipelinePaho3(b *testing.B) {
	u := benchBroker(b)
	opts := paho3.NewClientOptions().AddBroker(u).SetClientID("bench-paho3").SetCleanSession(true).
		SetMaxResumePubInFlight(benchInFlight).SetWriteTimeout(10 * time.Second)
	c := paho3.NewClient(opts)
	if tok := c.Connect(); tok.Wait() && tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	defer c.Disconnect(100)
	payload := make([]byte, 100)
	sem := make(chan struct{}, benchInFlight)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		sem <- struct{}{}
		tok := c.Publish("bench/paho3", 1, false, payload)
		wg.Go(func() {
			<-tok.Done()
			<-sem
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkPipelinePaho5 uses paho.golang: a blocking Publish per message,
// 100 goroutines sharing one connection form the window.
func BenchmarkPipelinePaho5(b *testing.B) {
	u, _ := url.Parse(benchBroker(b))
	nc, err := net.Dial("tcp", u.Host)
	if err != nil {
		b.Fatal(err)
	}
	c := paho5.NewClient(paho5.ClientConfig{Conn: nc})
	if _, err := c.Connect(context.Background(), &paho5.Connect{ClientID: "bench-paho5", CleanStart: true, KeepAlive: 30}); err != nil {
		b.Fatal(err)
	}
	defer c.Disconnect(&paho5.Disconnect{})
	payload := make([]byte, 100)
	work := make(chan struct{}, benchInFlight)
	var wg sync.WaitGroup
	for range benchInFlight {
		wg.Go(func() {
			for range work {
				if _, err := c.Publish(context.Background(), &paho5.Publish{Topic: "bench/paho5", QoS: 1, Payload: payload}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
