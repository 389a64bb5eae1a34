// Package buildinfo says which build of Outpost is running. The release
// script stamps the version with -ldflags "-X .../internal/buildinfo.version=v1.2.3";
// the commit and its time come from the VCS stamp the Go toolchain embeds.
package buildinfo
