package verify

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"

	"github.com/outpost-edge/outpost/firmware-sim/payload"
)

// Record is one message as a Source saw it.
type Record struct {
	// Device is the device id; empty means "take it from the payload".
	Device string
	// Payload is the encoded reading.
	Payload []byte
	// Stream names where Partition and Offset belong (a topic); may be empty.
	Stream string
	// Partition is the log partition, when the source has one.
	Partition int32
	// Offset is the log offset, or -1 when the source has none.
	Offset int64
}

// Options tune what counts as a gap.
type Options struct {
	// StartSeq is the first sequence number every device is expected to
	// send (firmware-sim starts at 0).
	StartSeq int64
	// FromFirstSeen, when set, ignores sequence numbers below the first one
	// seen for a device: for subscribers that joined a running fleet.
	FromFirstSeen bool
	// MaxListed bounds the gap ranges and duplicate samples listed per
	// device; totals are always exact.
	MaxListed int
}

// Range is an inclusive range of sequence numbers.
type Range struct {
	From int64 `json:"from"`
	To   int64 `json:"to"`
}

type deviceState struct {
	seen       []Range // sorted, merged
	received   int64
	duplicates int64
	dupSamples []int64
	outOfOrder int64
	maxSeen    int64
	expect     int64 // expected count from StartSeq; 0 = unknown
}

type partState struct {
	first, next int64
	gaps        []Range
	missing     int64
	dups        int64
	received    int64
}

type partKey struct {
	stream    string
	partition int32
}

// Checker accumulates observations.
type Checker struct {
	opts Options

	mu       sync.Mutex
	devices  map[string]*deviceState
	parts    map[partKey]*partState
	invalid  int64
	badByErr map[string]int64
	mismatch int64
}

// New returns an empty Checker.
func New(opts Options) *Checker {
	if opts.MaxListed <= 0 {
		opts.MaxListed = 20
	}
	return &Checker{
		opts:     opts,
		devices:  make(map[string]*deviceState),
		parts:    make(map[partKey]*partState),
		badByErr: make(map[string]int64),
	}
}

// Add decodes payload and observes its sequence number under device (or
// the payload's own device id when device is empty). A payload that does
// not decode is counted as invalid and its error returned.
func (c *Checker) Add(device string, b []byte) error {
	return c.AddRecord(Record{Device: device, Payload: b, Offset: -1})
}

// AddRecord is Add plus the partition offset check when r.Offset >= 0.
func (c *Checker) AddRecord(r Record) error {
	rd, err := payload.Decode(r.Payload)
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.Offset >= 0 {
		c.observeOffsetLocked(partKey{r.Stream, r.Partition}, r.Offset)
	}
	if err != nil {
		c.invalid++
		kind := "malformed"
		if isSchema(err) {
			kind = "schema violation"
		}
		c.badByErr[kind]++
		return err
	}
	dev := r.Device
	if dev == "" {
		dev = rd.Device
	} else if dev != rd.Device {
		c.mismatch++
	}
	c.observeLocked(dev, rd.Seq)
	return nil
}

func isSchema(err error) bool {
	for ; err != nil; err = unwrap(err) {
		if err == payload.ErrSchema {
			return true
		}
	}
	return false
}

func unwrap(err error) error {
	u, ok := err.(interface{ Unwrap() error })
	if !ok {
		return nil
	}
	return u.Unwrap()
}

// Observe records that device sent sequence number seq.
func (c *Checker) Observe(device string, seq int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.observeLocked(device, seq)
}

// Expect declares that device sent count readings, StartSeq to
// StartSeq+count-1, so missing readings at the end are gaps too.
func (c *Checker) Expect(device string, count int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state(device).expect = count
}

func (c *Checker) state(device string) *deviceState {
	d := c.devices[device]
	if d == nil {
		d = &deviceState{maxSeen: -1}
		c.devices[device] = d
	}
	return d
}

func (c *Checker) observeLocked(device string, seq int64) {
	d := c.state(device)
	d.received++
	if seq < d.maxSeen {
		if d.contains(seq) {
			d.duplicate(seq, c.opts.MaxListed)
			return
		}
		d.outOfOrder++
	} else if seq == d.maxSeen {
		d.duplicate(seq, c.opts.MaxListed)
		return
	}
	d.maxSeen = max(d.maxSeen, seq)
	d.insert(seq)
}

