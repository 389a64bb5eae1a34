package groups

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestPlanTable(t *testing.T) {
	for _, tc := range []struct {
		name    string
		n       int
		members []string
		claims  map[int]string
		self    string
		release []int
		take    []int
	}{
		{"alone takes all", 4, []string{"a"}, nil, "a", nil, []int{0, 1, 2, 3}},
		{"two split a fresh group", 4, []string{"a", "b"}, nil, "b", nil, []int{1, 3}},
		{"a join releases the excess", 4, []string{"a", "b"}, map[int]string{0: "a", 1: "a", 2: "a", 3: "a"}, "a", []int{2, 3}, nil},
		{"the joiner waits for the release", 4, []string{"a", "b"}, map[int]string{0: "a", 1: "a", 2: "a", 3: "a"}, "b", nil, nil},
		{"released buckets go to the joiner", 4, []string{"a", "b"}, map[int]string{0: "a", 1: "a"}, "b", nil, []int{2, 3}},
		{"a dead member's claims stay until they expire", 4, []string{"a"}, map[int]string{0: "a", 1: "a", 2: "x", 3: "x"}, "a", nil, nil},
		{"uneven: the member holding more keeps the extra", 5, []string{"a", "b"}, map[int]string{0: "b", 1: "b", 2: "b"}, "b", nil, nil},
		{"uneven: the other takes the rest", 5, []string{"a", "b"}, map[int]string{0: "b", 1: "b", 2: "b"}, "a", nil, []int{3, 4}},
		{"not a member: nothing", 4, []string{"a"}, nil, "z", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rel, take := plan(tc.n, tc.members, tc.claims, tc.self)
			if !slices.Equal(rel, tc.release) || !slices.Equal(take, tc.take) {
				t.Fatalf("plan = release %v take %v, want release %v take %v", rel, take, tc.release, tc.take)
			}
		})
	}
}

// TestPlanConverges simulates members applying their plans in random
// order (a release deletes the claim, a take creates it only if free, as
// the KV store does) through random joins and leaves: no bucket ever has
// two claims, the group settles balanced (every member within one of the
// others) with every bucket claimed, and a join moves no more buckets than
// the joiner's quota.
func TestPlanConverges(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for round := 0; round < 200; round++ {
		n := 1 + rng.IntN(40)
		claims := map[int]string{}
		var members []string
		next := 0
		settle := func() int {
			moves := 0
			for step := 0; step < 1000; step++ {
				changed := false
				for _, i := range rng.Perm(len(members)) {
					m := members[i]
					rel, take := plan(n, members, claims, m)
					for _, b := range rel {
						delete(claims, b)
						changed = true
					}
					for _, b := range take {
						if _, ok := claims[b]; !ok { // Create fails on a claimed key
							claims[b] = m
							changed, moves = true, moves+1
						}
					}
				}
				if !changed {
					return moves
				}
			}
			t.Fatalf("round %d: no convergence with %d buckets, members %v, claims %v", round, n, members, claims)
			return 0
		}
		check := func() {
			count := map[string]int{}
			for b := 0; b < n; b++ {
				m, ok := claims[b]
				if !ok && len(members) > 0 {
					t.Fatalf("round %d: bucket %d unclaimed after settling (members %v)", round, b, members)
				}
				count[m]++
			}
			lo, hi := n, 0
			for _, m := range members {
				lo, hi = min(lo, count[m]), max(hi, count[m])
			}
			if len(members) > 0 && hi-lo > 1 {
				t.Fatalf("round %d: unbalanced %v", round, count)
			}
		}
		for op := 0; op < 10; op++ {
			if len(members) == 0 || rng.IntN(3) > 0 {
				members = append(members, fmt.Sprintf("m%02d", next))
				next++
				moves := settle()
				check()
				if quota := (n + len(members) - 1) / len(members); len(members) > 1 && moves > quota {
					t.Fatalf("round %d: a join moved %d buckets, the joiner's quota is at most %d", round, moves, quota)
				}
			} else {
				i := rng.IntN(len(members))
				gone := members[i]
				members = slices.Delete(members, i, i+1)
				for b, m := range claims {
					if m == gone {
						delete(claims, b) // its claims expire
					}
				}
				settle()
				check()
			}
		}
	}
}
