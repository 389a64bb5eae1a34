package mochifix

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// CloseClients disconnects every client of srv connected through the
// listener id, as mochi's Server.closeListenerClients does. That one calls
// Clients.GetByListener, which read-locks the client map and, holding it,
// read-locks it again (Clients.Len): a client leaving in between
// (Clients.Delete waiting for the write lock) blocks both for ever, and
// Server.Close with them. GetAll copies the map under one read lock.
func CloseClients(srv *mqtt.Server, id string) {
	for _, cl := range srv.Clients.GetAll() {
		if cl.Net.Listener == id && !cl.Closed() {
			_ = srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}

// Listener is a mochi listener whose Close disconnects its clients with
// CloseClients instead of the function the server passes.
type Listener struct {
	listeners.Listener
	Server *mqtt.Server
}

// Close closes the listener, then its clients.
func (l Listener) Close(listeners.CloseFn) {
	l.Listener.Close(func(id string) { CloseClients(l.Server, id) })
}
