package peer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/outpost-edge/outpost/edge/log"
)

// ErrRestoreConflict: this node has no epoch (its metadata is new) but its
// log has records, while a peer holds a replica of it from an earlier
// epoch. Which copy is the truth cannot be decided here; the node must not
// start, or it would reuse offsets its peers (and the centre) already hold.
var ErrRestoreConflict = errors.New("peer: this node's log and its peers' replica of it disagree")

// PeerAddr names a peer and its peer listener.
type PeerAddr struct {
	Name    string
	Address string
	// TLS is the client side of TLS to this peer, or nil.
	TLS *tls.Config
}

// RestoreConfig configures Restore.
type RestoreConfig struct {
	Config
	// Log is this node's own log, which Restore fills.
	Log *log.Log
	// Peers are asked for a replica of this node.
	Peers []PeerAddr
}

// RestoreResult says what Restore did.
type RestoreResult struct {
	// From is the peer restored from; "" if nothing was restored.
	From string
	// Epoch is the epoch restored (the owner's next start is Epoch+1).
	Epoch uint64
	// Records is how many records were copied.
	Records int64
	// Unreachable are peers that could not be asked.
	Unreachable []string
}

// Restore runs before NewOwner, at a start of this node with no epoch of
// its own (a new data directory, or a disk replaced under an existing node
// name) [PROTOCOL-6]. It asks every peer whether it keeps a replica of this
// node; if one does, it copies that replica (the one of the highest epoch)
// into this node's log at the same offsets, with its epoch histories, and
// stores its epoch, so that this node never reuses an offset that its peers
// or the centre already hold, and its next epoch is above every epoch its
// peers saw. With an epoch already stored it does nothing. Peers that
// cannot be reached are listed in the result: the caller decides whether a
// fresh start is safe (a new site's first start looks the same).
func Restore(ctx context.Context, cfg RestoreConfig) (RestoreResult, error) {
	cfg.fill()
	var res RestoreResult
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	if e, err := loadEpoch(ctx, cfg.Store, ownBucket); err != nil || e > 0 {
		return res, err
	}
	var best *PeerAddr
	var bestEpoch uint64
	for i := range cfg.Peers {
		p := &cfg.Peers[i]
		e, err := probeReplica(ctx, cfg, p)
		switch {
		case err != nil:
			cfg.Logger.Warn("peer: could not ask a peer for a replica of this node", "peer", p.Name, "address", p.Address, "err", err)
			res.Unreachable = append(res.Unreachable, p.Name)
		case e > bestEpoch:
			best, bestEpoch = p, e
		}
	}
	if best == nil {
		return res, nil
	}
	for _, t := range cfg.Log.Topics() {
		for _, pi := range t.Partitions {
			if pi.EndOffset > 0 {
				return res, fmt.Errorf("%w: this node's metadata has no epoch but %s/%d holds records, and %s keeps a replica of this node at epoch %d: "+
					"move this data directory aside and start again to restore from %s, or restore meta.db", ErrRestoreConflict, t.Name, pi.Partition, best.Name, bestEpoch, best.Name)
			}
		}
	}
	cfg.Logger.Warn("peer: this node has no epoch but a peer keeps its replica: restoring before taking publishes", "from", best.Name, "epoch", bestEpoch)
	f := &Follower{
		cfg:    FollowerConfig{Config: cfg.Config, Owner: cfg.Node, Address: best.Address, TLS: best.TLS, Log: cfg.Log},
		mode:   modeRestore,
		bucket: ownBucket,
		parts:  map[partKey]*replicaPart{},
	}
	progressed, err := f.session(ctx)
	if !errors.Is(err, errRestored) {
		if err == nil {
			err = errors.New("session ended")
		}
		return res, fmt.Errorf("peer: restore from %s (progressed: %v): %w", best.Name, progressed, err)
	}
	if f.epoch != bestEpoch {
		return res, fmt.Errorf("peer: restore from %s: its epoch changed from %d to %d meanwhile", best.Name, bestEpoch, f.epoch)
	}
	if err := storeEpoch(ctx, cfg.Store, ownBucket, f.epoch); err != nil {
		return res, fmt.Errorf("peer: store restored epoch: %w", err)
	}
	res.From, res.Epoch = best.Name, f.epoch
	for _, s := range f.Status() {
		res.Records += s.End
	}
	cfg.Logger.Warn("peer: restored this node's partitions from a peer's replica", "from", best.Name, "epoch", f.epoch, "records", res.Records)
	return res, nil
}

// probeReplica asks p for its replica of this node: the epoch it holds, 0
// if none.
func probeReplica(ctx context.Context, cfg RestoreConfig, p *PeerAddr) (uint64, error) {
	d := net.Dialer{Timeout: cfg.IOTimeout}
	c, err := d.DialContext(ctx, "tcp", p.Address)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if p.TLS != nil {
		tc := tls.Client(c, p.TLS)
		c.SetDeadline(time.Now().Add(cfg.IOTimeout))
		if err := tc.HandshakeContext(ctx); err != nil {
			return 0, err
		}
		c = tc
	}
	f := &Follower{cfg: FollowerConfig{Config: cfg.Config, Owner: cfg.Node, Address: p.Address, Log: cfg.Log}, mode: modeRestore, bucket: ownBucket}
	w, err := f.handshake(ctx, c, newFrameReader(c))
	var re *RemoteError
	if errors.As(err, &re) && re.Code == codeNoReplica {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return w.Epoch, nil
}
