// Package deliver is the MQTT end of the downlink: it delivers the
// commands queued at the node (sync/downlink) to connected devices and
// turns what devices do with them into statuses — delivered on PUBACK
// (QoS 1) or once written (QoS 0), succeeded/failed when the device
// answers on its response topic, rejected when the ACL does not let the
// device subscribe to the command's topic, expired when the time to live
// passes first (never delivered afterwards).
//
// It uses mochi's public client API only (Clients.Get, NextPacketID,
// State.Inflight, WritePacket) and a hook; the composition root
// (edge/node) wires it to the queue through the small Queue interface.
//
// Order: per device, commands go out in queue order, one in flight at a
// time; a device's next command is written only after the previous one is
// delivered or ended. One goroutine (Run) writes; hook callbacks only
// record events and wake it.
//
// Delivery is at-least-once (see Deliverer). Lock order: Deliverer.mu
// only, never held across a call into mochi or the queue.
package deliver
