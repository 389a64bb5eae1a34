package fleet

import (
	"context"
	"encoding/json"
	"time"

	"github.com/outpost-edge/outpost/firmware-sim/mqttc"
)

// maxAnswers bounds the answers a device keeps waiting to be sent; a
// command arriving beyond it is counted and not answered.
const maxAnswers = 64

// onCommand runs on the client's reader goroutine: it counts the command
// and queues the answer for the device goroutine (the client's owner),
// which sends it at QoS 0 on its next turn. Only MQTT 5 deliveries carry
// a response topic; 3.1.1 devices count commands without answering.
func (d *device) onCommand(r mqttc.Received) {
	st := &d.f.st
	st.commands.Add(1)
	if r.ResponseTopic == "" {
		return
	}
	b, _ := json.Marshal(map[string]any{"ok": true, "device": d.id, "id": string(r.CorrelationData), "received": string(r.Payload)})
	select {
	case d.answers <- &mqttc.Message{Topic: r.ResponseTopic, QoS: 0, Tag: -1, Payload: b}:
	default:
		st.commandsUnanswered.Add(1)
		return
	}
	select {
	case d.answerKick <- struct{}{}:
	default:
	}
}

// subscribeCommands (re)subscribes to the group's command filter after a
// connect; a persistent session keeps it, a clean one needs it again.
func (d *device) subscribeCommands(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := d.client.Subscribe(ctx, 1, d.commands); err != nil {
		d.f.log.Debug("subscribe to commands failed", "device", d.id, "err", err)
	}
}

// sendAnswers sends the queued answers; it runs on the device goroutine.
func (d *device) sendAnswers(ctx context.Context) {
	for {
		select {
		case m := <-d.answers:
			if err := d.client.Publish(ctx, m); err != nil {
				d.f.st.commandsUnanswered.Add(1)
				continue
			}
			d.f.st.commandsAnswered.Add(1)
		default:
			_ = d.client.Flush()
			return
		}
	}
}
