package meta

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// nodeIDBytes is the random part of a node ID: 80 bits, so a fleet of a
// million nodes collides with odds near 1e-13.
const nodeIDBytes = 10

// nodeIDEncoding gives IDs of [a-z2-7], safe as a NATS subject token, a
// file name and a DNS label.
var nodeIDEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// Identity is who this node is. NodeID is generated once, at the first
// call to Identity, and kept for the life of the store: the upstream
// subjects and message IDs carry it, so exactly-once forwarding depends on
// it never changing.
type Identity struct {
	// NodeID is 16 characters of [a-z2-7].
	NodeID string
	// Site is the field site this node belongs to; "" until SetSite.
	Site string
	// Created is when the NodeID was generated.
	Created time.Time
}

// Identity returns the node's identity, generating and storing a random
// NodeID (crypto/rand) the first time.
func (s *Store) Identity(ctx context.Context) (Identity, error) {
	id, ok, err := s.readIdentity(ctx)
	if err != nil || ok {
		return id, err
	}
	s.identityMu.Lock()
	defer s.identityMu.Unlock()
	var created bool
	err = s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutpost)
		if v := b.Get(keyIdentity); v != nil {
			id, err = decodeIdentity(v)
			return err
		}
		var raw [nodeIDBytes]byte
		if _, err := rand.Read(raw[:]); err != nil {
			return fmt.Errorf("generate node ID: %w", err)
		}
		id = Identity{NodeID: strings.ToLower(nodeIDEncoding.EncodeToString(raw[:])), Created: time.Now().UTC()}
		v, err := encodeIdentity(id)
		if err != nil {
			return err
		}
		created = true
		return b.Put(keyIdentity, v)
	})
	if err != nil {
		return Identity{}, fmt.Errorf("meta: identity: %w", err)
	}
	if created {
		s.log.Info("meta: generated node identity", "node_id", id.NodeID, "file", s.path)
	}
	return id, nil
}

func (s *Store) readIdentity(ctx context.Context) (id Identity, ok bool, err error) {
	err = s.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketOutpost).Get(keyIdentity)
		if v == nil {
			return nil
		}
		id, err = decodeIdentity(v)
		ok = err == nil
		return err
	})
	if err != nil {
		return Identity{}, false, fmt.Errorf("meta: identity: %w", err)
	}
	return id, ok, nil
}

// SetSite records the site this node belongs to: 1–64 of [A-Za-z0-9_-]
// (it becomes a NATS subject token). It generates the NodeID first if
// there is none yet.
func (s *Store) SetSite(ctx context.Context, site string) error {
	if !siteRE.MatchString(site) {
		return fmt.Errorf("%w: site %q: want 1–64 of [A-Za-z0-9_-] (it is a NATS subject token)", ErrBadName, site)
	}
	id, err := s.Identity(ctx)
	if err != nil {
		return err
	}
	if id.Site == site {
		return nil
	}
	err = s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutpost)
		cur, err := decodeIdentity(b.Get(keyIdentity))
		if err != nil {
			return err
		}
		cur.Site = site
		v, err := encodeIdentity(cur)
		if err != nil {
			return err
		}
		return b.Put(keyIdentity, v)
	})
	if err != nil {
		return fmt.Errorf("meta: set site: %w", err)
	}
	if id.Site != "" {
		s.log.Warn("meta: site changed; upstream subjects change with it", "old", id.Site, "new", site, "node_id", id.NodeID)
	}
	return nil
}

func encodeIdentity(id Identity) ([]byte, error) {
	return versionedJSON(identityV1, identityValue(id))
}

func decodeIdentity(v []byte) (Identity, error) {
	var iv identityValue
	if err := decodeVersionedJSON(v, identityV1, "identity", &iv); err != nil {
		return Identity{}, err
	}
	if iv.NodeID == "" {
		return Identity{}, fmt.Errorf("%w: identity has an empty node ID", ErrCorrupt)
	}
	return Identity(iv), nil
}
