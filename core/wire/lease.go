package wire

import "time"

// LeaseBucket is the JetStream KV bucket holding forwarding leases: one key
// per origin node (LeaseKey), whose holder is the only node that may
// forward that origin's partitions to the centre (G3 under failover, issue
// 14). Keys expire when their holder stops renewing them (the bucket's
// MaxAge is the lease's time to live).
const LeaseBucket = "outpost_forward_leases"

// DefaultLeaseTTL is the lease time to live of a bucket its first user
// creates. The bucket has one TTL for every site; whoever creates it first
// sets it, and later users take the bucket's (a node's configured TTL is
// used only to create it).
const DefaultLeaseTTL = 15 * time.Second

// LeaseKey is the key of the lease on forwarding the partitions of origin
// node node of site. Site and node names are subject tokens (subject.go),
// valid in KV keys.
func LeaseKey(site, node string) string { return site + "." + node }

// Lease is the value of a lease key.
type Lease struct {
	// Holder is the node forwarding the origin's partitions.
	Holder string `json:"holder"`
	// Since is when the holder took the lease (not renewed: the KV entry's
	// own time says when it was last renewed).
	Since time.Time `json:"since"`
}
