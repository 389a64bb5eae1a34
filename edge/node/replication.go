package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	bmqtt "github.com/outpost-edge/outpost/bridge/mqtt"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/internal/ratelimit"
	"github.com/outpost-edge/outpost/sync/peer"
)

// ReplicationConfig configures site replication (sync/peer): this node
// serves its own partitions to its peers and keeps a replica of each
// peer's. Replication is on when peers are listed.
type ReplicationConfig struct {
	// Listen is this node's peer listener, host:port (set by -replication);
	// its peers fetch this node's partitions there.
	Listen string `yaml:"listen"`
	// Peers are the other nodes of the site, by name (their -node) and
	// peer address (set by -peers NAME=HOST:PORT,…).
	Peers []PeerConfig `yaml:"peers"`
	// Secret is the site's shared secret (at least 16 bytes), the same on
	// every node; both sides of a link prove they know it. Prefer
	// SecretFile or OUTPOST_REPLICATION_SECRET over writing it here.
	Secret string `yaml:"secret"`
	// SecretFile holds the secret (surrounding whitespace is ignored).
	SecretFile string `yaml:"secret_file"`
	// Acks is when a QoS 1/2 publish is acknowledged: all (default; once
	// the record is durable on this node and on every in-sync peer, with
	// at least min_insync in sync, else the policy applies) or local (on
	// this node's durability; replicas follow asynchronously).
	Acks string `yaml:"acks"`
	// MinInSync is how many peers must be in sync for acks: all to wait
	// for them rather than apply the policy, and for a partition not to
	// count as under-replicated; 0 means all peers (for a two-node site:
	// the one peer).
	MinInSync int `yaml:"min_insync"`
	// Policy is what acks: all does when too few replicas are in sync:
	// degrade (default: ack on local durability, the partition counts as
	// under-replicated) or refuse (MQTT 5 PUBACK 0x97, 3.1.1 no ack and a
	// disconnect: the device keeps its data).
	Policy string `yaml:"policy"`
	// LagMax is how long a peer may go without reaching this node's end
	// and still count as in sync.
	LagMax time.Duration `yaml:"lag_max"`
	// TLS secures the peer links (mutual TLS when ca_file is set).
	TLS PeerTLSConfig `yaml:"tls"`
	// TakeoverAfter is how long a peer must be unreachable before this
	// node tries to take over forwarding its replicated partitions to the
	// centre (it also needs the peer's forwarding lease to have expired;
	// upstream must be configured).
	TakeoverAfter time.Duration `yaml:"takeover_after"`
	// BandwidthBytesPerSec caps the bytes this node sends its peers per
	// second (fetch responses; 0: no cap).
	BandwidthBytesPerSec int64 `yaml:"bandwidth_bytes_per_sec"`
	// ShareUplinkBandwidth makes the peer links and the uplink share
	// upstream.bandwidth_bytes_per_sec: while both send, each gets half;
	// either alone gets all of it. For sites whose peers are reached over
	// the same constrained link as the centre.
	ShareUplinkBandwidth bool `yaml:"share_uplink_bandwidth"`
	// LeaseTTL is the forwarding leases' time to live, used when this node
	// creates the lease bucket in the centre (the bucket keeps the TTL of
	// whoever created it). A dead node's partitions are forwarded by a
	// peer about max(takeover_after, lease_ttl) after it died.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
}

// PeerConfig names one peer node.
type PeerConfig struct {
	// Name is the peer's node name (its upstream.node / -node).
	Name string `yaml:"name"`
	// Address is the peer's replication.listen, host:port.
	Address string `yaml:"address"`
}

// PeerTLSConfig configures TLS on the peer links. With CertFile and
// KeyFile set, the listener serves TLS and followers dial with TLS; with
// CAFile set too, each side verifies the other's certificate against it
// (the dialled host must be in the owner's certificate).
type PeerTLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	CAFile   string `yaml:"ca_file"`
}

func defaultReplication() ReplicationConfig {
	return ReplicationConfig{Acks: "all", Policy: "degrade", LagMax: 10 * time.Second,
		TakeoverAfter: 5 * time.Second, LeaseTTL: wire.DefaultLeaseTTL}
}

// Enabled reports whether replication is configured.
func (r ReplicationConfig) Enabled() bool { return len(r.Peers) > 0 }

