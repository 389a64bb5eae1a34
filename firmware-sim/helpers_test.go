package main

import (
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/buftest"
	"github.com/outpost-edge/outpost/internal/polltest"
)

func waitFor(t *testing.T, f func() error) {
	t.Helper()
	polltest.Until(t, 10*time.Second, f)
}

// syncBuffer is written by goroutines while the test reads it.
type syncBuffer = buftest.Buffer
