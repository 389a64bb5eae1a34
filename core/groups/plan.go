package groups

import (
	"cmp"
	"slices"
)

// plan is the assignment every member computes alike from what the group
// bucket holds: given the buckets 0..n-1, the live members and who claims
// what (claims by members no longer live still count as held: their keys
// expire with their heartbeat's), it says which buckets self must release
// and which free ones it should take.
//
// Quotas: n/len(members), plus one for the first n%len(members) members
// ordered by how many they hold (most first, then name), so that members
// already holding more keep it (sticky). A member over its quota releases
// its highest buckets; free buckets, lowest first, go to the member
// furthest below its quota (then name). A join or leave moves only the
// buckets the new quotas require.
func plan(n int, members []string, claims map[int]string, self string) (release, take []int) {
	if len(members) == 0 || !slices.Contains(members, self) {
		return nil, nil
	}
	held := map[string][]int{}
	for b := 0; b < n; b++ {
		if m, ok := claims[b]; ok {
			held[m] = append(held[m], b)
		}
	}
	order := slices.Clone(members)
	slices.SortFunc(order, func(a, b string) int {
		return cmp.Or(cmp.Compare(len(held[b]), len(held[a])), cmp.Compare(a, b))
	})
	quota := map[string]int{}
	for i, m := range order {
		quota[m] = n / len(members)
		if i < n%len(members) {
			quota[m]++
		}
	}
	count := map[string]int{}
	for _, m := range members {
		hs := held[m]
		if len(hs) > quota[m] {
			if m == self {
				release = slices.Clone(hs[quota[m]:])
			}
			hs = hs[:quota[m]]
		}
		count[m] = len(hs)
	}
	for b := 0; b < n; b++ {
		if _, ok := claims[b]; ok {
			continue
		}
		best := ""
		for _, m := range order {
			if count[m] >= quota[m] {
				continue
			}
			if best == "" || quota[m]-count[m] > quota[best]-count[best] ||
				(quota[m]-count[m] == quota[best]-count[best] && m < best) {
				best = m
			}
		}
		if best == "" {
			break
		}
		count[best]++
		if best == self {
			take = append(take, b)
		}
	}
	return release, take
}
