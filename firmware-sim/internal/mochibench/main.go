package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:1883", "TCP address to listen on (port 0: any free port)")
	flag.Parse()
	s := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		fail(err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: *addr})
	if err := s.AddListener(tcp); err != nil {
		fail(err)
	}
	if err := s.Serve(); err != nil {
		fail(err)
	}
	fmt.Printf("tcp://%s\n", tcp.Address())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	_ = s.Close()
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "mochibench: %v (is the address in use? try -addr 127.0.0.1:0)\n", err)
	os.Exit(1)
}
