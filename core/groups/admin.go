package groups

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/wire"
)

// ErrNotFound: no such group.
var ErrNotFound = errors.New("groups: no such group")

// ErrActive: the group has live members; reset and delete need it stopped.
var ErrActive = errors.New("groups: the group has live members")

// List returns the names of every group, sorted.
func List(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	var out []string
	names := js.KeyValueStoreNames(ctx)
	for n := range names.Name() {
		if strings.HasPrefix(n, GroupBucketPrefix) && n != PositionsBucket {
			out = append(out, strings.TrimPrefix(n, GroupBucketPrefix))
		}
	}
	if err := names.Error(); err != nil {
		return nil, fmt.Errorf("groups: list: %w", err)
	}
	slices.Sort(out)
	return out, nil
}

// GroupInfo describes a group (core groups describe, GET /v1/groups/{name}).
type GroupInfo struct {
	Group string `json:"group"`
	// Topic is what the group reads ("" when it has neither members nor
	// positions).
	Topic          string  `json:"topic"`
	SessionTimeout float64 `json:"session_timeout_seconds"`
	// Members are the live members, by name.
	Members []MemberInfo `json:"members"`
	// Buckets lists every bucket of the topic's stream.
	Buckets []BucketInfo `json:"buckets"`
	// LagRecords sums the buckets' lag.
	LagRecords uint64 `json:"lag_records"`
}

// MemberInfo is one live member.
type MemberInfo struct {
	Member  string    `json:"member"`
	Since   time.Time `json:"since"`
	Buckets []int     `json:"buckets"`
}

// BucketInfo is one bucket's committed position and lag.
type BucketInfo struct {
	Bucket int `json:"bucket"`
	// Committed is the stream sequence up to which the group handled the
	// bucket (0: nothing yet); End the sequence of the bucket's last
	// message (0: empty).
	Committed uint64 `json:"committed_seq"`
	End       uint64 `json:"end_seq"`
	// LagRecords counts the bucket's messages after Committed (in batch
	// format a message holds several records; this counts messages).
	LagRecords uint64 `json:"lag_records"`
	// Member holds the bucket now; "" if nobody.
	Member string `json:"member"`
}

// Describe reads group name's members, claims and positions and the lag of
// each bucket of its topic's stream (prefix: wire.DefaultPrefix if "").
func Describe(ctx context.Context, js jetstream.JetStream, prefix, name string) (GroupInfo, error) {
	if prefix == "" {
		prefix = wire.DefaultPrefix
	}
	if err := ValidateName(name); err != nil {
		return GroupInfo{}, err
	}
	info := GroupInfo{Group: name, Members: []MemberInfo{}, Buckets: []BucketInfo{}}
	kv, err := js.KeyValue(ctx, groupBucket(name))
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return info, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return info, err
	}
	if st, err := kv.Status(ctx); err == nil {
		info.SessionTimeout = st.TTL().Seconds()
	}
	st, err := readState(ctx, kv)
	if err != nil {
		return info, err
	}
	positions, err := readPositions(ctx, js, name)
	if err != nil {
		return info, err
	}
	for _, m := range st.members {
		info.Topic = m.Topic
	}
	for _, p := range positions {
		if info.Topic == "" {
			info.Topic = p.Topic
		}
	}
	held := map[string][]int{}
	for b, c := range st.claims {
		held[c.member] = append(held[c.member], b)
	}
	for id, m := range st.members {
		bs := held[id]
		slices.Sort(bs)
		info.Members = append(info.Members, MemberInfo{Member: id, Since: m.Since, Buckets: append([]int{}, bs...)})
	}
	slices.SortFunc(info.Members, func(a, b MemberInfo) int { return strings.Compare(a.Member, b.Member) })
	if info.Topic == "" {
		return info, nil
	}
	stream, err := js.Stream(ctx, wire.StreamName(prefix, info.Topic))
	if err != nil {
		return info, fmt.Errorf("groups: stream of topic %q: %w", info.Topic, err)
	}
	n, bucketed := wire.StreamBuckets(stream.CachedInfo().Config), true
	if n == 0 {
		n, bucketed = 1, false
	}
	for b := range n {
		filter := wire.BucketFilter(prefix, info.Topic, b)
		if !bucketed {
			filter = wire.BucketFilter(prefix, info.Topic, -1)
		}
		bi := BucketInfo{Bucket: b, Committed: positions[b].Seq}
		if c, ok := st.claims[b]; ok {
			bi.Member = c.member
		}
		if m, err := stream.GetLastMsgForSubject(ctx, filter); err == nil {
			bi.End = m.Sequence
		} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
			return info, err
		}
		if bi.End > bi.Committed {
			if bi.LagRecords, err = pending(ctx, stream, filter, bi.Committed); err != nil {
				return info, err
			}
		}
		info.LagRecords += bi.LagRecords
		info.Buckets = append(info.Buckets, bi)
	}
	return info, nil
}

