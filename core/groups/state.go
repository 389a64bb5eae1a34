package groups

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// GroupBucketPrefix starts the name of each group's KV bucket; the rest is
// the group's name.
const GroupBucketPrefix = "outpost_group_"

// PositionsBucket holds every group's committed positions.
const PositionsBucket = "outpost_group_positions"

// groupBucket is the KV bucket of group name.
func groupBucket(name string) string { return GroupBucketPrefix + name }

func memberKey(id string) string { return "m." + id }
func claimKey(bucket int) string { return "c." + strconv.Itoa(bucket) }
func positionKey(group string, bucket int) string {
	return group + "." + strconv.Itoa(bucket)
}

// memberValue is a heartbeat.
type memberValue struct {
	Member string    `json:"member"`
	Topic  string    `json:"topic"`
	Since  time.Time `json:"since"`
}

// claimValue is a bucket's claim.
type claimValue struct {
	Member string `json:"member"`
}

// Position is a committed position.
type Position struct {
	Topic string `json:"topic"`
	// Seq is the stream sequence up to which every message of the bucket
	// was handled; 0: none.
	Seq uint64 `json:"seq"`
	// Released: written by a reader giving the bucket back (or by a
	// reset). A reader that finds it false takes over from one that died
	// or lost its claim: records that one handled after Seq come again
	// (Stats.UncleanTakeovers).
	Released bool `json:"released,omitempty"`
}

// openGroupBucket binds or creates group name's bucket with the session
// timeout as its MaxAge, and returns the timeout in force.
func openGroupBucket(ctx context.Context, js jetstream.JetStream, name string, session time.Duration) (jetstream.KeyValue, time.Duration, error) {
	kv, err := js.KeyValue(ctx, groupBucket(name))
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      groupBucket(name),
			Description: "Outpost consumer group " + name + ": members and bucket claims (expire after the session timeout)",
			History:     1,
			TTL:         session,
			Storage:     jetstream.FileStorage,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, groupBucket(name))
		}
	}
	if err != nil {
		return nil, 0, fmt.Errorf("groups: group bucket %s: %w", groupBucket(name), err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("groups: group bucket %s: %w", groupBucket(name), err)
	}
	return kv, st.TTL(), nil
}

// openPositions binds or creates the positions bucket.
func openPositions(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, PositionsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      PositionsBucket,
			Description: "Outpost consumer groups' committed positions, per group and bucket",
			History:     1,
			Storage:     jetstream.FileStorage,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, PositionsBucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("groups: positions bucket %s: %w", PositionsBucket, err)
	}
	return kv, nil
}

// groupState is what one look at the group bucket found.
type groupState struct {
	members map[string]memberValue // by member id
	claims  map[int]claimed        // by bucket
}

type claimed struct {
	member string
	rev    uint64
}

// readState lists the group bucket's keys and values.
func readState(ctx context.Context, kv jetstream.KeyValue) (groupState, error) {
	st := groupState{members: map[string]memberValue{}, claims: map[int]claimed{}}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return st, err
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired or released meanwhile
		}
		if err != nil {
			return st, err
		}
		switch {
		case strings.HasPrefix(k, "m."):
			var v memberValue
			if json.Unmarshal(e.Value(), &v) == nil && v.Member != "" {
				st.members[v.Member] = v
			}
		case strings.HasPrefix(k, "c."):
			b, err := strconv.Atoi(k[2:])
			var v claimValue
			if err == nil && json.Unmarshal(e.Value(), &v) == nil {
				st.claims[b] = claimed{member: v.Member, rev: e.Revision()}
			}
		}
	}
	return st, nil
}