// ParsePeers parses the -peers flag: NAME=HOST:PORT[,NAME=HOST:PORT…].
func ParsePeers(s string) ([]PeerConfig, error) {
	var out []PeerConfig
	for _, item := range strings.Split(s, ",") {
		name, addr, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || name == "" || addr == "" {
			return nil, fmt.Errorf("-peers: %q is not NAME=HOST:PORT", item)
		}
		out = append(out, PeerConfig{Name: name, Address: addr})
	}
	return out, nil
}

func (r ReplicationConfig) validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("config: replication.%s: %s", field, fmt.Sprintf(format, args...))
	}
	if !r.Enabled() {
		if r.Listen != "" {
			return bad("peers", "empty, but replication.listen is set: list the site's other nodes (-peers NAME=HOST:PORT,…)")
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(r.Listen); err != nil {
		return bad("listen", "%q is not host:port (the address peers fetch this node's partitions from; -replication)", r.Listen)
	}
	seen := map[string]bool{}
	for i, p := range r.Peers {
		if !peer.ValidName(p.Name) {
			return bad(fmt.Sprintf("peers[%d].name", i), "%q: want 1–64 of [A-Za-z0-9_-]", p.Name)
		}
		if seen[p.Name] {
			return bad(fmt.Sprintf("peers[%d].name", i), "%q is listed twice", p.Name)
		}
		seen[p.Name] = true
		if _, _, err := net.SplitHostPort(p.Address); err != nil {
			return bad(fmt.Sprintf("peers[%d].address", i), "%q is not host:port", p.Address)
		}
	}
	switch {
	case r.Secret == "" && r.SecretFile == "":
		return bad("secret", "empty: set replication.secret_file or OUTPOST_REPLICATION_SECRET (the same on every node of the site)")
	case r.Secret != "" && r.SecretFile != "":
		return bad("secret", "set either secret or secret_file, not both")
	case r.Secret != "" && len(r.Secret) < peer.MinSecretBytes:
		return bad("secret", "%d bytes: want at least %d", len(r.Secret), peer.MinSecretBytes)
	}
	switch r.Acks {
	case "local", "all":
	default:
		return bad("acks", "%q is not one of local, all", r.Acks)
	}
	if r.Policy != "degrade" && r.Policy != "refuse" {
		return bad("policy", "%q is not one of degrade, refuse", r.Policy)
	}
	if r.MinInSync < 0 || r.MinInSync > len(r.Peers) {
		return bad("min_insync", "%d is not between 0 (all peers) and the number of peers (%d)", r.MinInSync, len(r.Peers))
	}
	if r.LagMax <= 0 {
		return bad("lag_max", "%v is not positive", r.LagMax)
	}
	if r.TakeoverAfter <= 0 {
		return bad("takeover_after", "%v is not positive", r.TakeoverAfter)
	}
	if r.LeaseTTL < time.Second {
		return bad("lease_ttl", "%v is below 1s", r.LeaseTTL)
	}
	if r.BandwidthBytesPerSec < 0 || (r.BandwidthBytesPerSec > 0 && r.BandwidthBytesPerSec < 1024) {
		return bad("bandwidth_bytes_per_sec", "%d: want 0 (no cap) or at least 1024", r.BandwidthBytesPerSec)
	}
	if r.ShareUplinkBandwidth && r.BandwidthBytesPerSec > 0 {
		return bad("bandwidth_bytes_per_sec", "set together with share_uplink_bandwidth: the shared budget is upstream.bandwidth_bytes_per_sec; set one of them")
	}
	t := r.TLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		return bad("tls.cert_file", "cert_file and key_file go together")
	}
	if t.CAFile != "" && t.CertFile == "" {
		return bad("tls.ca_file", "set, but tls.cert_file is empty: mutual TLS needs this node's certificate too")
	}
	return nil
}

// replicaHolders are the log holds the owner keeps for its peers, declared
// at the log's open so retention keeps what they have not fetched.
func (r ReplicationConfig) replicaHolders() []string {
	var out []string
	for _, p := range r.Peers {
		out = append(out, peer.HoldName(p.Name))
	}
	return out
}

// openBudgets makes the byte budgets of the peer links and the uplink:
// one shared fairly (replication.share_uplink_bandwidth), or a cap of the
// peer links' own.
func (n *Node) openBudgets() {
	r, u := n.cfg.Replication, n.cfg.Upstream
	switch {
	case !r.Enabled():
	case r.ShareUplinkBandwidth:
		sh := ratelimit.NewShared(u.BandwidthBytesPerSec)
		n.uplinkBudget, n.peerBudget = sh.Lane("uplink"), sh.Lane("peers")
	case r.BandwidthBytesPerSec > 0:
		n.peerBudget = ratelimit.NewShared(r.BandwidthBytesPerSec).Lane("peers")
	}
}

