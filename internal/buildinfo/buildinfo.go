package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at link time by scripts/release.sh; it is not exported so
// that nothing can change it at run time.
var version = "dev"

// Info is what -version prints.
type Info struct {
	Version   string
	Commit    string
	CommitAt  string
	Modified  bool
	GoVersion string
	Platform  string
}

// Get returns the running binary's build information.
func Get() Info {
	i := Info{Version: version, Commit: "unknown", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if runtime.GOARCH == "arm" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "GOARM" {
					i.Platform += "/v" + s.Value
				}
			}
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				i.Commit = s.Value
			case "vcs.time":
				i.CommitAt = s.Value
			case "vcs.modified":
				i.Modified = s.Value == "true"
			}
		}
	}
	return i
}

// String is the one line -version prints, e.g.
// "edge v0.1.0 commit 3fb2ca5 (2026-11-23T01:20:00Z) go1.26.8 linux/arm/v7".
func (i Info) String() string {
	c := i.Commit
	if len(c) > 12 {
		c = c[:12]
	}
	if i.Modified {
		c += "+modified"
	}
	at := ""
	if i.CommitAt != "" {
		at = " (" + i.CommitAt + ")"
	}
	return fmt.Sprintf("%s commit %s%s %s %s", i.Version, c, at, i.GoVersion, i.Platform)
}
