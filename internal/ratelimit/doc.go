// Package ratelimit shares one byte budget per second between lanes (an
// edge node's uplink forwarder and its peer links): while several lanes
// wait, the budget goes to the lane that got the fewest bytes since the
// lanes last contended (deficit round robin), so each gets an equal share;
// a lane alone may use all of it. A lane's Wait may take more than the
// bucket holds (a message larger than the burst goes through as debt that
// later waits pay back), so any size passes and the rate holds on average.
//
// It keeps no goroutine; every lane is safe for concurrent use.
package ratelimit
