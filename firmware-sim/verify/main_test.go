package verify_test

import (
	"testing"

	"github.com/outpost-edge/outpost/firmware-sim/internal/mochitest"
)

func TestMain(m *testing.M) { mochitest.VerifyNoLeaks(m) }
