// Package backoff is the reconnect delay every link of the node uses (the
// uplink, the peer links): exponential with full jitter, so that sites or
// peers that lost a link at the same moment do not come back in step and a
// thousand of them do not stampede the centre (G5).
package backoff
