// Package scenario reads fleet scenario files (YAML) into a fleet.Config.
//
// A file has the fleet-wide keys of fleet.Config (broker, site, duration,
// drain_timeout, ramp_up, seed), an optional `defaults` group applied to
// every group, and `groups`. Keys a group leaves out take the value from
// `defaults`, then from fleet.DefaultGroup. Unknown keys are errors, so a
// typo does not silently run a different fleet. Examples: configs/fleet-*.yaml.
package scenario