// openReplication binds the peer listener, bumps this node's epoch (before
// the broker takes publishes) and opens a replica log per peer.
func (n *Node) openReplication(ctx context.Context) (err error) {
	r := n.cfg.Replication
	name := n.cfg.Upstream.Node
	if name == "" {
		name = n.identity.NodeID
	}
	if !peer.ValidName(name) {
		return fmt.Errorf("config: upstream.node: %q cannot name a replicating node: want 1–64 of [A-Za-z0-9_-] (-node)", name)
	}
	for i, p := range r.Peers {
		if p.Name == name {
			return fmt.Errorf("config: replication.peers[%d].name: %q is this node", i, p.Name)
		}
	}
	secret := []byte(r.Secret)
	if r.SecretFile != "" {
		b, err := os.ReadFile(r.SecretFile)
		if err != nil {
			return fmt.Errorf("config: replication.secret_file: %w", err)
		}
		if secret = []byte(strings.TrimSpace(string(b))); len(secret) < peer.MinSecretBytes {
			return fmt.Errorf("config: replication.secret_file: %s holds %d bytes: want at least %d", r.SecretFile, len(secret), peer.MinSecretBytes)
		}
	}
	serverTLS, clientTLS, err := peerTLS(r.TLS)
	if err != nil {
		return fmt.Errorf("config: replication.tls.%w", err)
	}
	base := peer.DefaultConfig()
	base.Site, base.Node, base.Secret, base.Store = n.cfg.Upstream.Site, name, secret, n.meta
	base.LagMax = r.LagMax
	base.Logger = n.logger.With("component", "peer")
	base.Metrics = peer.NewMetrics(n.reg)

	names := make([]string, 0, len(r.Peers))
	replicas := map[string]*log.Log{}
	var addrs []peer.PeerAddr
	for _, p := range r.Peers {
		names = append(names, p.Name)
		lc := n.cfg.logConfig()
		// A replica only in memory is no replica: whatever log.sync says
		// for this node's own log, a follower fdatasyncs each response
		// before its next fetch acknowledges it (one per round, not per
		// record).
		lc.Sync = log.SyncAlways
		// The follower is a replica log's only appender and appends a whole
		// response at once (its partitions concurrently): a commit need not
		// wait for more appends than those, which arrive within microseconds.
		lc.CommitWindow = time.Millisecond
		lc.Logger = n.logger.With("component", "replica", "owner", p.Name)
		lc.OpenFile = n.openFile
		dir := filepath.Join(n.cfg.DataDir, "replicas", p.Name)
		rl, err := log.Open(dir, lc)
		var ce *log.CorruptionError
		if errors.As(err, &ce) {
			// edge check/repair cover the node's own log; a replica is a
			// copy that its owner can send again.
			return fmt.Errorf("node: replica of %s is damaged: %w (it is a copy: move %s aside and this node fetches it again from %s — unless %s lost its own data, then keep it for its restore)",
				p.Name, err, dir, p.Name, p.Name)
		}
		if err != nil {
			return fmt.Errorf("node: replica of %s: %w", p.Name, err)
		}
		n.replicaLogs = append(n.replicaLogs, rl)
		replicas[p.Name] = rl
		var tc *tls.Config
		if clientTLS != nil {
			tc = clientTLS.Clone()
			if host, _, err := net.SplitHostPort(p.Address); err == nil {
				tc.ServerName = host
			}
		}
		addrs = append(addrs, peer.PeerAddr{Name: p.Name, Address: p.Address, TLS: tc})
	}
	// A node without an epoch (new data directory) asks its peers for a
	// replica of itself before it serves or ingests: a replaced disk must
	// not reuse offsets the peers and the centre already hold.
	res, err := peer.Restore(ctx, peer.RestoreConfig{Config: base, Log: n.log, Peers: addrs})
	if err != nil {
		return fmt.Errorf("node: replication: %w", err)
	}
	if res.From == "" && len(res.Unreachable) > 0 {
		n.logger.Warn("node: first start with replication, and some peers could not be asked whether they keep a replica of this node; starting without one. "+
			"If this node's disk was replaced, stop it, bring the peers up and start it again with an empty data directory", "unreachable", res.Unreachable)
	}
	// The listener is bound only now: a peer starting at the same moment
	// and asking this node for a replica of itself gets "connection
	// refused" at once instead of waiting for a handshake that this
	// node, busy restoring, would not answer yet.
	if n.peerLn, err = net.Listen("tcp", r.Listen); err != nil {
		return fmt.Errorf("config: replication.listen: %w (is another node running? choose another with -replication)", err)
	}
	policy := peer.PolicyDegrade
	if r.Policy == "refuse" {
		policy = peer.PolicyRefuse
	}
	oc := peer.OwnerConfig{Config: base, Log: n.log, Listener: n.peerLn, TLS: serverTLS,
		Followers: names, MinInSync: r.MinInSync, Policy: policy, Replicas: replicas}
	if n.peerBudget != nil {
		oc.Budget = n.peerBudget
	}
	n.owner, err = peer.NewOwner(ctx, oc)
	if err != nil {
		return fmt.Errorf("node: replication: %w", err)
	}
	n.services = append(n.services, func(ctx context.Context, _ *Node) error { return n.owner.Run(ctx) })
	for i, p := range r.Peers {
		f, err := peer.NewFollower(peer.FollowerConfig{Config: base, Owner: p.Name, Address: p.Address, TLS: addrs[i].TLS, Log: replicas[p.Name],
			Retention: log.TopicConfig{RetentionBytes: n.cfg.Log.RetentionBytes, RetentionAge: n.cfg.Log.RetentionAge}})
		if err != nil {
			return fmt.Errorf("node: replication: %w", err)
		}
		n.followers = append(n.followers, f)
		n.services = append(n.services, func(ctx context.Context, _ *Node) error { return f.Run(ctx) })
	}
	n.logger.Info("node: replicating", "node", name, "listen", n.peerLn.Addr().String(), "peers", names,
		"epoch", n.owner.Epoch(), "acks", r.Acks)
	return nil
}

