package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const (
	exitOK       = 0
	exitError    = 1
	exitUsage    = 2
	exitMissing  = 3
	exitVerified = 4
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var code int
	if len(os.Args) > 1 && os.Args[1] == "verify" {
		code = runVerify(ctx, os.Args[2:], os.Stdin, os.Stdout, os.Stderr)
	} else {
		code = runFleet(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	stop()
	os.Exit(code)
}

func usageError(stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "firmware-sim: "+format+"\n", args...)
	return exitUsage
}
