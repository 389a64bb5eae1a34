package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	i := Info{Version: "v1.0.0", Commit: "0123456789abcdef0123", CommitAt: "2026-11-23T00:00:00Z", Modified: true, GoVersion: "go1.26", Platform: "linux/arm/v7"}
	want := "v1.0.0 commit 0123456789ab+modified (2026-11-23T00:00:00Z) go1.26 linux/arm/v7"
	if got := i.String(); got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	g := Get()
	if g.Version != "dev" || !strings.HasPrefix(g.Platform, runtime.GOOS+"/"+runtime.GOARCH) || g.GoVersion != runtime.Version() {
		t.Fatalf("Get() = %+v", g)
	}
}