func peerTLS(t PeerTLSConfig) (server, client *tls.Config, err error) {
	if t.CertFile == "" {
		return nil, nil, nil
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("cert_file/key_file: %w", err)
	}
	server = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	client = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("ca_file: %s holds no PEM certificate", t.CAFile)
		}
		server.ClientCAs, server.ClientAuth = pool, tls.RequireAndVerifyClientCert
		client.RootCAs = pool
	}
	return server, client, nil
}

// ackGate is the MQTT hook's acknowledgement gate under acks: all, nil
// otherwise.
func (n *Node) ackGate() bmqtt.AckGate {
	if n.owner == nil || n.cfg.Replication.Acks != "all" {
		return nil
	}
	return func(topic string, partition int32, end int64, done func(error)) {
		n.owner.Await(topic, partition, end, func(err error) {
			if errors.Is(err, peer.ErrNotReplicated) {
				err = fmt.Errorf("%w: %w", bmqtt.ErrNotReplicated, err)
			}
			done(err)
		})
	}
}

// replicaState is /v1/topics' "replication" object of a partition; nil
// without replication.
func (n *Node) replicaState(topic string, partition int32) any {
	if n.owner == nil {
		return nil
	}
	if ri, ok := n.owner.Replica(topic, partition); ok {
		return ri
	}
	return nil
}

// Replicas returns this node's own partitions with their followers' state,
// or nil without replication.
func (n *Node) Replicas() []peer.ReplicaInfo {
	if n.owner == nil {
		return nil
	}
	return n.owner.Replicas()
}

// ReplicaLog returns this node's replica of owner's partitions, or nil.
func (n *Node) ReplicaLog(owner string) *log.Log {
	for i, p := range n.cfg.Replication.Peers {
		if p.Name == owner && i < len(n.replicaLogs) {
			return n.replicaLogs[i]
		}
	}
	return nil
}

// PeerAddr returns the bound peer listener address, or "".
func (n *Node) PeerAddr() string {
	if n.peerLn == nil {
		return ""
	}
	return n.peerLn.Addr().String()
}

func (n *Node) closeReplication() error {
	var errs []error
	if n.peerLn != nil {
		n.peerLn.Close() // the owner closes it when it ran; it may not have
	}
	for i, rl := range slices.Backward(n.replicaLogs) {
		if err := rl.Close(); err != nil && !errors.Is(err, log.ErrClosed) {
			errs = append(errs, fmt.Errorf("node: close replica log %d: %w", i, err))
		}
	}
	return errors.Join(errs...)
}
