package command

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/outpost-edge/outpost/core/wire"
)

// HandleSend answers a wire.CommandRequest on wire.CommandSendSubject with
// a wire.CommandReply (PROTOCOL.md §9).
func (q *Queue) HandleSend(m *nats.Msg) {
	var req wire.CommandRequest
	var reply wire.CommandReply
	if err := json.Unmarshal(m.Data, &req); err != nil {
		reply.Error = "command: bad request: " + err.Error()
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := q.Send(ctx, req.Site, req.Device, req)
		cancel()
		if err != nil {
			reply.Error = err.Error()
		} else {
			st.Payload = nil
			reply.CommandState = &st
		}
	}
	b, _ := json.Marshal(reply)
	_ = m.Respond(b)
}

// HandleGet answers a wire.CommandQuery on wire.CommandGetSubject.
func (q *Queue) HandleGet(m *nats.Msg) {
	var query wire.CommandQuery
	var reply wire.CommandReply
	if err := json.Unmarshal(m.Data, &query); err != nil {
		reply.Error = "command: bad request: " + err.Error()
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := q.Get(ctx, query.Site, query.Device, query.ID)
		cancel()
		if err != nil {
			reply.Error = err.Error()
		} else {
			reply.CommandState = &st
		}
	}
	b, _ := json.Marshal(reply)
	_ = m.Respond(b)
}