func (d *deviceState) duplicate(seq int64, maxListed int) {
	d.duplicates++
	if len(d.dupSamples) < maxListed {
		d.dupSamples = append(d.dupSamples, seq)
	}
}

func (d *deviceState) contains(seq int64) bool {
	i := sort.Search(len(d.seen), func(i int) bool { return d.seen[i].To >= seq })
	return i < len(d.seen) && d.seen[i].From <= seq
}

// insert adds an unseen seq, merging neighbouring ranges.
func (d *deviceState) insert(seq int64) {
	n := len(d.seen)
	if n > 0 && d.seen[n-1].To+1 == seq { // the common, in-order case
		d.seen[n-1].To = seq
		return
	}
	i := sort.Search(n, func(i int) bool { return d.seen[i].From > seq })
	joinPrev := i > 0 && d.seen[i-1].To+1 == seq
	joinNext := i < n && d.seen[i].From == seq+1
	switch {
	case joinPrev && joinNext:
		d.seen[i-1].To = d.seen[i].To
		d.seen = slices.Delete(d.seen, i, i+1)
	case joinPrev:
		d.seen[i-1].To = seq
	case joinNext:
		d.seen[i].From = seq
	default:
		d.seen = slices.Insert(d.seen, i, Range{seq, seq})
	}
}

func (c *Checker) observeOffsetLocked(k partKey, off int64) {
	p := c.parts[k]
	if p == nil {
		p = &partState{first: off, next: off}
		c.parts[k] = p
	}
	p.received++
	switch {
	case off == p.next:
		p.next++
	case off > p.next:
		p.gaps = append(p.gaps, Range{p.next, off - 1})
		p.missing += off - p.next
		p.next = off + 1
	default:
		p.dups++ // offsets go backwards: a re-read or a log that reordered
	}
}

// DeviceReport is the outcome for one device.
type DeviceReport struct {
	Device     string  `json:"device"`
	Received   int64   `json:"received"`
	Distinct   int64   `json:"distinct"`
	First      int64   `json:"first_seq"`
	Last       int64   `json:"last_seq"`
	Missing    int64   `json:"missing"`
	Gaps       []Range `json:"gaps,omitempty"`
	GapCount   int     `json:"gap_count"`
	Duplicates int64   `json:"duplicates"`
	DupSamples []int64 `json:"duplicate_samples,omitempty"`
	OutOfOrder int64   `json:"out_of_order"`
}

// PartitionReport is the offset check of one partition.
type PartitionReport struct {
	Stream    string  `json:"stream,omitempty"`
	Partition int32   `json:"partition"`
	First     int64   `json:"first_offset"`
	Next      int64   `json:"next_offset"`
	Received  int64   `json:"received"`
	Missing   int64   `json:"missing"`
	Gaps      []Range `json:"gaps,omitempty"`
	Backwards int64   `json:"backwards"`
}

// Report is the outcome of a verification.
type Report struct {
	// OK is true when no device has a gap or a duplicate and no partition
	// has an offset gap. Invalid payloads do not clear OK: they are
	// expected when a run asked for them.
	OK         bool  `json:"ok"`
	Devices    int   `json:"devices"`
	Received   int64 `json:"received"`
	Distinct   int64 `json:"distinct"`
	Missing    int64 `json:"missing"`
	Duplicates int64 `json:"duplicates"`
	OutOfOrder int64 `json:"out_of_order"`
	Invalid    int64 `json:"invalid"`
	// InvalidByKind splits Invalid into "malformed" and "schema violation".
	InvalidByKind map[string]int64 `json:"invalid_by_kind,omitempty"`
	// DeviceMismatch counts records whose given device differs from the
	// payload's device field.
	DeviceMismatch int64 `json:"device_mismatch"`
	// Problems lists devices with gaps or duplicates, worst first.
	Problems   []DeviceReport    `json:"problems,omitempty"`
	Partitions []PartitionReport `json:"partitions,omitempty"`
}

// Device returns the report of one device (zero if never seen).
func (c *Checker) Device(device string) DeviceReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.devices[device]
	if !ok {
		return DeviceReport{Device: device}
	}
	return c.deviceReportLocked(device, d)
}

