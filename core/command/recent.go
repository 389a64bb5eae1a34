package command

import (
	"slices"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/core/wire"
)

// RecentMax is how many commands Recent lists.
const RecentMax = 50

// Recent is one command as core's dashboard lists it: what it is and where
// it stands, without payload, result or history (a bounded view).
type Recent struct {
	ID      string             `json:"id"`
	Site    string             `json:"site"`
	Device  string             `json:"device"`
	Topic   string             `json:"topic"`
	Status  wire.CommandStatus `json:"status"`
	Reason  string             `json:"reason,omitempty"`
	Created time.Time          `json:"created"`
	Updated time.Time          `json:"updated"`
}

// recent keeps the last RecentMax commands this core instance sent or
// folded a status of, newest first. It is a view for people, not state:
// it starts empty at every start, and with several core instances each
// sees its own share; the KV bucket remains the record.
type recent struct {
	mu   sync.Mutex
	list []Recent
}

func (r *recent) note(st wire.CommandState, now time.Time) {
	v := Recent{ID: st.ID, Site: st.Site, Device: st.Device, Topic: st.Topic, Status: st.Status, Reason: st.Reason, Created: st.Created, Updated: now.UTC()}
	r.mu.Lock()
	defer r.mu.Unlock()
	if i := slices.IndexFunc(r.list, func(x Recent) bool { return x.ID == v.ID && x.Site == v.Site && x.Device == v.Device }); i >= 0 {
		r.list = slices.Delete(r.list, i, i+1)
	}
	r.list = slices.Insert(r.list, 0, v)
	if len(r.list) > RecentMax {
		r.list = r.list[:RecentMax]
	}
}

// Recent returns the last commands this core sent or saw change, newest
// first (at most RecentMax).
func (q *Queue) Recent() []Recent {
	q.recent.mu.Lock()
	defer q.recent.mu.Unlock()
	return slices.Clone(q.recent.list)
}