// pending counts the messages on filter after sequence after: an ephemeral
// consumer's pending count (it is deleted at once; it delivers nothing).
func pending(ctx context.Context, st jetstream.Stream, filter string, after uint64) (uint64, error) {
	cc := jetstream.ConsumerConfig{
		FilterSubject: filter, AckPolicy: jetstream.AckNonePolicy, MemoryStorage: true,
		InactiveThreshold: 10 * time.Second, DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if after > 0 {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, after+1
	}
	c, err := st.CreateOrUpdateConsumer(ctx, cc)
	if err != nil {
		return 0, fmt.Errorf("groups: lag of %s: %w", filter, err)
	}
	n := c.CachedInfo().NumPending
	_ = st.DeleteConsumer(context.WithoutCancel(ctx), c.CachedInfo().Name)
	return n, nil
}

// readPositions returns group name's committed positions by bucket.
func readPositions(ctx context.Context, js jetstream.JetStream, name string) (map[int]Position, error) {
	out := map[int]Position{}
	kv, err := js.KeyValue(ctx, PositionsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	lister, err := kv.ListKeysFiltered(ctx, name+".*")
	if err != nil {
		return nil, err
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	for _, k := range keys {
		b, err := strconv.Atoi(strings.TrimPrefix(k, name+"."))
		if err != nil {
			continue
		}
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var p Position
		if json.Unmarshal(e.Value(), &p) == nil {
			out[b] = p
		}
	}
	return out, nil
}

// stopped fails with ErrActive while group name has live members.
func stopped(ctx context.Context, js jetstream.JetStream, name string) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, groupBucket(name))
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	st, err := readState(ctx, kv)
	if err != nil {
		return nil, err
	}
	if len(st.members) > 0 {
		ids := make([]string, 0, len(st.members))
		for id := range st.members {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		return nil, fmt.Errorf("%w: %s (members %s); stop them first (a member that died leaves after the session timeout)", ErrActive, name, strings.Join(ids, ", "))
	}
	return kv, nil
}

// Reset sets every bucket's position of group name on topic to the start
// to, as kafka-consumer-groups --reset-offsets does: earliest, latest or
// a time. The group must be stopped (ErrActive).
func Reset(ctx context.Context, js jetstream.JetStream, prefix, name, topic string, to Start) error {
	if prefix == "" {
		prefix = wire.DefaultPrefix
	}
	if err := ValidateName(name); err != nil {
		return err
	}
	if _, err := stopped(ctx, js, name); err != nil {
		return err
	}
	stream, err := js.Stream(ctx, wire.StreamName(prefix, topic))
	if err != nil {
		return fmt.Errorf("groups: stream of topic %q: %w", topic, err)
	}
	n, bucketed := wire.StreamBuckets(stream.CachedInfo().Config), true
	if n == 0 {
		n, bucketed = 1, false
	}
	pos, err := openPositions(ctx, js)
	if err != nil {
		return err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return err
	}
	for b := range n {
		filter := wire.BucketFilter(prefix, topic, b)
		if !bucketed {
			filter = wire.BucketFilter(prefix, topic, -1)
		}
		var seq uint64
		switch to.Kind {
		case StartEarliest:
			seq = 0
		case StartLatest:
			seq = info.State.LastSeq
		case StartTime:
			if seq, err = seqBefore(ctx, stream, filter, to.Time, info.State.LastSeq); err != nil {
				return err
			}
		}
		v, _ := json.Marshal(Position{Topic: topic, Seq: seq, Released: true})
		if _, err := pos.Put(ctx, positionKey(name, b), v); err != nil {
			return fmt.Errorf("groups: reset %s bucket %d: %w", name, b, err)
		}
	}
	return nil
}

// seqBefore is the position that makes a reader start at the first
// message on filter stored at or after t: that message's sequence minus
// one, or last if there is none.
func seqBefore(ctx context.Context, st jetstream.Stream, filter string, t time.Time, last uint64) (uint64, error) {
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &t})
	if err != nil {
		return 0, err
	}
	msg, err := c.Next(jetstream.FetchMaxWait(time.Second))
	if errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) {
		return last, nil
	}
	if err != nil {
		return 0, err
	}
	meta, err := msg.Metadata()
	if err != nil {
		return 0, err
	}
	return meta.Sequence.Stream - 1, nil
}

// Delete removes group name: its members' bucket and its positions. The
// group must be stopped (ErrActive).
func Delete(ctx context.Context, js jetstream.JetStream, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	kv, err := stopped(ctx, js, name)
	if err != nil {
		return err
	}
	positions, err := readPositions(ctx, js, name)
	if err != nil {
		return err
	}
	if kv == nil && len(positions) == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if len(positions) > 0 {
		pos, err := openPositions(ctx, js)
		if err != nil {
			return err
		}
		for b := range positions {
			if err := pos.Purge(ctx, positionKey(name, b)); err != nil {
				return err
			}
		}
	}
	if kv != nil {
		if err := js.DeleteKeyValue(ctx, groupBucket(name)); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
			return err
		}
	}
	return nil
}