func (c *Checker) deviceReportLocked(name string, d *deviceState) DeviceReport {
	r := DeviceReport{Device: name, Received: d.received, Duplicates: d.duplicates,
		DupSamples: slices.Clone(d.dupSamples), OutOfOrder: d.outOfOrder, First: -1, Last: -1}
	if len(d.seen) > 0 {
		r.First, r.Last = d.seen[0].From, d.seen[len(d.seen)-1].To
	}
	for _, s := range d.seen {
		r.Distinct += s.To - s.From + 1
	}
	lo := c.opts.StartSeq
	if c.opts.FromFirstSeen && len(d.seen) > 0 {
		lo = d.seen[0].From
	}
	hi := r.Last
	if d.expect > 0 {
		hi = max(hi, c.opts.StartSeq+d.expect-1)
	}
	add := func(from, to int64) {
		if from > to {
			return
		}
		r.Missing += to - from + 1
		r.GapCount++
		if len(r.Gaps) < c.opts.MaxListed {
			r.Gaps = append(r.Gaps, Range{from, to})
		}
	}
	next := lo
	for _, s := range d.seen {
		if s.To < lo {
			continue
		}
		add(next, s.From-1)
		next = max(next, s.To+1)
	}
	add(next, hi)
	return r
}

// Report summarizes everything observed so far.
func (c *Checker) Report() Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	rep := Report{Devices: len(c.devices), Invalid: c.invalid, DeviceMismatch: c.mismatch}
	if len(c.badByErr) > 0 {
		rep.InvalidByKind = make(map[string]int64)
		for k, v := range c.badByErr {
			rep.InvalidByKind[k] = v
		}
	}
	for name, d := range c.devices {
		dr := c.deviceReportLocked(name, d)
		rep.Received += dr.Received
		rep.Distinct += dr.Distinct
		rep.Missing += dr.Missing
		rep.Duplicates += dr.Duplicates
		rep.OutOfOrder += dr.OutOfOrder
		if dr.Missing > 0 || dr.Duplicates > 0 {
			rep.Problems = append(rep.Problems, dr)
		}
	}
	slices.SortFunc(rep.Problems, func(a, b DeviceReport) int {
		if c := cmp.Compare(b.Missing+b.Duplicates, a.Missing+a.Duplicates); c != 0 {
			return c
		}
		return cmp.Compare(a.Device, b.Device)
	})
	var partMissing int64
	for k, p := range c.parts {
		rep.Partitions = append(rep.Partitions, PartitionReport{Stream: k.stream, Partition: k.partition,
			First: p.first, Next: p.next, Received: p.received, Missing: p.missing,
			Gaps: slices.Clone(p.gaps[:min(len(p.gaps), c.opts.MaxListed)]), Backwards: p.dups})
		partMissing += p.missing
	}
	slices.SortFunc(rep.Partitions, func(a, b PartitionReport) int {
		if c := cmp.Compare(a.Stream, b.Stream); c != 0 {
			return c
		}
		return cmp.Compare(a.Partition, b.Partition)
	})
	rep.OK = rep.Missing == 0 && rep.Duplicates == 0 && partMissing == 0
	return rep
}

// WriteText prints the report for people.
func (r *Report) WriteText(w io.Writer) error {
	verdict := "OK: no gaps, no duplicates"
	if !r.OK {
		verdict = "FAILED"
	}
	_, err := fmt.Fprintf(w, "verify: %s\n  devices %d, received %d, distinct %d, missing %d, duplicates %d, out of order %d, invalid %d\n",
		verdict, r.Devices, r.Received, r.Distinct, r.Missing, r.Duplicates, r.OutOfOrder, r.Invalid)
	if err != nil {
		return err
	}
	for i, p := range r.Problems {
		if i == 20 {
			fmt.Fprintf(w, "  ... and %d more devices with problems\n", len(r.Problems)-i)
			break
		}
		fmt.Fprintf(w, "  %s: missing %d in %d gaps %v, duplicates %d %v\n", p.Device, p.Missing, p.GapCount, p.Gaps, p.Duplicates, p.DupSamples)
	}
	for _, p := range r.Partitions {
		if p.Missing > 0 || p.Backwards > 0 {
			fmt.Fprintf(w, "  partition %s/%d: offsets %d..%d, missing %d %v, backwards %d\n", p.Stream, p.Partition, p.First, p.Next-1, p.Missing, p.Gaps, p.Backwards)
		}
	}
	return nil
}

// Devices returns the ids of all devices seen, sorted.
func (c *Checker) Devices() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, 0, len(c.devices))
	for id := range c.devices {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
